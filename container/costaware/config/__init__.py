"""Configuration: the hyperparameter schema and the class/cost-matrix settings."""

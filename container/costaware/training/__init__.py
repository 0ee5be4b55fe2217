"""Training: the objective, boosting rounds, checkpoints, channels, evaluation, several hosts."""

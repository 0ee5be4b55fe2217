"""The SageMaker training adapter and the `train` entry point."""

"""The model artifact and inference on it."""

"""Metrics: the registry, classification and Clarify bias metrics, the metric log lines."""

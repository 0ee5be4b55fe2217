"""Decisions: costs, decision rules, calibration, the served policy and reasons (pure numpy)."""

"""Hyperparameter tuning around the real training program.

* :mod:`.config` builds a SageMaker ``CreateHyperParameterTuningJob`` request (and the Python SDK
  equivalent) from the hyperparameter schema's tuning ranges and the published metric definitions.
* :mod:`.local` tunes on this machine with optuna, each trial a run of ``costaware train`` (the
  image's ``train`` entry point) in its own ``/opt/ml``-shaped tree.
* :mod:`.sweep` trains at several FN:FP cost ratios and prices every model with one cost matrix.
* :mod:`.copula` is a small Gaussian copula, used to synthesise rows for the fairness case study.
* :mod:`.runner` is what they share: trial trees, the training subprocess, log parsing.
"""

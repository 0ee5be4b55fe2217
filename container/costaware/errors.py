"""Errors that mean "the input is wrong", as opposed to bugs.

The core raises these; the SageMaker adapter turns them into the toolkit's ``ClientError`` (a one-line
failure reason) and the HTTP adapter into 4xx responses. Messages name the file, row, column or
hyperparameter at fault, because that is what a person needs to fix it.
"""


class InputError(ValueError):
    """Bad user input: data, configuration or hyperparameters."""


class HyperparameterError(InputError):
    """A hyperparameter is unknown, malformed or out of range."""


class DataError(InputError):
    """A data file cannot be read or holds values the training program cannot use."""


def load_failure_reason(exc: Exception) -> str:
    """One line saying why the model did not load (a ModelLoadError carries one already)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if type(exc).__name__ != "ModelLoadError":
        text = f"{type(exc).__name__}: {text}"
    return text or "unknown error"

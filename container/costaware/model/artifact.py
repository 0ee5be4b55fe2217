"""The model directory: XGBoost's own UBJSON booster plus a small JSON of metadata. Never pickle.

    model_dir/
      xgboost-model.ubj   the booster (xgboost.Booster.save_model)
      metadata.json       format version, feature names, the decision policy (calibrator, rule,
                          class costs, cost columns, facet), what a request row holds
                          (``request_columns``), metrics, versions
      baseline/           the monitoring baseline ``train`` writes beside the model
        statistics.json   (costaware.monitoring.baseline; not read when serving)
        constraints.json
"""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass, field

import numpy as np
import xgboost as xgb

from .. import ARTIFACT_FORMAT_VERSION, __version__, storage
from ..errors import InputError
from . import dense_margins
from ..decisions.multiclass_policy import KIND as MULTICLASS_KIND
from ..decisions.multiclass_policy import MulticlassPolicy
from ..decisions.policy import Policy

BOOSTER_FILE = "xgboost-model.ubj"
METADATA_FILE = "metadata.json"
BASELINE_DIR = "baseline"
STATISTICS_FILE = "statistics.json"
CONSTRAINTS_FILE = "constraints.json"
# every file a model directory may hold (name -> None, or a directory -> the files it may hold)
MODEL_LAYOUT = {BOOSTER_FILE: None, METADATA_FILE: None,
                BASELINE_DIR: {STATISTICS_FILE: None, CONSTRAINTS_FILE: None}}


class ModelLoadError(InputError):
    """The model directory is missing, incomplete, corrupt or from an incompatible version."""


@dataclass
class Model:
    booster: xgb.Booster
    feature_names: list[str]
    policy: Policy
    metadata: dict
    nthread: int | None = None  # XGBoost's threads for this model (None: its default, all)
    # the booster's margins with what XGBoost says of it once asked (made at the first margin)
    _margins: dense_margins.DenseMargins | None = field(default=None, init=False, repr=False,
                                                        compare=False)

    def margin(self, features: np.ndarray) -> np.ndarray:
        """Raw margins, predicted in place (no DMatrix per request: :mod:`.dense_margins`)."""
        margins = self._margins
        if margins is None or margins.booster is not self.booster:  # (a booster set anew)
            margins = self._margins = dense_margins.DenseMargins(self.booster)
        return np.asarray(margins(features), dtype=np.float64)

    def probability(self, features: np.ndarray) -> np.ndarray:
        return self.policy.probability(self.margin(features))


def versions() -> dict:
    return {
        "costaware": __version__,
        "xgboost": xgb.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def request_columns(feature_names: list[str], policy: Policy) -> list[str]:
    """What a request row holds, in order (CSV cells, ``instances`` arrays): the features, the facet
    when the rule needs it and it is not a feature, then the optional per-row costs."""
    columns = list(feature_names)
    facet = policy.facet
    if policy.needs_facet and facet is not None and facet["column"] not in columns:
        columns.append(facet["column"])
    return columns + [name for _, name in policy.cost_columns]


def save(model_dir: str, booster: xgb.Booster, feature_names: list[str], policy: Policy,
         extra: dict) -> dict:
    """Write the booster and ``metadata.json`` into ``model_dir``, both or neither
    (:func:`costaware.storage.write_all_or_none`): a full disk or a kill never leaves a booster cut
    short or one without its metadata. Its ``OSError`` names the file that could not be written."""
    metadata = json_safe({
        "format_version": ARTIFACT_FORMAT_VERSION,
        "feature_names": list(feature_names),
        "request_columns": request_columns(feature_names, policy),
        "decision_policy": policy.to_dict(),
        "versions": versions(),
        **extra,
    })
    text = json.dumps(metadata, indent=2, sort_keys=False, allow_nan=False) + "\n"
    storage.write_all_or_none(model_dir, {BOOSTER_FILE: bytes(booster.save_raw("ubj")),
                                          METADATA_FILE: text.encode("utf-8")})
    return metadata


def policy_from_dict(d: dict) -> Policy | MulticlassPolicy:
    """The saved decision policy: binary (:class:`Policy`) or ``"kind": "multiclass"``."""
    if isinstance(d, dict) and d.get("kind") == MULTICLASS_KIND:
        return MulticlassPolicy.from_dict(d)
    return Policy.from_dict(d)


def json_safe(value):
    """``value`` with NaN and infinities (an undefined metric: AUC of a one-class channel) as
    null, JSON having neither, and numpy scalars as Python numbers."""
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def load(model_dir: str, nthread: int | None = None) -> Model:
    """Load and check a model directory; every failure is a one-line :class:`ModelLoadError`."""
    if not os.path.isdir(model_dir):
        raise ModelLoadError(f"model directory {model_dir} does not exist")
    meta_path = os.path.join(model_dir, METADATA_FILE)
    booster_path = os.path.join(model_dir, BOOSTER_FILE)
    for path in (meta_path, booster_path):
        if not os.path.isfile(path):
            raise ModelLoadError(f"{path} is missing: not a costaware model directory")
    try:
        with open(meta_path, encoding="utf-8") as handle:
            metadata = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{meta_path} is not valid JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{meta_path} does not hold a JSON object")
    version = metadata.get("format_version")
    if version != ARTIFACT_FORMAT_VERSION:
        raise ModelLoadError(
            f"{meta_path}: format_version {version!r}; this costaware {__version__} reads "
            f"version {ARTIFACT_FORMAT_VERSION}"
        )
    try:
        names = [str(n) for n in metadata["feature_names"]]
        policy = policy_from_dict(metadata["decision_policy"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelLoadError(f"{meta_path}: incomplete or invalid metadata ({exc!r})") from None
    try:
        booster = xgb.Booster(params={"nthread": nthread} if nthread else None)
        booster.load_model(booster_path)
    except (xgb.core.XGBoostError, UnicodeDecodeError) as exc:
        # XGBoost's message quotes the file's first bytes: random bytes are not even UTF-8 text
        raise ModelLoadError(f"{booster_path} cannot be loaded by XGBoost {xgb.__version__}: "
                             f"{_not_a_booster(booster_path, exc)}") from None
    if booster.num_features() != len(names):
        raise ModelLoadError(f"{booster_path} takes {booster.num_features()} features but "
                             f"{meta_path} names {len(names)}")
    classes = int(json.loads(booster.save_config())["learner"]["learner_model_param"]
                  .get("num_class", "0"))
    expected = policy.k if isinstance(policy, MulticlassPolicy) else 0
    if classes != expected:
        raise ModelLoadError(f"{booster_path} has {classes or 2} classes but {meta_path}'s "
                             f"decision policy has {expected or 2}")
    return Model(booster, names, policy, metadata, nthread or None)


def _not_a_booster(path: str, exc: Exception) -> str:
    """What is wrong with a booster file XGBoost refused: its size, how it starts, and XGBoost's
    own check (without its time stamp and source location)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    size = os.path.getsize(path)
    if size == 0:
        return "the file is empty"
    first = str(exc).strip().splitlines()[0] if isinstance(exc, xgb.core.XGBoostError) else ""
    check = re.sub(r"^\[[^]]*\]\s*\S+:\d+:\s*", "", first.replace("\0", "")).strip()
    kind = ("a JSON or UBJSON model (it starts with '{'), cut short or corrupt" if head[:1] == b"{"
            else f"not an XGBoost model in JSON or UBJSON (it starts with bytes {head.hex(' ')}, "
                 "not '{')")
    return f"{size} bytes, {kind}" + (f"; XGBoost: {check[:160]}" if check else "")

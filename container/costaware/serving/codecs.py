"""Request bodies -> feature matrices, predictions -> response bodies; content negotiation.

Input (``Content-Type``)
  ``text/csv``                one row per line, no header, no label, ``,``-separated, ``\\n`` or
                              ``\\r\\n`` line ends. Parameters: ``charset`` (utf-8 / us-ascii only),
                              ``label_size`` (only ``0``), ``header`` (only ``absent``); others ignored.
  ``application/json``        ``{"instances": [ROW, ...]}``
  ``application/jsonlines``   one ROW per line (also ``application/jsonl``, ``application/x-jsonlines``)
  ``text/libsvm``             ``INDEX:VALUE`` pairs per line, 1-based (also ``text/x-libsvm``): index
                              ``i`` is CSV cell ``i``, a left-out index is missing, a leading label is
                              read and not used (:mod:`costaware.data.libsvm_rows`)
  ``application/x-recordio-protobuf`` one record per row (the SageMaker SDK's RecordSerializer):
                              a dense ``features["values"]`` tensor's value ``i``, or a sparse one's
                              key ``i`` (0-based), is CSV cell ``i``; a label is read and not used
                              (:mod:`costaware.data.recordio_protobuf`)

  A JSON ROW is a list of numbers in the model's ``request_columns`` order, ``{"features": [...]}``
  (SageMaker's built-in "dense" form), or an object keyed by the column names (``{"f0": 1.5,
  ...}``); in a keyed object an absent feature is missing, an unknown name is an error.

Per-row costs (models trained with cost columns): a CSV line or a JSON list may carry the row's
costs as extra values after the features (and the facet), in the order of ``request_columns``; a
keyed object carries them under the cost columns' names. A row without them is decided at the class
costs; a row with them must carry all of them.

Missing values and non-finite numbers (one rule for every format)
  * missing: an empty CSV cell (spaces allowed), ``nan`` in any case (CSV), JSON ``null``, the JSON
    extension token ``NaN``, and an absent key in a keyed JSON object. XGBoost routes missing values
    down each tree's learned default branch.
  * refused (400): ``inf``/``Infinity`` (either sign) and any magnitude beyond float32's range
    (about 3.4e38), because XGBoost reads float32 and such a value would silently become infinite.
  * refused (400): anything else that is not a plain number: JSON strings and booleans, CSV cells
    such as ``abc``, ``1_000``, ``0x10``, quoted CSV fields. A wholly empty line is an error (it is
    not a row of missing values); trailing line ends at the very end of a body are ignored.

Output (``Accept``)
  ``application/json`` (default: ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` may name another for a
  missing Accept and ``*/*``; also for ``application/*``)::

      {"predictions": [{"score": 0.91, "decision": 1, "expected_cost_if_1": ..., ...}, ...],
       "policy": {"costs": {"cost_fp": ..., ...}, "costs_source": "model", "rule": {"kind": ...},
                  "cost_columns": [...]}}

  ``application/jsonlines``   one object per row (also ``application/jsonl``, ``application/x-jsonlines``)
  ``text/csv`` (also ``text/*``) one line per row, the fields in the order asked, no header.

  Rows come back in input order, exactly one per input row, separated by ``\\n`` with no final
  line end (batch transform's ``AssembleWith=Line`` adds one after each response).

Selecting fields: an ``Accept`` parameter ``fields``, e.g. ``text/csv;fields=decision`` or
``application/json;fields=score,decision`` (the list may also be quoted:
``fields="score,decision"``). Fields: ``score`` (calibrated probability of class 1), ``decision``
(0/1), ``expected_cost_if_1``, ``expected_cost_if_0`` (expected cost of deciding 1 / 0 at the row's
costs), ``threshold`` (the probability at which the row's rule decides 1), ``costs`` (``row``: the
row's own; ``model``: the model's class costs; ``request``: the custom attributes' override) and
``rule`` (``bayes``, ``empirical`` or ``constrained``); the default is all seven in that order. An
unknown or repeated field is a 406. Numbers are printed with up to 15 significant digits, the same
digits for a row whether it comes alone or in a batch of any size.

With the custom attribute ``reasons=K`` two more fields follow (by default; or chosen with
``fields``): ``reasons`` (a JSON list per row, ``null`` for a row not explained; in CSV one quoted
cell holding that JSON) and ``boundary_log_odds`` (a number, ``null``: an empty CSV cell); see
docs/explainability.md.

More than two classes: the fields are ``decision`` (the class's label: a JSON string, or a number
for integer labels), ``probabilities`` and ``expected_costs`` (one JSON object each, keyed by class
label in class order: ``{"low": 0.2, "medium": ...}``; in CSV one column per class, in class
order), ``costs`` and ``rule``; the default is all five in that order, and a binary field such as
``score`` is a 406. The JSON ``policy`` is ``{"classes": [...], "cost_matrix": [[...]],
"costs_source": ..., "rule": {"kind": "bayes"}}``. A CSV cell holding a label with a comma, quote
or line break is quoted (RFC 4180).

With ``COSTAWARE_RESPONSE_SHAPE=builtin`` the answers are the SageMaker XGBoost container's
instead: the probabilities alone (:func:`~costaware.serving.encoding.encode_builtin`), and the
default Accept is ``text/csv``.

The three jobs live in their own modules: :mod:`~costaware.serving.negotiation` (media types and
``Accept``), :mod:`~costaware.serving.decoding` (bodies -> matrices) and
:mod:`~costaware.serving.encoding` (results -> bodies); this module is their one interface.
"""

from __future__ import annotations

from .decoding import SMALL_BODY, decode, row_label
from .encoding import encode, format_float, format_float_column, policy_json
from .negotiation import DEFAULT_ACCEPT, OutputSpec, for_model, input_kind, output_spec
from .request_error import RequestError

__all__ = ["DEFAULT_ACCEPT", "SMALL_BODY", "OutputSpec", "RequestError", "decode", "encode",
           "for_model", "format_float", "format_float_column", "input_kind", "output_spec",
           "policy_json", "row_label"]

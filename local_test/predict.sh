#!/usr/bin/env bash
# Posts a payload to the local endpoint's /invocations, as SageMaker's runtime would.
#
#   local_test/predict.sh PAYLOAD [CONTENT_TYPE]
#
#   PAYLOAD          a file (sent as is), or "-" for stdin, or else the literal request body
#   CONTENT_TYPE     default text/csv
#   ACCEPT           Accept header (default application/json)
#   COST_ATTRIBUTES  sent as X-Amzn-SageMaker-Custom-Attributes (per-request costs), e.g.
#                    COST_ATTRIBUTES="cost_fp=1,cost_fn=20" local_test/predict.sh rows.csv
#   INFERENCE_ID     sent as X-Amzn-SageMaker-Inference-Id (what data capture and ground truth join on)
#   PORT             default 8080 (http://127.0.0.1:$PORT)
set -euo pipefail
if [ $# -lt 1 ]; then echo "usage: $0 PAYLOAD [CONTENT_TYPE]" >&2; exit 2; fi
PAYLOAD="$1"
CONTENT_TYPE="${2:-text/csv}"
ACCEPT="${ACCEPT:-application/json}"
url="http://127.0.0.1:${PORT:-8080}/invocations"

if [ "$PAYLOAD" = "-" ] || [ -f "$PAYLOAD" ]; then
    data=(--data-binary "@$PAYLOAD")
else
    data=(--data-binary "$PAYLOAD")
fi
headers=(-H "Content-Type: $CONTENT_TYPE" -H "Accept: $ACCEPT")
[ -n "${COST_ATTRIBUTES:-}" ] && headers+=(-H "X-Amzn-SageMaker-Custom-Attributes: $COST_ATTRIBUTES")
[ -n "${INFERENCE_ID:-}" ] && headers+=(-H "X-Amzn-SageMaker-Inference-Id: $INFERENCE_ID")

# --fail-with-body: a 4xx/5xx exits non-zero and still shows the server's error message
exec curl -sS --fail-with-body --noproxy '*' "${headers[@]}" "${data[@]}" "$url"

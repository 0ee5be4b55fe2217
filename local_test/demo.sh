#!/usr/bin/env bash
# The main job on the bundled default: the breast-cancer data with the custom-loss case study's
# costs. Trains (the real `train` entry point on a SageMaker-shaped tree), compares decision rules
# by expected cost per patient, serves the defaults' model with the real `serve` on 127.0.0.1
# and posts a prediction to it.
#
#   ./local_test/demo.sh            (PORT=8080 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8080}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e ./container  # editable, as tests/run.sh installs it: one venv, the checkout
export PATH="$PWD/$VENV/bin:$PATH"

python local_test/prepare_breast_cancer.py local_test/test_dir
WORK=$(mktemp -d /tmp/costaware-demo.XXXXXX)
python local_test/compare_losses.py --tree local_test/test_dir --work "$WORK"

# serve the defaults' model exactly as an endpoint would, then ask it about five patients
MODEL_DIR="$WORK/defaults/model"
SM_MODEL_DIR="$MODEL_DIR" SAGEMAKER_BIND_TO_PORT="$PORT" COSTAWARE_BIND_HOST=127.0.0.1 \
  SAGEMAKER_MODEL_SERVER_WORKERS=1 serve > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -fs "http://127.0.0.1:$PORT/ping" > /dev/null; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then cat "$WORK/serve.log"; exit 1; fi
  sleep 0.1
done
echo
echo "POST /invocations (text/csv, 5 test patients):"
PORT=$PORT local_test/predict.sh local_test/payloads/breast_cancer.csv text/csv
echo
echo "The same, with the costs overridden per request (a missed tumour now costs \$50,000):"
PORT=$PORT COST_ATTRIBUTES="cost_fn=50000" local_test/predict.sh local_test/payloads/breast_cancer.csv text/csv
echo

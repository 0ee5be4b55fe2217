#!/usr/bin/env bash
# CI image test: builds the image with podman and uses it the way SageMaker does.
#   1. tools + local base image (local_test/build_base_image.sh), 2. the image (local_test/build_image.sh),
#   3. `IMAGE train` on a copy of local_test/test_dir (exit 0, metric lines),
#   4. `IMAGE serve` on a published 127.0.0.1 port: seconds until /ping answers 200, a CSV prediction
#      from the host (JSON, one score per row),
#   5. the same rows scored in-process (python -m costaware.cli predict) with the model the container
#      wrote: scores equal within 1e-6,
#   6. `IMAGE monitor` as a Model Monitor schedule runs it (its environment variables and
#      /opt/ml/processing paths) on step 4's data capture, with ground truth for those rows: exit 0,
#      Model Monitor's files (checked against the documented schemas), CloudWatch metric files; and
#      without its baseline: exit 1 with one line in /opt/ml/output/message; then `IMAGE compare`
#      as a processing job (/opt/ml/processing/input/*, output): the model replayed on its own
#      capture, difference exactly 0, a wait for more labels,
#   7. the step-3 tree split over two hosts (local_test/train_multi_host.sh: containers algo-1 and
#      algo-2 on a network this test creates): both exit 0, only algo-1 writes the model, its metrics
#      equal one host's on all the rows and its AUC is within 0.005 of step 3's model.
# Run as root on a Debian machine (step 1 apt-installs podman when missing). Needs network access to
# the machine's apt mirror and package index, nothing else; clients talk only to 127.0.0.1.
#
#   IMAGE    tag to build (default localhost/costaware:ci)
#   PYTHON   Python with the costaware package installed, for step 5 (default: .venv/bin/python, else python3)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${IMAGE:-localhost/costaware:ci}"
export DOCKER=podman
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
train_name="costaware-ci-train-$$"
serve_name="costaware-ci-serve-$$"
work="$(mktemp -d /tmp/costaware-image-test.XXXXXX)"
serve_pid=""

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
step() { echo; echo "=== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

cleanup() {
    local rc=$?
    set +e
    if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
        kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null
    fi
    for name in "$train_name" "$serve_name"; do
        podman rm -f "$name" >/dev/null 2>&1
    done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT INT TERM

command -v podman >/dev/null 2>&1 || [ "$(id -u)" -eq 0 ] \
    || fail "podman is not installed and this is not root: run as root or install podman"

# ---- 1. tools, base image -----------------------------------------------------------------------
step "tools and base image"
t=$(now)
"$repo/local_test/build_base_image.sh"
t_base=$(elapsed "$t" "$(now)")
# shellcheck source=local_test/engine.sh
. "$repo/local_test/engine.sh"     # CONTAINERS_CONF, DOCKER_RUN_ARGS for podman on this host
export CONTAINERS_CONF DOCKER_RUN_ARGS

# ---- 2. image -------------------------------------------------------------------------------------
step "build $IMAGE"
t=$(now)
"$repo/local_test/build_image.sh" "$IMAGE"
t_build=$(elapsed "$t" "$(now)")
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image size: $((size / 1000000)) MB"
[ "$size" -lt 700000000 ] || echo "WARNING: image is over the 700 MB target" >&2
label=$(podman image inspect --format '{{index .Labels "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"}}' "$IMAGE")
[ "$label" = "true" ] || fail "label com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true missing"
# shellcheck disable=SC2086
podman run --rm $DOCKER_RUN_ARGS "$IMAGE" sh -c \
    'command -v train && command -v serve && command -v monitor && command -v suggest-baseline && command -v compare && ! command -v gcc && ! python -m pip show -q xgboost 2>/dev/null' \
    || fail "image must have train, serve, monitor, suggest-baseline and compare on PATH, no gcc, and no GPU xgboost distribution"

# ---- 3. train -------------------------------------------------------------------------------------
step "train (SageMaker: docker run -v TREE:/opt/ml IMAGE train)"
ml="$work/ml"
if [ -d "$repo/local_test/test_dir/input/config" ]; then
    mkdir -p "$ml"
    cp -r "$repo/local_test/test_dir/input" "$ml/"
else
    echo "(local_test/test_dir missing: using a small generated tree)"
    "$PYTHON" - "$ml" <<'PY'
import json, os, random, sys
base = sys.argv[1]
os.makedirs(f"{base}/input/config")
json.dump({"num_round": "20", "cost_fp": "1", "cost_fn": "5"}, open(f"{base}/input/config/hyperparameters.json", "w"))
json.dump({c: {"ContentType": "text/csv"} for c in ("train", "validation", "test")},
          open(f"{base}/input/config/inputdataconfig.json", "w"))
json.dump({"current_host": "algo-1", "hosts": ["algo-1"]}, open(f"{base}/input/config/resourceconfig.json", "w"))
rng = random.Random(7)
for channel, n in (("train", 200), ("validation", 80), ("test", 80)):
    os.makedirs(f"{base}/input/data/{channel}")
    with open(f"{base}/input/data/{channel}/{channel}.csv", "w") as f:
        for _ in range(n):
            x = [rng.gauss(0, 1) for _ in range(4)]
            y = int(x[0] + 0.5 * x[1] + rng.gauss(0, 0.7) > 0.8)
            f.write(",".join([str(y)] + [f"{v:.6f}" for v in x]) + "\n")
PY
fi
t=$(now)
set +e
TEST_DIR="$ml" CONTAINER_NAME="$train_name" "$repo/local_test/train_local.sh" "$IMAGE" >"$work/train.log" 2>&1
train_rc=$?
set -e
t_train=$(elapsed "$t" "$(now)")
echo "train exit code: $train_rc (${t_train} s)"
[ "$train_rc" -eq 0 ] || { tail -50 "$work/train.log"; fail "train exited $train_rc"; }
metric_lines=$(grep -c 'validation:auc=' "$work/train.log" || true)
echo "metric lines (validation:auc=...): $metric_lines; first, last and final:"
grep -m1 'validation:auc=' "$work/train.log" || true
grep 'validation:auc=' "$work/train.log" | grep -v '^\[final\]' | tail -1 || true
grep '^\[final\]' "$work/train.log" || true
[ "$metric_lines" -gt 0 ] || { tail -50 "$work/train.log"; fail "no metric lines in train's log"; }
[ -f "$ml/output/success" ] || fail "train did not write output/success"
[ -n "$(ls -A "$ml/model" 2>/dev/null)" ] || fail "train wrote no model into /opt/ml/model"
echo "model files: $(cd "$ml/model" && echo *)"

# ---- 3b. train from external memory ---------------------------------------------------------------
step "train from external memory (external_memory true; the features read in batches of 100 rows)"
ml_ext="$work/ml_external"
mkdir -p "$ml_ext"
cp -r "$ml/input" "$ml_ext/"
"$PYTHON" - "$ml_ext/input/config/hyperparameters.json" <<'PY'
import json, sys
path = sys.argv[1]
settings = json.load(open(path))
settings.update(external_memory="true", report="false")
json.dump(settings, open(path, "w"))
PY
t=$(now)
set +e
DOCKER_RUN_ARGS="$DOCKER_RUN_ARGS -e COSTAWARE_BATCH_ROWS=100" TEST_DIR="$ml_ext" \
    "$repo/local_test/train_local.sh" "$IMAGE" >"$work/train_external.log" 2>&1
external_rc=$?
set -e
t_external=$(elapsed "$t" "$(now)")
echo "train (external memory) exit code: $external_rc (${t_external} s)"
[ "$external_rc" -eq 0 ] || { tail -50 "$work/train_external.log"; fail "train from external memory exited $external_rc"; }
grep -m1 'external memory: held out' "$work/train_external.log" \
    || fail "train did not say what it held out from external memory"
grep '^\[final\]' "$work/train_external.log" || true
[ -f "$ml_ext/output/success" ] || fail "train from external memory did not write output/success"
"$PYTHON" - "$ml_ext" <<'PY' || fail "the external-memory model does not load or score"
import json, sys
base = sys.argv[1]
metadata = json.load(open(f"{base}/model/metadata.json"))
assert metadata["hyperparameters"]["external_memory"] == "true", metadata["hyperparameters"]
from costaware.model import artifact
model = artifact.load(f"{base}/model")
print(f"external-memory model: {model.booster.num_boosted_rounds()} rounds, rows {metadata['rows']}")
PY

# ---- 4. serve -------------------------------------------------------------------------------------
step "serve (SageMaker: docker run -p 8080 IMAGE serve)"
port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
t=$(now)
SERVE_ENV="-e COSTAWARE_DATA_CAPTURE_DIR=/opt/ml/capture -e COSTAWARE_ENDPOINT_NAME=ci-endpoint" \
TEST_DIR="$ml" PORT="$port" CONTAINER_NAME="$serve_name" "$repo/local_test/serve_local.sh" "$IMAGE" \
    >"$work/serve.log" 2>&1 &
serve_pid=$!
ping_s=""
while [ "$(elapsed "$t" "$(now)" | cut -d. -f1)" -lt 90 ]; do
    if [ "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ping")" = 200 ]; then
        ping_s=$(elapsed "$t" "$(now)")
        break
    fi
    kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.log"; fail "serve exited before /ping answered"; }
    sleep 0.1
done
[ -n "$ping_s" ] || { cat "$work/serve.log"; fail "/ping did not answer 200 within 90 s"; }
echo "/ping 200 after ${ping_s} s (from podman run to the first 200, container start included)"

# the first rows of the test channel, label column dropped
payload="$work/payload.csv"
first_csv=$(find "$ml/input/data/test" "$ml/input/data/validation" -name '*.csv' 2>/dev/null | sort | head -1)
head -n 8 "$first_csv" | cut -d, -f2- >"$payload"
rows=$(wc -l <"$payload")
set +e
monitor_start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
INFERENCE_ID=ci-1 PORT="$port" "$repo/local_test/predict.sh" "$payload" text/csv >"$work/response.json" 2>"$work/predict.err"
predict_rc=$?
set -e
[ "$predict_rc" -eq 0 ] || { cat "$work/predict.err" "$work/response.json"; tail -30 "$work/serve.log"; fail "POST /invocations failed"; }
echo "response to $rows CSV rows: $(head -c 600 "$work/response.json")"

# ---- 5. the container's scores == in-process scores ------------------------------------------------
step "container prediction vs in-process prediction (same model)"
"$PYTHON" -m costaware.cli predict --model-dir "$ml/model" --input "$payload" >"$work/inprocess.jsonl" \
    || fail "$PYTHON -m costaware.cli predict failed"
"$PYTHON" - "$work/response.json" "$work/inprocess.jsonl" "$rows" <<'PY'
import json, sys

response_path, inprocess_path, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(response_path).read()
try:
    body = json.loads(text)
except ValueError:
    sys.exit(f"FAIL: the response is not JSON: {text[:300]!r}")
records = body
if isinstance(body, dict):
    for key in ("predictions", "results", "scores"):
        if key in body:
            records = body[key]
            break
if not isinstance(records, list):
    sys.exit(f"FAIL: no list of predictions in the response: {text[:300]!r}")
served = [r["score"] if isinstance(r, dict) else r for r in records]
if len(served) != rows or not all(isinstance(s, (int, float)) for s in served):
    sys.exit(f"FAIL: expected {rows} numeric scores, got {served!r}")
local = [json.loads(line)["score"] for line in open(inprocess_path) if line.strip()]
if len(local) != rows:
    sys.exit(f"FAIL: in-process predict gave {len(local)} rows, expected {rows}")
worst = max(abs(a - b) for a, b in zip(served, local))
for a, b in zip(served, local):
    print(f"  container {a:.9f}   in-process {b:.9f}")
print(f"max |difference| = {worst:.3g} over {rows} rows (tolerance 1e-6)")
if worst > 1e-6:
    sys.exit("FAIL: container and in-process scores differ")
PY

# ---- 6. monitor --------------------------------------------------------------------------------
step "monitor (Model Monitor: a schedule's job runs IMAGE monitor on the endpoint's data capture)"
truth="$work/groundtruth/$(date -u +%Y/%m/%d/%H)"
mkdir -p "$truth" "$work/monitor_out" "$work/monitor_output"
labels=$(head -n 8 "$first_csv" | cut -d, -f1 | paste -sd, -)
printf '{"groundTruthData": {"data": "%s", "encoding": "CSV"}, "eventMetadata": {"eventId": "ci-1"}, "eventVersion": "0"}\n' \
    "$labels" >"$truth/labels.jsonl"
monitor_end=$(date -u -d '+1 minute' +%Y-%m-%dT%H:%M:%SZ)
P=/opt/ml/processing
monitor_args=(-v "$ml/capture:$P/endpointdata:ro" -v "$ml/model/baseline:$P/baseline:ro"
              -v "$work/groundtruth:$P/groundtruth:ro" -v "$work/monitor_out:$P/resultdata"
              -v "$work/monitor_output:/opt/ml/output"
              -e 'dataset_format={"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}'
              -e "dataset_source=$P/endpointdata" -e "output_path=$P/resultdata"
              -e "start_time=$monitor_start" -e "end_time=$monitor_end"
              -e "baseline_statistics=$P/baseline/statistics.json"
              -e "baseline_constraints=$P/baseline/constraints.json"
              -e "ground_truth_source=$P/groundtruth" -e publish_cloudwatch_metrics=Enabled
              -e sagemaker_endpoint_name=ci-endpoint -e sagemaker_monitoring_schedule_name=ci-hourly)
t=$(now)
set +e
# shellcheck disable=SC2086
podman run --rm $DOCKER_RUN_ARGS "${monitor_args[@]}" "$IMAGE" monitor >"$work/monitor.log" 2>&1
monitor_rc=$?
set -e
t_monitor=$(elapsed "$t" "$(now)")
cat "$work/monitor.log"
[ "$monitor_rc" -eq 0 ] || fail "monitor exited $monitor_rc"
"$PYTHON" - "$work" "$rows" "$repo/tests" <<'PY' || fail "monitor's files are not what Model Monitor reads"
import json, sys
work, rows = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
import jsonschema
from support import CLOUDWATCH_METRIC_SCHEMA, STATISTICS_SCHEMA, VIOLATIONS_SCHEMA
statistics = json.load(open(f"{work}/monitor_out/statistics.json"))
jsonschema.validate(statistics, STATISTICS_SCHEMA)
jsonschema.validate(json.load(open(f"{work}/monitor_out/constraint_violations.json")), VIOLATIONS_SCHEMA)
own = statistics["costaware"]
assert statistics["dataset"]["item_count"] == rows, statistics["dataset"]
assert own["labelled"]["rows"] == rows, own["counts"]
metrics = [json.loads(line) for line in open(f"{work}/monitor_output/metrics/cloudwatch/costaware-metrics.jsonl")]
for metric in metrics:
    jsonschema.validate(metric, CLOUDWATCH_METRIC_SCHEMA)
print(f"monitor: {rows} captured rows, {rows} labelled, realized cost per decision "
      f"{own['labelled']['realized_cost']['value']:.6g}, {len(metrics)} CloudWatch metrics")
PY
set +e
# shellcheck disable=SC2086
podman run --rm $DOCKER_RUN_ARGS -v "$work/monitor_output:/opt/ml/output" -e dataset_source=/tmp \
    -e output_path=/tmp/out "$IMAGE" monitor >"$work/monitor_fail.log" 2>&1
fail_rc=$?
set -e
message=$(cat "$work/monitor_output/message" 2>/dev/null || true)
echo "without its baseline: exit $fail_rc, ExitMessage: $message"
[ "$fail_rc" -eq 1 ] && [ -n "$message" ] && ! grep -q Traceback "$work/monitor_fail.log" \
    || fail "monitor without a baseline must exit 1 with one line in /opt/ml/output/message"

# ---- 6b. compare -----------------------------------------------------------------------------------
step "compare (a processing job: champion or challenger, the challenger replayed on the champion's capture)"
mkdir -p "$work/compare_out" "$work/compare_output"
compare_args=(-v "$ml/capture:$P/input/champion:ro" -v "$work/groundtruth:$P/input/ground_truth:ro"
              -v "$ml/model:$P/input/champion_model:ro" -v "$ml/model:$P/input/challenger_model:ro"
              -v "$work/compare_out:$P/output" -v "$work/compare_output:/opt/ml/output")
t=$(now)
set +e
# shellcheck disable=SC2086
podman run --rm $DOCKER_RUN_ARGS "${compare_args[@]}" "$IMAGE" compare --replay \
    --labels-independent-of-decision >"$work/compare.log" 2>&1
compare_rc=$?
set -e
t_compare=$(elapsed "$t" "$(now)")
cat "$work/compare.log"
[ "$compare_rc" -eq 0 ] || fail "compare exited $compare_rc: $(cat "$work/compare_output/message" 2>/dev/null)"
"$PYTHON" - "$work" "$rows" <<'PY' || fail "compare's comparison.json is not the replay of the same model"
import json, sys
work, rows = sys.argv[1], int(sys.argv[2])
result = json.load(open(f"{work}/compare_out/comparison.json"))
# the same model replayed on its own capture: every decision the same, the difference exactly 0
assert result["design"] == "replay", result["design"]
assert result["difference"]["rows"] == rows, result["counts"]
assert result["difference"]["difference"] == 0.0, result["difference"]
# too few labelled decisions for any recommendation, and the job says how many more
assert result["recommendation"]["action"] == "wait", result["recommendation"]
assert result["recommendation"]["more_labels"] > 0, result["recommendation"]
assert open(f"{work}/compare_out/report.html").read().startswith("<!doctype html>")
print(f"compare: {rows} labelled decisions replayed; difference 0; "
      f"wait: {result['recommendation']['reason']}")
PY

# ---- 7. two hosts ---------------------------------------------------------------------------------
step "multi-instance training: algo-1 and algo-2 in two containers on a network this test creates"
hosts_dir="$work/hosts"
t=$(now)
set +e
TEST_DIR="$ml" HOSTS_DIR="$hosts_dir" COSTAWARE_PEER_TIMEOUT=120 \
    "$repo/local_test/train_multi_host.sh" "$IMAGE" 2 >"$work/hosts.log" 2>&1
hosts_rc=$?
set -e
t_hosts=$(elapsed "$t" "$(now)")
cat "$work/hosts.log"
if [ "$hosts_rc" -ne 0 ]; then
    for k in 1 2; do echo "--- algo-$k"; tail -30 "$hosts_dir/algo-$k.log" 2>/dev/null; done
    fail "two-host training exited $hosts_rc"
fi
grep -h 'rank\|channel train' "$hosts_dir"/algo-*.log
"$PYTHON" "$repo/tests/image/check_multi_host.py" "$ml" "$hosts_dir" 2 \
    || fail "the two-host job does not match one host"

step "summary"
echo "base image + tools: ${t_base} s | image build: ${t_build} s | size: $((size / 1000000)) MB"
echo "train: exit 0 in ${t_train} s, ${metric_lines} metric lines | /ping 200 after ${ping_s} s | predictions equal within 1e-6"
echo "train from external memory: exit 0 in ${t_external} s"
echo "monitor: exit 0 in ${t_monitor} s on the endpoint's capture with ground truth; one-line failure without a baseline"
echo "compare: exit 0 in ${t_compare} s, a processing job replaying the challenger on the capture"
echo "two hosts (algo-1, algo-2 containers): exit 0 in ${t_hosts} s, metrics equal one host's on all rows"
echo "IMAGE TESTS PASSED"

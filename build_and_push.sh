#!/usr/bin/env bash
# Builds the image for linux/amd64 and pushes it to Amazon ECR; prints the image URI for
# sagemaker.estimator.Estimator(image_uri=...) as the last line on stdout (everything else on stderr).
#
#   ./build_and_push.sh IMAGE [TAG]          e.g. ./build_and_push.sh costaware 0.1.0
#
# IMAGE is the ECR repository name (created when missing); TAG defaults to "latest".
#   AWS account     from STS (get-caller-identity) with the usual credential chain
#   AWS region      AWS_REGION, AWS_DEFAULT_REGION, the profile's configured region
#   DOCKER          engine: docker if it reaches a daemon, else podman (or set DOCKER=docker|podman)
#   PYTHON          a Python with boto3 for the AWS calls (default python3); falls back to the aws CLI
#   AWS_ENDPOINT_URL       alternative AWS endpoint (e.g. a local emulator); honoured by boto3 and the CLI
#   ECR_REGISTRY_OVERRIDE  HOST:PORT of a registry to push to instead of the repository's registry
#                          (plain HTTP allowed; for tests against an emulator whose registry is fake)
#   BASE_IMAGE, BUILD_ARGS passed to local_test/build_image.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "error: $*" >&2; exit 2; }
log() { echo "== $*" >&2; }

if [ $# -lt 1 ] || [ $# -gt 2 ]; then echo "usage: $0 IMAGE [TAG]" >&2; exit 2; fi
NAME="$1"
TAG="${2:-latest}"
[[ "$NAME" =~ ^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$ ]] \
    || die "'$NAME' is not a valid ECR repository name (lowercase letters, digits, . _ - /)"
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "'$TAG' is not a valid image tag"

# ---- engine ---------------------------------------------------------------------------------
if [ -z "${DOCKER:-}" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then DOCKER=docker
    elif command -v podman >/dev/null 2>&1; then DOCKER=podman
    elif command -v docker >/dev/null 2>&1; then
        die "docker is installed but cannot reach a Docker daemon (start it, or install podman and use DOCKER=podman)"
    else
        die "no container engine: install Docker or podman (or set DOCKER=/path/to/engine)"
    fi
fi
export DOCKER
# shellcheck source=local_test/engine.sh
. "$here/local_test/engine.sh"
require_engine

# ---- AWS: account, region, repository, login token -------------------------------------------
PYTHON="${PYTHON:-python3}"
aws_helper() {   # aws_helper NAME  ->  prints: account, region, repository URI, user, password (one per line)
    if command -v "$PYTHON" >/dev/null 2>&1 && "$PYTHON" -c 'import boto3' >/dev/null 2>&1; then
        "$PYTHON" - "$1" <<'PY'
import base64, os, sys
import boto3, botocore.exceptions as bex

name = sys.argv[1]
def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(3)
try:
    # AWS_REGION first (what the SDKs and the SageMaker SDK read), then botocore's own chain
    session = boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
    region = session.region_name
    if not region:
        fail("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or `aws configure set region ...`)")
    if session.get_credentials() is None:
        fail("no AWS credentials: run `aws configure`, set AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    account = session.client("sts").get_caller_identity()["Account"]
    ecr = session.client("ecr")
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        print(f"== ECR repository {name} exists", file=sys.stderr)
    except ecr.exceptions.RepositoryNotFoundException:
        repo = ecr.create_repository(repositoryName=name,
                                     imageScanningConfiguration={"scanOnPush": True})["repository"]
        print(f"== created ECR repository {name}", file=sys.stderr)
    auth = ecr.get_authorization_token(registryIds=[repo["registryId"]])["authorizationData"][0]
    user, _, password = base64.b64decode(auth["authorizationToken"]).decode().partition(":")
    print(account, region, repo["repositoryUri"], user, password, sep="\n")
except bex.NoCredentialsError:
    fail("no AWS credentials: run `aws configure`, set AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
except bex.ClientError as exc:
    fail(f"AWS call failed: {exc}")
except bex.BotoCoreError as exc:
    fail(f"AWS call failed: {exc}")
PY
    elif command -v aws >/dev/null 2>&1; then
        local region account uri password
        region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}"
        [ -n "$region" ] || { echo "error: no AWS region: set AWS_REGION or run aws configure" >&2; return 3; }
        account="$(aws sts get-caller-identity --region "$region" --query Account --output text)" \
            || { echo "error: no usable AWS credentials (aws sts get-caller-identity failed)" >&2; return 3; }
        if ! uri="$(aws ecr describe-repositories --region "$region" --repository-names "$1" \
                    --query 'repositories[0].repositoryUri' --output text 2>/dev/null)"; then
            uri="$(aws ecr create-repository --region "$region" --repository-name "$1" \
                   --image-scanning-configuration scanOnPush=true \
                   --query 'repository.repositoryUri' --output text)" || return 3
            echo "== created ECR repository $1" >&2
        fi
        password="$(aws ecr get-login-password --region "$region")" || return 3
        printf '%s\n' "$account" "$region" "$uri" AWS "$password"
    else
        echo "error: need boto3 (PYTHON=$PYTHON cannot import it) or the aws CLI" >&2
        return 3
    fi
}

aws_out="$(aws_helper "$NAME")" || exit 3
{ read -r ACCOUNT; read -r REGION; read -r REPO_URI; read -r REG_USER; read -r REG_PASSWORD; } <<<"$aws_out"
log "account $ACCOUNT, region $REGION, repository $REPO_URI"

push_repo="$REPO_URI"
tls_args=()
if [ -n "${ECR_REGISTRY_OVERRIDE:-}" ]; then
    push_repo="$ECR_REGISTRY_OVERRIDE/${REPO_URI#*/}"
    engine_is_podman && tls_args=(--tls-verify=false)
    log "ECR_REGISTRY_OVERRIDE: pushing to $push_repo instead of $REPO_URI"
fi
registry="${push_repo%%/*}"

# ---- build, tag, log in, push -----------------------------------------------------------------
local_image="$NAME:$TAG"
PLATFORM=linux/amd64 "$here/local_test/build_image.sh" "$local_image" >&2
"$DOCKER" tag "$local_image" "$push_repo:$TAG"

printf '%s' "$REG_PASSWORD" | "$DOCKER" login "${tls_args[@]}" --username "$REG_USER" --password-stdin "$registry" >&2 \
    || die "login to $registry failed"
digest_file="$(mktemp)"
trap 'rm -f "$digest_file"' EXIT
if engine_is_podman; then
    "$DOCKER" push "${tls_args[@]}" --digestfile "$digest_file" "$push_repo:$TAG" >&2
else
    "$DOCKER" push "$push_repo:$TAG" | tee /dev/stderr | grep -o 'digest: sha256:[0-9a-f]*' | cut -d' ' -f2 >"$digest_file" || true
fi
digest="$(cat "$digest_file")"
log "pushed $push_repo:$TAG (digest ${digest:-unknown})"
[ -n "${ECR_REGISTRY_OVERRIDE:-}" ] && log "ECR repository URI: $REPO_URI:$TAG"
echo "== use it with sagemaker.estimator.Estimator(image_uri=\"$push_repo:$TAG\", ...)" >&2
echo "$push_repo:$TAG"

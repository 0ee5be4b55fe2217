"""build_and_push.sh end to end, for real: the AWS calls go to moto's server and the image goes into a
real OCI registry (Debian's ``docker-registry``), both on 127.0.0.1; then the image is pulled back
into a fresh, separate podman storage and its digest compared with the one pushed.

Needs podman and docker-registry (``local_test/build_base_image.sh`` installs both, as root) and
``moto[server]`` in this Python. Missing tools are a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "build_and_push.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with opener.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _require_tools() -> None:
    missing = [tool for tool in ("podman", "docker-registry") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run local_test/build_base_image.sh as root "
                    "(apt-get installs podman, runc, docker-registry) before the image tests")
    try:
        import moto.server  # noqa: F401
    except ImportError:
        pytest.fail(f"moto[server] is not installed in {sys.executable}: pip install 'moto[server]'")


@pytest.fixture(scope="module")
def base_image():
    """The local base image and podman settings; idempotent, fast when they already exist."""
    _require_tools()
    subprocess.run([str(REPO / "local_test" / "build_base_image.sh")], check=True, timeout=900)


@pytest.fixture
def moto_server(tmp_path):
    port = _free_port()
    log = tmp_path / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/moto-api/", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture
def registry(tmp_path):
    port = _free_port()
    root = tmp_path / "registry"
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = tmp_path / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/v2/", proc, log)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc)


def _aws_env(tmp_path, endpoint: str | None, credentials: bool = True) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k not in ("ECR_REGISTRY_OVERRIDE", "DOCKER_RUN_ARGS")}
    (tmp_path / "aws-config").write_text("")
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "aws-config"),            # nothing from the machine's AWS setup
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-config"),
        AWS_EC2_METADATA_DISABLED="true",                         # no instance-metadata lookups
        AWS_REGION="us-east-1",
        DOCKER="podman",
        PYTHON=sys.executable,
        REGISTRY_AUTH_FILE=str(tmp_path / "auth.json"),           # podman login writes here only
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    if credentials:
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    return env


def _podman(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, **kwargs)


def test_build_and_push_to_ecr_and_pull_back(base_image, moto_server, registry, tmp_path):
    import boto3

    name = f"costaware-push-test-{uuid.uuid4().hex[:8]}"
    tag = "0.1.0-test"
    env = _aws_env(tmp_path, moto_server)
    env["ECR_REGISTRY_OVERRIDE"] = registry
    pushed_ref = f"{registry}/{name}:{tag}"
    runroot = None
    try:
        result = subprocess.run([str(SCRIPT), name, tag], env=env, capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, result.stderr[-5000:]
        uri = result.stdout.strip().splitlines()[-1]
        assert uri == pushed_ref

        # the repository exists in the (emulated) ECR, and its URI is the one the script reported
        ecr = boto3.client("ecr", region_name="us-east-1", endpoint_url=moto_server,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        assert repo["repositoryName"] == name
        assert f"ECR repository URI: {repo['repositoryUri']}:{tag}" in result.stderr
        assert f"account {repo['registryId']}, region us-east-1" in result.stderr

        pushed_digest = next(line.split("digest ")[1].rstrip(")") for line in result.stderr.splitlines()
                             if line.startswith("== pushed "))
        assert pushed_digest.startswith("sha256:"), result.stderr[-2000:]

        # the registry serves that manifest under the tag
        request = urllib.request.Request(
            f"http://{registry}/v2/{name}/manifests/{tag}", method="HEAD",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                               "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as response:
            assert response.headers["Docker-Content-Digest"] == pushed_digest

        built_id = _podman("image", "inspect", "--format", "{{.Id}}", f"{name}:{tag}", check=True).stdout.strip()

        # pull it back into an empty, separate storage: every blob comes from the registry
        # (podman wants a short runroot path)
        runroot = tempfile.mkdtemp(prefix="cw-run-", dir="/tmp")
        store = ["--root", str(tmp_path / "pull-root"), "--runroot", runroot, "--storage-driver", "vfs"]
        pulled = _podman(*store, "pull", "--tls-verify=false", "--authfile", str(tmp_path / "auth.json"),
                         pushed_ref, env=env, timeout=600)
        assert pulled.returncode == 0, pulled.stderr
        info = json.loads(_podman(*store, "image", "inspect", pushed_ref, check=True).stdout)[0]
        assert info["Digest"] == pushed_digest
        assert info["Id"] == built_id                      # same image config: the same image
        assert info["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
        assert info["Labels"]["com.amazonaws.sagemaker.capabilities.multi-models"] == "true"
        assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    finally:
        _podman("rmi", f"{name}:{tag}", pushed_ref)            # untag only what this test created
        if runroot:
            shutil.rmtree(runroot, ignore_errors=True)
        shutil.rmtree(tmp_path / "pull-root", ignore_errors=True)  # vfs: plain directories


def test_missing_credentials_is_a_clear_error(moto_server, tmp_path):
    _require_tools()
    env = _aws_env(tmp_path, moto_server, credentials=False)
    result = subprocess.run([str(SCRIPT), "costaware-nocreds"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "no AWS credentials" in result.stderr
    assert result.stdout == ""


def test_missing_engine_is_a_clear_error(tmp_path):
    env = _aws_env(tmp_path, None)
    env["DOCKER"] = str(tmp_path / "no-such-engine")
    result = subprocess.run([str(SCRIPT), "costaware"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "container engine" in result.stderr and "not found" in result.stderr

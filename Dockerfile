# costaware: SageMaker bring-your-own-container image (train + serve), CPU only.
#
#   docker build -t costaware .                      # official slim Python base
#   local_test/build_image.sh costaware              # podman; falls back to a local debootstrap base
#
# SageMaker runs `docker run IMAGE train` and `docker run IMAGE serve`: both are console scripts on
# PATH, both from costaware (`train` checks the configuration files, then runs the sagemaker-training
# toolkit's train, which imports SAGEMAKER_TRAINING_MODULE; it replaces the toolkit's script of the
# same name because costaware is installed after its dependencies).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- build stage: compilers + a virtual environment with everything installed -----------------
FROM ${BASE_IMAGE} AS build

# sagemaker-training ships only an sdist with a small C extension: it needs gcc, libc headers and
# Python.h. Debian's python3 needs python3-dev for Python.h; the official image already has it.
RUN set -eux; \
    pkgs="gcc libc6-dev"; \
    python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || pkgs="$pkgs python3-dev"; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY local_test/image-constraints.txt /tmp/image-constraints.txt
RUN pip install -c /tmp/image-constraints.txt pip setuptools

# Dependencies first (their own layer: cached while only the package's code changes).
COPY container/pyproject.toml /src/container/pyproject.toml
RUN set -eux; \
    python -c 'import tomllib; print("\n".join(tomllib.load(open("/src/container/pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt; \
    pip install --no-build-isolation -c /tmp/image-constraints.txt -r /tmp/requirements.txt; \
    # every installed distribution must be pinned (new dependency? run local_test/pin_image_deps.py)
    python -c 'import re, sys; from importlib import metadata; \
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower(); \
pins = {canon(l.split("==")[0]) for l in open("/tmp/image-constraints.txt") if "==" in l}; \
loose = sorted(n for n in {d.metadata["Name"] for d in metadata.distributions()} if canon(n) not in pins); \
sys.exit("not pinned in local_test/image-constraints.txt: " + ", ".join(loose) if loose else 0)'

COPY container/ /src/container/
RUN set -eux; \
    pip install --no-build-isolation --no-deps -c /tmp/image-constraints.txt /src/container; \
    pip check; \
    # CPU image: the GPU `xgboost` distribution (NVIDIA NCCL, ~1 GB) must not be installed.
    if pip show xgboost >/dev/null 2>&1; then echo "GPU xgboost distribution was installed" >&2; exit 1; fi; \
    rm -rf /src /tmp/requirements.txt

# Slimming (~110 MB): test suites, C/C++ headers and Cython sources (for compiling against the
# packages, not for running them), debug symbols of the shared libraries, setuptools (build only).
COPY local_test/image_smoke.py /tmp/image_smoke.py
RUN set -eux; \
    site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    find "$site" -depth -type d -name tests -exec rm -rf {} +; \
    for pkg in numpy pandas scipy sklearn pyarrow matplotlib; do \
        [ -d "$site/$pkg" ] || continue; \
        find "$site/$pkg" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.h' \
             -o -name '*.hpp' -o -name '*.c' -o -name '*.cc' -o -name '*.cpp' \) -delete; \
    done; \
    rm -rf "$site/pyarrow/include" "$site/pyarrow/src"; \
    # (not the libraries auditwheel vendored into *.libs/: patchelf-edited, strip breaks them)
    find "$site" -type f -name '*.so*' ! -path '*.libs/*' -exec strip --strip-unneeded {} +; \
    pip uninstall -y -q setuptools; \
    pip check; \
    python /tmp/image_smoke.py; \
    rm /tmp/image_smoke.py

# ---- final stage: the same base + the virtual environment, no compilers -----------------------
FROM ${BASE_IMAGE}

# multi-models: serve answers SageMaker's multi-model contract when SAGEMAKER_MULTI_MODEL=true
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      com.amazonaws.sagemaker.capabilities.multi-models=true \
      org.opencontainers.image.title="costaware" \
      org.opencontainers.image.description="Cost-sensitive XGBoost training and serving for SageMaker"

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8 \
    SAGEMAKER_TRAINING_MODULE=costaware.sagemaker.training_job:main

WORKDIR /opt/program
EXPOSE 8080

# syntax=docker/dockerfile:1
# canaryd's container image.
#
#   docker build -t canaryd:0.1.0 .
#
# Stage 1 builds the wheel from the sources; stage 2 installs that wheel alone (and its
# dependencies from the package index) into a virtualenv on a clean base, so no source
# tree, build tool or cache reaches the image. No config and no secret is baked in: the
# config comes from the mounted ConfigMap (CANARYD_CONFIG), API tokens from a mounted
# Secret (CANARYD_TOKENS_FILE), Kubernetes credentials from the pod's ServiceAccount.
#
# Runs as UID/GID 10001 and needs no writable path but /tmp (an emptyDir in
# deploy/base/deployment.yaml), so the root filesystem can be read-only.
#
# The base is pinned by version and digest (the digest of python:3.11.11-slim-bookworm as
# published; re-resolve both together when moving to a newer patch release).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY canaryd ./canaryd
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    PATH=/opt/canaryd/bin:$PATH
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/canaryd \
    && /opt/canaryd/bin/pip install /wheels/*.whl \
    && /opt/canaryd/bin/pip check \
    && groupadd --system --gid 10001 canaryd \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
         --shell /usr/sbin/nologin canaryd
WORKDIR /tmp
USER 10001:10001
# The HTTP API, /metrics, /healthz and /readyz.
EXPOSE 8080
ENTRYPOINT ["canaryd", "serve"]

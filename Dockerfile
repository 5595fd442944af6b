# syntax=docker/dockerfile:1
#
# One image for every StepBlend service:
#     docker run IMAGE gateway|router|providers|billing     (= stepblend serve NAME)
#
# builder: turns the project and its pinned dependencies into wheels (binary wheels
#          only for dependencies, so no compiler is needed and nothing is built twice).
# runtime: a slim Python with a virtualenv installed from those wheels and nothing
#          else: no build tools, no pip in the venv, no source tree, user 10001.
#
# The runtime writes nothing outside /tmp and $HOME, so it runs with a read-only root
# filesystem (Kubernetes mounts emptyDirs there; see deploy/k8s).
# Build:  docker build -t REGISTRY/stepblend:0.1.0 .

# A patch-level tag; pin it by digest as well in a registry you control
# (docker buildx imagetools inspect python:3.12.11-slim-bookworm).
ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# PIP_CONSTRAINT (unlike -c) also pins the build backend in pip's isolated build env.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_CONSTRAINT=/src/deploy/docker/constraints.txt
WORKDIR /src
COPY deploy/docker/constraints.txt deploy/docker/constraints.txt
# Dependencies first, in their own layer: a source change does not re-download them.
COPY pyproject.toml README.md ./
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN pip wheel --only-binary=:all: --wheel-dir /wheels -r /tmp/requirements.txt "psycopg[binary]"
COPY stepblend stepblend
COPY services services
RUN pip wheel --only-binary=:all: --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="stepblend" \
      org.opencontainers.image.description="StepBlend, the OpenAI-compatible LLM routing gateway: one image, four services"
# A container is reached from outside itself: bind every interface, where
# `stepblend serve` alone defaults to loopback.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/stepblend \
    PATH=/opt/stepblend/bin:$PATH \
    STEPBLEND_HOST=0.0.0.0
RUN groupadd --system --gid 10001 stepblend \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/stepblend --create-home \
        --shell /usr/sbin/nologin stepblend
# The wheels are bind-mounted, never copied: they stay out of the image's layers.
# Bytecode is compiled here, at install time, so the read-only root needs no writes.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/stepblend \
 && pip --python /opt/stepblend/bin/python install --no-cache-dir --disable-pip-version-check \
        --root-user-action=ignore --no-index --find-links=/wheels stepblend "psycopg[binary]" \
 && stepblend --help > /dev/null
WORKDIR /home/stepblend
USER 10001:10001
# gateway HTTP, router, providers, billing gRPC
EXPOSE 8080 50051 50052 50053
# Exec form: the Python process is PID 1 and receives SIGTERM itself, which
# `stepblend serve` turns into a graceful shutdown.
ENTRYPOINT ["stepblend", "serve"]
CMD ["gateway"]

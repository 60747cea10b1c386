# par-server container image.
#
#   docker build -t par-server .
#   docker run --rm -p 8000:8000 --stop-timeout 35 \
#       -e PAR_DATABASE_URL=postgresql+psycopg://par:par@db:5432/par \
#       -e PAR_ADMIN_TOKEN=... -e PAR_PEPPER=... \
#       -e PAR_PUBLIC_BASE_URL=http://localhost:8000 par-server
#
# The entrypoint (docker/entrypoint.sh) runs `par-server migrate` and then
# `exec par-server serve --host 0.0.0.0 --port ${PAR_PORT:-8000} "$@"`. To
# listen on another port set PAR_PORT, which the HEALTHCHECK probes too.
#
# Stopping: on SIGTERM the server finishes in-flight requests for up to
# PAR_SHUTDOWN_GRACE_SECONDS (25 s), but `docker stop` and compose kill the
# container after 10 s. Give them more than the grace: `docker run
# --stop-timeout 35`, `docker stop -t 35`, compose's `stop_grace_period: 35s`
# (docker-compose.yml); on Kubernetes deploy/kubernetes sets terminationGracePeriodSeconds: 40, which
# also covers its 5 s preStop delay.
#
# Several replicas: do not let every replica migrate on start. Run the
# migration once as a one-off job,
#     docker compose run --rm par-server par-server migrate
# and start the replicas with PAR_SKIP_MIGRATE=1, which disables the
# entrypoint's migrate step.

# Both stages must use the same interpreter: the venv built in the builder
# links to /usr/local/bin/python3.11 of this image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the locked dependencies and the project, into a venv ----------
FROM ${PYTHON_IMAGE} AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

WORKDIR /src
# uv at the version and hashes the checkout pins; it stays in this stage.
COPY scripts/uv-requirements.txt ./scripts/
RUN pip install --no-cache-dir --require-hashes -r scripts/uv-requirements.txt

# Exactly what uv.lock pins (hash-checked), without the test group, with the
# tracing extra (OpenTelemetry: on only when OTEL_* variables ask). The
# dependencies get a layer of their own, rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md LICENSE ./
RUN uv sync --locked --no-default-groups --extra tracing --no-install-project --no-editable
# The project itself, as a wheel would install it (migrations included).
COPY app ./app
COPY migrations ./migrations
RUN uv sync --locked --no-default-groups --extra tracing --no-editable
# The .pyc files are compiled here on purpose: at run time the code is
# read-only for the service user and PYTHONDONTWRITEBYTECODE is set.

# --- runtime: the venv and nothing else -------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The base image's own pip, setuptools and wheel are never used at run time
# (the venv was built in the other stage): removed, an installer is not at
# hand in a running container, nor in an image scanner's findings. The base
# layer still holds their bytes, so this does not make the image smaller.
# Fixed uid/gid so that volume ownership and runAsUser policies are stable;
# not --system, whose range (below 1000) 10001 is outside of.
RUN python -m pip uninstall --yes --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
        pip setuptools wheel \
    && groupadd --gid 10001 par \
    && useradd --uid 10001 --gid par --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin par

# Code stays owned by root (read-only for the service user); only ./data is
# writable, for a local SQLite database if one is configured. With
# `--workers` > 1 the workers' metrics go to a new directory under /tmp
# (world-writable here; with a read-only root file system, mount one there).
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# Executable in git (mode 100755), so no COPY --chmod, which the classic builder lacks.
COPY docker/entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN install -d -o par -g par -m 0700 /app/data

USER 10001:10001

EXPOSE 8000

# Probes /healthz on PAR_PORT, where the entrypoint serves (slim has no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["par-server", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD []

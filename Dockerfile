# par-server container image.
#
#   docker build -t par-server .
#   docker run --rm -p 8000:8000 \
#       -e PAR_DATABASE_URL=postgresql+psycopg://par:par@db:5432/par \
#       -e PAR_ADMIN_TOKEN=... -e PAR_PEPPER=... \
#       -e PAR_PUBLIC_BASE_URL=http://localhost:8000 par-server
#
# The entrypoint (docker/entrypoint.sh) runs `par-server migrate` and then
# `exec par-server serve --host 0.0.0.0 --port 8000 "$@"`.
#
# Several replicas: do not let every replica migrate on start. Run the
# migration once as a one-off job,
#     docker compose run --rm par-server par-server migrate
# and start the replicas with PAR_SKIP_MIGRATE=1, which disables the
# entrypoint's migrate step.

# Both stages must use the same interpreter: the venv built in the builder
# links to /usr/local/bin/python3.11 of this image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: install the project and its dependencies into a venv ---------
FROM ${PYTHON_IMAGE} AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# All dependencies ship manylinux wheels for CPython 3.11, so the builder
# needs no compiler either.
RUN python -m venv /opt/venv

WORKDIR /src
# README.md is part of the build: pyproject.toml declares it as the readme.
COPY pyproject.toml README.md ./
COPY app ./app
# pip byte-compiles what it installs; those .pyc files are kept on purpose:
# at run time the code is read-only for the service user and
# PYTHONDONTWRITEBYTECODE is set, so they could not be written later.
RUN pip install --no-cache-dir .

# --- runtime: the venv, the migrations and nothing else --------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Fixed uid/gid so that volume ownership and runAsUser policies are stable.
RUN groupadd --system --gid 10001 par \
    && useradd --system --uid 10001 --gid par --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin par

# `par-server migrate` reads ./alembic.ini, so WORKDIR holds alembic.ini and
# migrations/. Code stays owned by root (read-only for the service user);
# only ./data is writable, for a local SQLite database if one is configured.
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY alembic.ini ./
COPY migrations ./migrations
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN install -d -o par -g par -m 0750 /app/data

USER 10001:10001

EXPOSE 8000

# slim has no curl: probe with the interpreter. urlopen raises on non-2xx,
# which exits non-zero. The port matches the entrypoint's --port 8000.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD []

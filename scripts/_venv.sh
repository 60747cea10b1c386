# Sourced by scripts/demo, scripts/test and scripts/lock: uv at the version and hashes of
# scripts/uv-requirements.txt, and virtual environments installed exactly from uv.lock.
# shellcheck shell=bash

# This machine's interpreter (PYTHON, else python3); uv never downloads one.
export UV_PYTHON="${PYTHON:-python3}" UV_PYTHON_DOWNLOADS=never
UV=.tools/bin/uv

ensure_uv() {
    local pinned
    pinned=$(sed -n 's/^uv==\([^ ]*\).*/\1/p' scripts/uv-requirements.txt)
    if [ ! -x "$UV" ] || [ "$("$UV" --version | cut -d' ' -f2)" != "$pinned" ]; then
        "$UV_PYTHON" -m venv --clear .tools
        # The machine's pip configuration (a mirror, a CA) applies; the hashes decide what is installed.
        .tools/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
            -r scripts/uv-requirements.txt
    fi
}

# .venv with exactly what uv.lock pins; the arguments go to `uv sync` (e.g. --no-default-groups).
ensure_venv() {
    ensure_uv
    "$UV" sync --quiet --locked "$@"
}

# Sourced by scripts/serve and scripts/test: create or reuse .venv at the repo root
# and install the project into it when pyproject.toml changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

pick_python() {
    for candidate in python3.11 python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 14)))'; then
            echo "$candidate"
            return 0
        fi
    done
    echo "agent-trio needs Python 3.11, 3.12 or 3.13 on PATH" >&2
    return 1
}

if [ ! -x .venv/bin/python ]; then
    "$(pick_python)" -m venv .venv
fi
stamp=.venv/.agent-trio-installed
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch is pinned to the CPU build that the local embedding model needs.
    .venv/bin/python -m pip install --quiet -e ".[local,dev]"
    echo "$want" > "$stamp"
fi

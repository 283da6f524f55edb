#!/usr/bin/env bash
# Start hotswap's self-deploying example, then open http://127.0.0.1:4000 and click a card.
#
#   ./start.sh
#   PORT=4010 DEMO_BUTTON_LABEL="Ship the green build" ./start.sh
#
# 1. makes a virtual environment in example/.venv with hotswap installed from this checkout
#    (and uv, which makes builds fast); needs python3 >= 3.11 and PyPI access;
# 2. builds the first release with the real `hotswap build`, with DEMO_BUTTON_LABEL baked in;
# 3. runs `hotswap run` with its state dir in example/.state, until Ctrl-C.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PORT=${PORT:-4000}
HOST=${HOST:-127.0.0.1}
LABEL=${DEMO_BUTTON_LABEL:-Hello from hotswap}
VENV=${EXAMPLE_VENV:-$HERE/.venv}
STATE=${EXAMPLE_STATE_DIR:-$HERE/.state}
PY=${PYTHON:-python3}

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "the example needs python3 >= 3.11 (found $("$PY" --version 2>&1))" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.example-deps"
want=$(cat "$REPO/pyproject.toml" | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== installing hotswap (from $REPO) and uv into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e "$REPO" uv
    echo "$want" > "$stamp"
fi

mkdir -p "$STATE"
chmod 700 "$STATE"
out="$STATE/first-release"
rm -rf "$out"
echo "== building the first release: \"$LABEL\""
tarball=$(PYTHONPATH="$HERE/src" "$VENV/bin/python" -m example_app.builder \
    --label "$LABEL" --build 0 --source "$HERE" --out "$out")

# The deployer service finds the project it rebuilds here.
export DEMO_SOURCE_DIR="$HERE"
echo "== serving on http://$HOST:$PORT  (state dir $STATE; Ctrl-C stops)"
exec "$VENV/bin/hotswap" run "$tarball" --bind "$HOST:$PORT" --state-dir "$STATE"

# Sourced by scripts/*: makes .venv with hotswap (editable) and its dev tools.
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "hotswap needs python3 >= 3.11 (found $("$PY" --version 2>&1))" >&2; exit 1; }
VENV=${HOTSWAP_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.hotswap-deps"
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== installing hotswap and its dev tools into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi

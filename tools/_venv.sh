# Sourced by tools/conformance and tools/test: make .venv (once) and install the project into it.
# PYTHON picks the interpreter (default python3); QSBR_VENV the folder (default .venv).
venv=${QSBR_VENV:-.venv}
python=${PYTHON:-python3}
if [[ ! -x $venv/bin/python ]]; then
    echo "setting up $venv with $($python --version 2>&1)" >&2
    "$python" -m venv "$venv"
fi
# Editable install: rebuilds the Cython bridge when the C or Cython sources changed.
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
"$venv/bin/python" -c "import cython_bridge._qsbr313, cython_bridge._qsbr314" \
    || { echo "the Cython bridge did not build; see the pip output above" >&2; exit 1; }

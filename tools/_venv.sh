# Sourced by tools/conformance and tools/test: make .venv (once) and install the project into it
# again only when its sources changed (a hash of them is kept in .venv/.qsbr-stamp).
# PYTHON picks the interpreter (default python3); QSBR_VENV the folder (default .venv);
# QSBR_EXTRAS the project's extras installed with it (default test; CI: test,audit,bench).
# docs/development.md describes them.
venv=${QSBR_VENV:-.venv}
python=${PYTHON:-python3}
extras=${QSBR_EXTRAS:-test}
if [[ ! -x $venv/bin/python ]]; then
    echo "setting up $venv with $($python --version 2>&1)" >&2
    "$python" -m venv "$venv"
fi
# What the installed package is built from: pyproject/setup, the bridge and the C port.  The
# Python sources are installed editable, so their changes need no reinstall.
stamp=$(cat pyproject.toml setup.py $(git ls-files -co --exclude-standard -- \
            cython_bridge reference_c/src reference_c/include reference_c/harness \
            conformance/checks/_live_probe.c conformance/checks/_hazard_probe.c reference_c/litmus \
            2>/dev/null | grep -E '\.(pyx|pxi|pxd|c|h)$' | sort) 2>/dev/null \
        | sha256sum | cut -d' ' -f1)
stamp="$stamp [$extras]"
if [[ ! -f $venv/.qsbr-stamp || $(cat "$venv/.qsbr-stamp") != "$stamp" ]] \
        || ! "$venv/bin/python" -c "import cython_bridge._qsbr313, cython_bridge._qsbr314" \
            2>/dev/null; then
    # Editable install: rebuilds the Cython bridge when the C or Cython sources changed.
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1 \
        | grep -v "^WARNING: Location" >&2 || true
    "$venv/bin/python" -c "import cython_bridge._qsbr313, cython_bridge._qsbr314" \
        || { echo "the Cython bridge did not build; see the pip output above" >&2; exit 1; }
    echo "$stamp" > "$venv/.qsbr-stamp"
fi

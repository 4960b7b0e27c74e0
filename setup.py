"""Builds the Cython bridge: one extension per C variant of the port (QSBR_PROFILE 313 = 3.13.3-3.13.5,
314 = 3.14.4+, 31300 = 3.13.0-3.13.2, 31306 = 3.13.6-3.14.3), from the same C sources.

The port's C files, and its torture (reference_c/harness/torture.c), are compiled into each
extension with hidden visibility, so nothing of the port (which reuses CPython's internal names
through renamed symbols) is exported from it.
Mutants of the port are patch files (reference_c/mutants/) built by `make mutant` from a copy;
the bridge is always built from the port as it is.
"""

import os
import platform
import sysconfig
from glob import glob

from Cython.Build import cythonize
from setuptools import Extension, setup

C_SOURCES = [*sorted(glob("reference_c/src/*.c")), "reference_c/harness/torture.c"]


def bridge(profile: int) -> Extension:
    return Extension(
        f"cython_bridge._qsbr{profile}",
        [f"cython_bridge/_qsbr{profile}.pyx", *C_SOURCES],
        include_dirs=["reference_c/include", "reference_c/harness"],
        define_macros=[("QSBR_PROFILE", str(profile)), ("_GNU_SOURCE", None)],
        extra_compile_args=["-fvisibility=hidden"],
    )


def live_probe() -> list[Extension]:
    """Free-threaded interpreters only: a reader of the running interpreter's own QSBR state
    and the hardware litmus through its own QSBR functions, compiled against its installed
    internal headers."""
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return []
    return [Extension(f"conformance.checks.{name}", [f"conformance/checks/{name}.c"],
                      depends=["conformance/checks/_probe_release.h",
                               "reference_c/litmus/litmus_core.h"],
                      include_dirs=["reference_c/litmus"],
                      define_macros=[("Py_BUILD_CORE_MODULE", "1")])
            for name in ("_live_probe", "_hazard_probe")]


# One build folder per interpreter release: the live probe reads internal structs that change
# within a release line, and setuptools would reuse an object file built for another 3.13t.
BUILD_BASE = os.path.join("build", platform.python_version()
                          + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))

setup(
    options={"build": {"build_base": BUILD_BASE}},
    ext_modules=cythonize(
        [bridge(313), bridge(314), bridge(31300), bridge(31306)],
        compiler_directives={"language_level": 3, "freethreading_compatible": True},
    ) + live_probe(),
)

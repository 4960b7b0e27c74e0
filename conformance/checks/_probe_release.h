/*
 * What the two probes of the running interpreter (_live_probe, _hazard_probe) share: both are
 * compiled against one release's internal headers, whose structs change within a release line
 * (3.13.6, 3.14.4), so each refuses to run in another release.  A wheel built for
 * cp313-cp313t installs on every 3.13t, and a build directory shared between two 3.13t
 * releases reuses the first one's object file.
 */
#ifndef QSBR_PROBE_RELEASE_H
#define QSBR_PROBE_RELEASE_H

#include "Python.h"

// 0, or -1 with ImportError set when the running interpreter is not the release the probe
// `name` was compiled against.
static int
probe_refuse_other_release(const char *name)
{
    if ((Py_Version & ~0xFFu) == (PY_VERSION_HEX & ~0xFFu)) {
        return 0;
    }
    PyErr_Format(PyExc_ImportError,
                 "the %s was compiled against CPython %s, but this is %d.%d.%d: rebuild it "
                 "for this interpreter (pip install --force-reinstall --no-cache-dir "
                 "--no-binary qsbr-conformance qsbr-conformance, or from a source tree with a "
                 "clean build/ folder)", name, PY_VERSION,
                 (int)((Py_Version >> 24) & 0xFF), (int)((Py_Version >> 16) & 0xFF),
                 (int)((Py_Version >> 8) & 0xFF));
    return -1;
}

#endif  // QSBR_PROBE_RELEASE_H

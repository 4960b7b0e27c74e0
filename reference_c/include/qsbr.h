// qsbr.h: the one header to include to embed the QSBR port in C code.
//
// It brings CPython's QSBR API under CPython's own names (_Py_qsbr_*, struct _qsbr_shared,
// QSBR_LT, ...) together with the stand-ins for the interpreter services it needs, and the
// checked prefix-only API.  Link with libqsbr.a or libqsbr.so (see the README).
//
// Do not include this header together with <Python.h>: both define PyMutex, PyThreadState
// and friends.  Inside a Python extension, include qsbr_api.h only.
#ifndef QSBR_H
#define QSBR_H

#include "qsbr_pyport.h"
#include "pyatomic.h"
#include "pycore_lock.h"
#include "pycore_pymem.h"
#include "pycore_qsbr.h"
#include "pycore_tstate.h"
#include "qsbr_api.h"

#endif  // QSBR_H

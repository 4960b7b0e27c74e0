// The port's profiles: which upstream revision of QSBR it compiles as (see pycore_qsbr.h and the
// release matrix in docs/semantics.md).  Included by qsbr_pyport.h, so every file of the port,
// and upstream's own qsbr.c built by `qsbr-conformance upstream`, sees the same switches.
#ifndef QSBR_PROFILE_H
#define QSBR_PROFILE_H

#ifndef QSBR_PROFILE
#  define QSBR_PROFILE 313
#endif
#if QSBR_PROFILE == 313
#  undef QSBR_PROFILE
#  define QSBR_PROFILE 31303
#elif QSBR_PROFILE == 314
#  undef QSBR_PROFILE
#  define QSBR_PROFILE 31404
#endif
#if QSBR_PROFILE != 31300 && QSBR_PROFILE != 31303 && QSBR_PROFILE != 31306 \
    && QSBR_PROFILE != 31404
#  error "QSBR_PROFILE must be 31300, 31303, 31306, 31404 (or the aliases 313, 314)"
#endif
// What each profile's upstream revision has (1) or lacks (0):
//   QSBR_DEFERRALS: the `deferrals` counter and _Py_qsbr_deferred_advance (until 3.13.5)
//   QSBR_RESERVE_INDEX_AFTER_UNLOCK: reserve's index computed after the unlock (3.13.0-3.13.2)
//   QSBR_ALIGNED_ARRAY: the 64-byte aligned array and `array_raw` (3.14.4+)
#define QSBR_DEFERRALS (QSBR_PROFILE == 31300 || QSBR_PROFILE == 31303)
#define QSBR_RESERVE_INDEX_AFTER_UNLOCK (QSBR_PROFILE == 31300)
#define QSBR_ALIGNED_ARRAY (QSBR_PROFILE == 31404)
// Not qsbr.c's but pystate.c's: new_threadstate() reserves a TLBC index after the QSBR slot
// (3.14; the stand-in follows 3.14.7 in 31404, and 3.13's new_threadstate, which has no TLBC,
// in the other profiles, including 31306 which also covers 3.14.0-3.14.3).
#define QSBR_TLBC_INDEX (QSBR_PROFILE == 31404)
// The fix of gh-155363 (later than every release profile) is not a switch but a patch applied to
// a copy: fixes/GH155363_UNRESERVE.patch (`make fix FIX=GH155363_UNRESERVE`).

#endif  // QSBR_PROFILE_H

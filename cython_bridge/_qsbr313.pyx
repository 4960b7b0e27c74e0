# cython: language_level=3, freethreading_compatible=True
# The C port built with QSBR_PROFILE=313 (see setup.py); the code is shared with the other profile.
include "_bridge.pxi"

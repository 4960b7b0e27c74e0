# cython: language_level=3, freethreading_compatible=True
# The C port built with QSBR_PROFILE=31300 (see setup.py); the code is shared with the other profiles.
include "_bridge.pxi"

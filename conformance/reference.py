"""Public name of ``conformance.drivers.reference`` (the reference port as an adapter; the
default ``--impl conformance.reference:reference_port``).

The same object as ``conformance.drivers.reference``, not a copy.
"""

import sys

from .drivers import reference as _module

sys.modules[__name__] = _module

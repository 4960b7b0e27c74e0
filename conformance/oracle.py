"""Public name of ``conformance.model.oracle`` (documented; adapters and ``--impl`` specs use it).

The package is grouped by responsibility (model, checks, drivers, frontends); this module is
the same object as ``conformance.model.oracle``, not a copy.
"""

import sys

from .model import oracle as _module

sys.modules[__name__] = _module

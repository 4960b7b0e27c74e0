"""Public name of ``conformance.drivers.cabi`` (documented; adapters and ``--impl`` specs use it).

The package is grouped by responsibility (model, checks, drivers, frontends); this module is
the same object as ``conformance.drivers.cabi``, not a copy.
"""

import sys

from .drivers import cabi as _module

sys.modules[__name__] = _module

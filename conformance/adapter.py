"""Public name of ``conformance.model.adapter`` (documented; adapters and ``--impl`` specs use it).

The package is grouped by responsibility (model, checks, drivers, frontends); this module is
the same object as ``conformance.model.adapter``, not a copy.
"""

import sys

from .model import adapter as _module

sys.modules[__name__] = _module

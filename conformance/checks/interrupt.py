"""The checks' name of ``conformance.drivers.interrupt`` (Ctrl-C that cannot be lost).

Drivers and checks both stop at its check points; it lives with the drivers, which the checks
may import (never the reverse).  These are the same functions (one flag, in the drivers'
module), not copies.
"""

from ..drivers.interrupt import (  # noqa: F401 - re-exported
    acknowledge,
    check,
    deferred,
    handling_sigint,
    requested,
)

"""``python -m conformance.checks.audit SOURCE [--json PATH]``."""

import sys

from .report import main

sys.exit(main())

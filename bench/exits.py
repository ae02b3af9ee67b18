"""Exit codes of ``bench`` (those shared with ``datagen`` come from :mod:`datagen.errors`)."""
from __future__ import annotations

from datagen.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_INTERRUPTED", "EXIT_NOTHING", "EXIT_OK", "EXIT_PARTIAL", "EXIT_REGRESSION", "EXIT_USAGE"]

EXIT_REGRESSION = 1   # bench compare / nightly: a regression against the baseline
EXIT_PARTIAL = 3      # the run finished, but some pairs failed (or its report did)
EXIT_NOTHING = 4      # nothing to run: no selected method fits the selected datasets

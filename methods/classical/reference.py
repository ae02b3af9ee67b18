"""Reference rows for enhancement and restoration tables: the degraded input itself."""
from __future__ import annotations

import numpy as np

from ..base import Method, check_image


class Identity(Method):
    NAME = "identity"
    VERSION = "1"
    PROVIDES = "restored_image"       # scored on enhancement and restoration sets alike
    UNITS = "image"
    DESCRIPTION = ("no processing: returns the input, so enhancement and restoration scores can be read against the "
                   "blurry input")
    REFERENCE = "(reference row, as the 'blurry input' line of TIP22 Table II / SVBR-Net Table 1)"

    def predict(self, image: np.ndarray) -> np.ndarray:
        return check_image(image).copy()

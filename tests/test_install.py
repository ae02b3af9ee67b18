"""What the install leaves in the environment."""
from __future__ import annotations

from importlib import metadata


def test_one_opencv_distribution_the_headless_one():
    # opencv-python and opencv-python-headless both write cv2/: with two, removing one breaks the other
    # and which binary answers `import cv2` depends on install order
    names = sorted({(d.metadata["Name"] or "").lower() for d in metadata.distributions()
                    if (d.metadata["Name"] or "").lower().startswith("opencv")})
    assert names == ["opencv-python-headless"], names

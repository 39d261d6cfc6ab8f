"""Sample images that come with SAC's dependencies, for the demo and first tries."""

from __future__ import annotations

import numpy as np

#: the name the demo gives the built-in sample's outputs
IHC_SAMPLE = "ihc_sample"


def ihc_sample() -> np.ndarray:
    """scikit-image's immunohistochemistry sample: RGB uint8 (512, 512, 3), nuclei stained
    blue with haematoxylin, at about half the magnification of the MoNuSeg H&E images."""
    from skimage import data

    return np.asarray(data.immunohistochemistry())

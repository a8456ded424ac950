"""Real photos for resampling tests: scikit-learn's sample images (china.jpg, flower.jpg,
shipped inside the package), cropped to odd sizes. Where scikit-learn is not installed
(the GPU machine), the two JPEGs are read with Pillow from $TEGRA_AI_TEST_PHOTOS."""

from __future__ import annotations

import os

import numpy as np
import pytest


def sample_photos():
    try:
        from sklearn.datasets import load_sample_images

        china, flower = load_sample_images().images
    except ImportError:
        d = os.environ.get("TEGRA_AI_TEST_PHOTOS")
        if not d:
            pytest.skip("scikit-learn is not installed and TEGRA_AI_TEST_PHOTOS is not set")
        from PIL import Image

        china, flower = (np.asarray(Image.open(os.path.join(d, f)).convert("RGB")) for f in ("china.jpg", "flower.jpg"))
    return [np.ascontiguousarray(a) for a in (china[:427, :639], flower[13:346, 5:522], china[31:432, 100:351],
                                              flower[:97, :131])]

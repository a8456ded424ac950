"""CUDA kernels: fused image preprocessing, exact NMS and detector post-processing
(the detector kernels' Python API is :mod:`tegra_ai.postprocess.gpu`).

Sources (``*.cu``) ship with the package; :mod:`.loader` loads a prebuilt image or
compiles them with NVRTC (cached on disk); :mod:`.api` is the Python API. Importing
this package needs neither a GPU nor cuda-python.
"""

from tegra_ai.kernels.layout import SourceImage

__all__ = ["SourceImage", "Preprocessor", "Nms", "preprocess", "nms", "BoxMapping"]


def __getattr__(name):
    if name in ("Preprocessor", "Nms", "preprocess", "nms", "BoxMapping", "box_mapping"):
        from tegra_ai.kernels import api

        return getattr(api, name)
    raise AttributeError(name)

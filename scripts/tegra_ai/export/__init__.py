"""Engines where people already serve models: a Triton model repository
(:mod:`tegra_ai.export.triton`) and Gst-nvinfer configs for DeepStream
(:mod:`tegra_ai.export.deepstream`), both from the engines ``ensure`` keeps in a cache."""

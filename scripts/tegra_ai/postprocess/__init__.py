"""Post-processing of model outputs: the detector-head description (:mod:`.detection`)
shared by the GPU kernel (:class:`tegra_ai.postprocess.gpu.DetectionPostprocessor`),
its NumPy reference and the pipeline, and classifier combination rules."""

# tensorrt_engine.bbclass checks every model against the image's TensorRT at
# image-build time (tensorrt-optimize bundle --target), which needs the onnx
# Python package on the build host. meta-tegra-community's onnx recipe builds
# it for the target only: build it for the build host too. Only the new native
# variant changes; the target recipe's tasks and signatures stay as they are.
# nooelint: oelint.vars.noncoreoverride - adds a native variant only; the target onnx is unchanged
BBCLASSEXTEND:append:tegra = " native"
# nooelint: oelint.vars.noncoreoverride - applies to the native variant only
PROVIDES:append:class-native = " python3-onnx-native"

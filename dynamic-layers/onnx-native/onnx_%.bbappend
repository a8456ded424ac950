# tensorrt_engine.bbclass checks every model against the image's TensorRT at
# image-build time (tensorrt-optimize bundle --target), which needs the onnx
# Python package on the build host. meta-tegra-community's onnx recipe builds
# it for the target only: build it for the build host too.
BBCLASSEXTEND += "native"
PROVIDES:append:class-native = " python3-onnx-native"

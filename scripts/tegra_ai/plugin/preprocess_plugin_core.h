// TensorRT-independent core of the preprocessing plugin: parameters, their
// serialization, output shape rules and the launch of the shared kernel
// (../kernels/preprocess.cu). Compiled in CI with nvcc; the IPluginV3 (TensorRT 10+)
// and IPluginV2DynamicExt (TensorRT 8.5/8.6) wrappers only forward to it.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace tegra_ai {

// Codes shared with tegra_ai/kernels/layout.py and the ONNX node attributes that
// tegra_ai/plugin/graphsurgeon.py writes.
enum InputFormat : int32_t { kBGR8 = 0, kRGB8 = 1, kGRAY8 = 2, kNV12 = 3 };
enum ChannelOrder : int32_t { kRGB = 0, kBGR = 1, kGRAY = 2 };
enum ResizeMode : int32_t { kSTRETCH = 0, kLETTERBOX = 1 };
enum Layout : int32_t { kNCHW = 0, kNHWC = 1 };
enum OutputType : int32_t { kFLOAT32 = 0, kFLOAT16 = 1 };

struct PreprocessPluginParams {
    int32_t height = 0, width = 0;  // network input size
    int32_t input_format = kBGR8;
    int32_t channel_order = kRGB;
    int32_t resize = kSTRETCH;
    int32_t layout = kNCHW;
    int32_t dtype = kFLOAT32;
    float pad_value = 114.f;
    float scale = 1.f / 255.f;
    float mean[3] = {0.f, 0.f, 0.f};
    float std[3] = {1.f, 1.f, 1.f};
};

constexpr char const* kPluginName = "TegraAIPreprocess";
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "tegra_ai";

// nullptr when valid, else a message naming the bad field.
char const* validate(PreprocessPluginParams const& p);

int32_t outputChannels(PreprocessPluginParams const& p);

// Input tensor: bgr8/rgb8 [N, H, W, 3]; gray8 [N, H, W] or [N, H, W, 1];
// nv12 [N, H*3/2, W]. Gives the source image size or false for a bad shape.
bool sourceSize(PreprocessPluginParams const& p, int32_t nbDims, int64_t const* dims, int32_t* srcH, int32_t* srcW);

// Output dims: [N, C, H, W] or [N, H, W, C].
void outputDims(PreprocessPluginParams const& p, int64_t batch, int64_t* dims4);

// Bytes of workspace for a batch (one 64-byte image descriptor per image).
size_t workspaceSize(int64_t batch);

// Serialized form: magic, format version, then the parameters (little-endian POD).
size_t serializedSize();
void serialize(PreprocessPluginParams const& p, void* buffer);
bool deserialize(void const* data, size_t length, PreprocessPluginParams* out);

// Letterbox geometry exactly as tegra_ai.preprocess.spec.letterbox_geometry
// (Python's round: half to even).
void letterbox(int32_t srcH, int32_t srcW, int32_t dstH, int32_t dstW, double* scale, int32_t* newH,
               int32_t* newW, int32_t* top, int32_t* left);

// Preprocess a dense batch on `stream`. 0 on success, else a cudaError_t value.
int32_t enqueue(PreprocessPluginParams const& p, void const* src, int32_t batch, int32_t srcH, int32_t srcW,
                void* out, void* workspace, cudaStream_t stream);

}  // namespace tegra_ai

// C ABI of the same launch, for tests through ctypes (no TensorRT needed).
extern "C" int32_t tegra_ai_preprocess_enqueue(tegra_ai::PreprocessPluginParams const* params, void const* src,
                                               int32_t batch, int32_t srcH, int32_t srcW, void* out,
                                               void* workspace, cudaStream_t stream);

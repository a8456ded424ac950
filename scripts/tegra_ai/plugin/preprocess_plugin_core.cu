// See preprocess_plugin_core.h. The kernel source is the one the Python package
// compiles with NVRTC, included here so both builds run the same code.
#include "preprocess_plugin_core.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "../kernels/preprocess.cu"

namespace tegra_ai {
namespace {

constexpr uint32_t kMagic = 0x50414954u;  // "TIAP"
constexpr uint32_t kFormatVersion = 1u;

struct Serialized {
    uint32_t magic;
    uint32_t version;
    PreprocessPluginParams params;
};

// Descriptors for a dense batch, built on the device so that enqueue needs no host
// copy (and stays capturable in a CUDA graph).
__global__ void fillDescriptors(TaiImageDesc desc, long long imageBytes, int batch, TaiImageDesc* out) {
    int const n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= batch) return;
    TaiImageDesc d = desc;
    d.src += (unsigned long long)(imageBytes * n);
    if (d.src_uv) d.src_uv += (unsigned long long)(imageBytes * n);
    out[n] = d;
}

}  // namespace

char const* validate(PreprocessPluginParams const& p) {
    if (p.height <= 0 || p.width <= 0) return "height and width must be positive";
    if (p.input_format < kBGR8 || p.input_format > kNV12) return "input_format must be 0..3 (bgr8, rgb8, gray8, nv12)";
    if (p.channel_order < kRGB || p.channel_order > kGRAY) return "channel_order must be 0..2 (rgb, bgr, gray)";
    if (p.resize != kSTRETCH && p.resize != kLETTERBOX) return "resize must be 0 (stretch) or 1 (letterbox)";
    if (p.layout != kNCHW && p.layout != kNHWC) return "layout must be 0 (nchw) or 1 (nhwc)";
    if (p.dtype != kFLOAT32 && p.dtype != kFLOAT16) return "dtype must be 0 (float32) or 1 (float16)";
    for (int c = 0; c < outputChannels(p); ++c)
        if (p.std[c] == 0.f) return "std values must be non-zero";
    return nullptr;
}

int32_t outputChannels(PreprocessPluginParams const& p) { return p.channel_order == kGRAY ? 1 : 3; }

bool sourceSize(PreprocessPluginParams const& p, int32_t nbDims, int64_t const* d, int32_t* srcH, int32_t* srcW) {
    if (p.input_format == kBGR8 || p.input_format == kRGB8) {
        if (nbDims != 4 || d[3] != 3) return false;
        *srcH = (int32_t)d[1];
        *srcW = (int32_t)d[2];
    } else if (p.input_format == kGRAY8) {
        if (!(nbDims == 3 || (nbDims == 4 && d[3] == 1))) return false;
        *srcH = (int32_t)d[1];
        *srcW = (int32_t)d[2];
    } else {
        if (nbDims != 3 || d[1] % 3 != 0 || d[2] % 2 != 0) return false;
        *srcH = (int32_t)(d[1] / 3 * 2);
        *srcW = (int32_t)d[2];
        if (*srcH % 2) return false;
    }
    return *srcH > 0 && *srcW > 0;
}

void outputDims(PreprocessPluginParams const& p, int64_t batch, int64_t* dims) {
    int64_t const c = outputChannels(p);
    dims[0] = batch;
    if (p.layout == kNCHW) {
        dims[1] = c, dims[2] = p.height, dims[3] = p.width;
    } else {
        dims[1] = p.height, dims[2] = p.width, dims[3] = c;
    }
}

size_t workspaceSize(int64_t batch) { return (size_t)batch * sizeof(TaiImageDesc) + 256; }

size_t serializedSize() { return sizeof(Serialized); }

void serialize(PreprocessPluginParams const& p, void* buffer) {
    Serialized s{kMagic, kFormatVersion, p};
    std::memcpy(buffer, &s, sizeof(s));
}

bool deserialize(void const* data, size_t length, PreprocessPluginParams* out) {
    if (data == nullptr || length != sizeof(Serialized)) return false;
    Serialized s;
    std::memcpy(&s, data, sizeof(s));
    if (s.magic != kMagic || s.version != kFormatVersion || validate(s.params) != nullptr) return false;
    *out = s.params;
    return true;
}

void letterbox(int32_t srcH, int32_t srcW, int32_t dstH, int32_t dstW, double* scale, int32_t* newH, int32_t* newW,
               int32_t* top, int32_t* left) {
    double const r = std::fmin((double)dstH / srcH, (double)dstW / srcW);
    // std::nearbyint rounds half to even in the default rounding mode, like Python's round().
    *newW = std::max(1, (int32_t)std::nearbyint(srcW * r));
    *newH = std::max(1, (int32_t)std::nearbyint(srcH * r));
    *top = (dstH - *newH) / 2;
    *left = (dstW - *newW) / 2;
    *scale = r;
}

int32_t enqueue(PreprocessPluginParams const& p, void const* src, int32_t batch, int32_t srcH, int32_t srcW,
                void* out, void* workspace, cudaStream_t stream) {
    if (validate(p) != nullptr || batch <= 0 || srcH <= 0 || srcW <= 0) return (int32_t)cudaErrorInvalidValue;
    if (p.input_format == kNV12 && (srcH % 2 || srcW % 2)) return (int32_t)cudaErrorInvalidValue;
    int const bpp = (p.input_format == kBGR8 || p.input_format == kRGB8) ? 3 : 1;

    TaiImageDesc d{};
    d.src = (unsigned long long)src;
    d.src_h = srcH;
    d.src_w = srcW;
    d.src_pitch = srcW * bpp;
    long long imageBytes = (long long)srcH * srcW * bpp;
    if (p.input_format == kNV12) {
        d.src_uv = d.src + (unsigned long long)srcH * srcW;
        d.uv_pitch = srcW;
        imageBytes = (long long)srcH * srcW * 3 / 2;
    }
    if (p.resize == kLETTERBOX) {
        double r;
        letterbox(srcH, srcW, p.height, p.width, &r, &d.roi_h, &d.roi_w, &d.roi_top, &d.roi_left);
    } else {
        d.roi_h = p.height;
        d.roi_w = p.width;
    }
    d.scale_y = (float)((double)srcH / d.roi_h);
    d.scale_x = (float)((double)srcW / d.roi_w);

    // 256-byte aligned descriptor array inside the workspace.
    auto* descs = (TaiImageDesc*)(((uintptr_t)workspace + 255) & ~(uintptr_t)255);
    fillDescriptors<<<(batch + 127) / 128, 128, 0, stream>>>(d, imageBytes, batch, descs);

    TaiPreprocessParams k{};
    k.images = (unsigned long long)descs;
    k.out = (unsigned long long)out;
    int32_t const c = outputChannels(p);
    k.out_image_stride = (long long)c * p.height * p.width;
    k.out_h = p.height;
    k.out_w = p.width;
    k.out_order = p.channel_order;
    k.layout = p.layout;
    k.dtype = p.dtype;
    k.batch = batch;
    for (int i = 0; i < 3; ++i) {
        bool const used = i < c;
        double const sd = used ? p.std[i] : 1.0, mu = used ? p.mean[i] : 0.0;
        k.mul[i] = used ? (float)(p.scale / sd) : 0.f;
        k.add[i] = used ? (float)(-mu / sd) : 0.f;
        k.pad_out[i] = used ? (float)((p.pad_value * (double)p.scale - mu) / sd) : 0.f;
    }
    k.vector_stores = ((uintptr_t)out % 16) == 0;

    dim3 const block(TAI_BLOCK_X, TAI_BLOCK_Y, 1);
    dim3 const grid((p.width + TAI_BLOCK_X * TAI_PX_PER_THREAD - 1) / (TAI_BLOCK_X * TAI_PX_PER_THREAD),
                    (p.height + TAI_BLOCK_Y - 1) / TAI_BLOCK_Y, batch);
    switch (p.input_format) {
    case kBGR8: tai_preprocess_bgr8<<<grid, block, 0, stream>>>(k); break;
    case kRGB8: tai_preprocess_rgb8<<<grid, block, 0, stream>>>(k); break;
    case kGRAY8: tai_preprocess_gray8<<<grid, block, 0, stream>>>(k); break;
    default: tai_preprocess_nv12<<<grid, block, 0, stream>>>(k); break;
    }
    return (int32_t)cudaGetLastError();
}

}  // namespace tegra_ai

extern "C" int32_t tegra_ai_preprocess_enqueue(tegra_ai::PreprocessPluginParams const* params, void const* src,
                                               int32_t batch, int32_t srcH, int32_t srcW, void* out,
                                               void* workspace, cudaStream_t stream) {
    return tegra_ai::enqueue(*params, src, batch, srcH, srcW, out, workspace, stream);
}

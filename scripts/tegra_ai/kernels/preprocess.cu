// Fused image preprocessing: decode (BGR/RGB/gray/NV12) -> bilinear resize with
// half-pixel centres (OpenCV INTER_LINEAR geometry, or PIL's antialiased bilinear
// filter) -> optional letterbox or centre crop ->
// colour conversion -> (x*scale - mean)/std -> NCHW or NHWC, fp32 or fp16.
// Semantics: tegra_ai/preprocess/spec.py; reference: tegra_ai/preprocess/reference.py.
//
// Header-free on purpose: it compiles unchanged with nvcc (prebuilt cubin, plugin)
// and NVRTC (run time), from CUDA 11.4 (JetPack 5) to 13.x.

#ifndef TAI_PREPROCESS_CU
#define TAI_PREPROCESS_CU

// One source image of a batch. Images of one batch may differ in size.
// Layout mirrored by tegra_ai.kernels.layout.ImageDesc (64 bytes).
struct TaiImageDesc {
    unsigned long long src;     // packed pixels (bgr8/rgb8/gray8) or the Y plane (nv12)
    unsigned long long src_uv;  // nv12: interleaved UV plane; else 0
    int src_h, src_w;
    int src_pitch, uv_pitch;    // bytes per row
    int roi_top, roi_left;      // where the resized image lands in the output (negative: centre crop)
    int roi_h, roi_w;           // size of the resized image (== output size for stretch)
    float scale_y, scale_x;     // source pixels per output pixel (src / roi)
    int antialias;              // 1: PIL bilinear (the *_aa kernels); 0: INTER_LINEAR
    int reserved1;
};

// Per-launch parameters, passed by value. Mirrored by tegra_ai.kernels.layout.PreprocessParams.
struct TaiPreprocessParams {
    unsigned long long images;      // const TaiImageDesc* (device)
    unsigned long long out;         // output base pointer (device)
    long long out_image_stride;     // elements between consecutive images
    int out_h, out_w;
    int out_order;                  // 0 rgb, 1 bgr, 2 gray
    int layout;                     // 0 nchw, 1 nhwc
    int dtype;                      // 0 float32, 1 float16
    int batch;
    float mul[3];                   // scale / std[c]
    float add[3];                   // -mean[c] / std[c]
    float pad_out[3];               // normalised pad value per output channel
    int vector_stores;              // 1: the output pointer is 16-byte aligned
};

// The Python side (kernels/layout.py) packs these byte for byte.
static_assert(sizeof(TaiImageDesc) == 64, "TaiImageDesc layout changed: update kernels/layout.py");
static_assert(sizeof(TaiPreprocessParams) == 88, "TaiPreprocessParams layout changed: update kernels/layout.py");

#define TAI_PX_PER_THREAD 4
#define TAI_BLOCK_X 32
#define TAI_BLOCK_Y 8

enum { TAI_FMT_BGR8 = 0, TAI_FMT_RGB8 = 1, TAI_FMT_GRAY8 = 2, TAI_FMT_NV12 = 3 };

static __device__ __forceinline__ unsigned short tai_f2h(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// OpenCV's COLOR_YUV2RGB_NV12 (BT.601 limited range), bit-exact integer arithmetic.
static __device__ __forceinline__ void tai_nv12_rgb(int Y, int U, int V, float& r, float& g, float& b) {
    const int y = max(0, Y - 16) * 1220542;
    const int u = U - 128, v = V - 128;
    const int ruv = (1 << 19) + 1673527 * v;
    const int guv = (1 << 19) - 852492 * v - 409993 * u;
    const int buv = (1 << 19) + 2116026 * u;
    r = (float)min(255, max(0, (y + ruv) >> 20));
    g = (float)min(255, max(0, (y + guv) >> 20));
    b = (float)min(255, max(0, (y + buv) >> 20));
}

// Decoded RGB (or gray in r) of source pixel (x, y).
template <int FMT>
static __device__ __forceinline__ void tai_fetch(const TaiImageDesc& d, int x, int y, float& r, float& g, float& b) {
    const unsigned char* row = (const unsigned char*)d.src + (long long)y * d.src_pitch;
    if (FMT == TAI_FMT_BGR8) {
        const unsigned char* p = row + 3 * x;
        b = __ldg(p); g = __ldg(p + 1); r = __ldg(p + 2);
    } else if (FMT == TAI_FMT_RGB8) {
        const unsigned char* p = row + 3 * x;
        r = __ldg(p); g = __ldg(p + 1); b = __ldg(p + 2);
    } else if (FMT == TAI_FMT_GRAY8) {
        r = g = b = __ldg(row + x);
    } else {
        const unsigned char* uv = (const unsigned char*)d.src_uv + (long long)(y >> 1) * d.uv_pitch + (x & ~1);
        tai_nv12_rgb(__ldg(row + x), __ldg(uv), __ldg(uv + 1), r, g, b);
    }
}

// OpenCV INTER_LINEAR source coordinate: half-pixel centres; below 0 or at/after the
// last pixel the weight of the second tap is 0.
static __device__ __forceinline__ void tai_src_coord(int dst, float scale, int size, int& i0, int& i1, float& f) {
    float s = ((float)dst + 0.5f) * scale - 0.5f;
    int i = (int)floorf(s);
    f = s - (float)i;
    if (i < 0) { i = 0; f = 0.f; }
    if (i >= size - 1) { i = size - 1; f = 0.f; }
    i0 = i;
    i1 = min(i + 1, size - 1);
}

template <int FMT>
static __device__ __forceinline__ void tai_sample(const TaiImageDesc& d, int x0, int x1, float fx,
                                                  int y0, int y1, float fy, float& r, float& g, float& b) {
    float r00, g00, b00, r01, g01, b01, r10, g10, b10, r11, g11, b11;
    tai_fetch<FMT>(d, x0, y0, r00, g00, b00);
    tai_fetch<FMT>(d, x1, y0, r01, g01, b01);
    tai_fetch<FMT>(d, x0, y1, r10, g10, b10);
    tai_fetch<FMT>(d, x1, y1, r11, g11, b11);
    const float wx0 = 1.f - fx, wy0 = 1.f - fy;
    r = wy0 * (wx0 * r00 + fx * r01) + fy * (wx0 * r10 + fx * r11);
    g = wy0 * (wx0 * g00 + fx * g01) + fy * (wx0 * g10 + fx * g11);
    b = wy0 * (wx0 * b00 + fx * b01) + fy * (wx0 * b10 + fx * b11);
}

// PIL's bilinear resampling (Pillow Resample.c, precompute_coeffs with the triangle
// filter, support 1): output index dst of a src -> roi resize takes source indices
// [lo, hi) with weights max(0, 1 - |i - centre + 0.5| * inv_support), normalised.
static __device__ __forceinline__ void tai_aa_taps(int dst, float scale, int size, float& centre, float& inv_support,
                                                   int& lo, int& hi) {
    const float support = fmaxf(scale, 1.f);
    centre = ((float)dst + 0.5f) * scale;
    inv_support = 1.f / support;
    lo = max((int)(centre - support + 0.5f), 0);
    hi = min((int)(centre + support + 0.5f), size);
}

static __device__ __forceinline__ float tai_aa_weight(int i, float centre, float inv_support) {
    return fmaxf(0.f, 1.f - fabsf(((float)i - centre + 0.5f) * inv_support));
}

// Antialiased sample of resized pixel (rx, row): every source pixel under the filter.
// Up to TAI_AA_TAPS horizontal taps (downscales up to 7.5x) the weights are computed
// once into registers; wider filters take the generic loop.
#define TAI_AA_TAPS 16

template <int FMT>
static __device__ __forceinline__ void tai_sample_aa(const TaiImageDesc& d, int rx, int y_lo, int y_hi, float cy,
                                                     float iy, float& r, float& g, float& b) {
    float cx, ix;
    int x_lo, x_hi;
    tai_aa_taps(rx, d.scale_x, d.src_w, cx, ix, x_lo, x_hi);
    const int nx = x_hi - x_lo;
    float wx_sum = 0.f, wy_sum = 0.f, sr = 0.f, sg = 0.f, sb = 0.f;
    if (nx <= TAI_AA_TAPS) {
        float wx[TAI_AA_TAPS];
#pragma unroll
        for (int t = 0; t < TAI_AA_TAPS; ++t) {
            wx[t] = t < nx ? tai_aa_weight(x_lo + t, cx, ix) : 0.f;
            wx_sum += wx[t];
        }
        for (int y = y_lo; y < y_hi; ++y) {
            const float wy = tai_aa_weight(y, cy, iy);
            float hr = 0.f, hg = 0.f, hb = 0.f;
#pragma unroll
            for (int t = 0; t < TAI_AA_TAPS; ++t) {
                if (t < nx) {
                    float pr, pg, pb;
                    tai_fetch<FMT>(d, x_lo + t, y, pr, pg, pb);
                    hr += wx[t] * pr;
                    hg += wx[t] * pg;
                    hb += wx[t] * pb;
                }
            }
            wy_sum += wy;
            sr += wy * hr;
            sg += wy * hg;
            sb += wy * hb;
        }
    } else {
        for (int x = x_lo; x < x_hi; ++x) wx_sum += tai_aa_weight(x, cx, ix);
        for (int y = y_lo; y < y_hi; ++y) {
            const float wy = tai_aa_weight(y, cy, iy);
            float hr = 0.f, hg = 0.f, hb = 0.f;
            for (int x = x_lo; x < x_hi; ++x) {
                const float w = tai_aa_weight(x, cx, ix);
                float pr, pg, pb;
                tai_fetch<FMT>(d, x, y, pr, pg, pb);
                hr += w * pr;
                hg += w * pg;
                hb += w * pb;
            }
            wy_sum += wy;
            sr += wy * hr;
            sg += wy * hg;
            sb += wy * hb;
        }
    }
    const float inv = 1.f / (wx_sum * wy_sum);
    r = sr * inv;
    g = sg * inv;
    b = sb * inv;
}

template <int FMT, bool AA>
static __device__ __forceinline__ void tai_preprocess_body(const TaiPreprocessParams& p) {
    const int n = blockIdx.z;
    const int y = blockIdx.y * TAI_BLOCK_Y + threadIdx.y;
    // INTER_LINEAR: 4 output pixels per thread (vector stores); antialiased: 1, so that a
    // warp's loads stay within a few cache lines (its filter windows are wide).
    constexpr int PX = AA ? 1 : TAI_PX_PER_THREAD;
    const int xb = (blockIdx.x * TAI_BLOCK_X + threadIdx.x) * PX;
    if (n >= p.batch || y >= p.out_h || xb >= p.out_w) return;
    const TaiImageDesc d = ((const TaiImageDesc*)p.images)[n];
    const int channels = p.out_order == 2 ? 1 : 3;

    float v[3][PX];
    const int ry = y - d.roi_top;
    const bool row_in = ry >= 0 && ry < d.roi_h;
    float aa_iy = 0.f;
    int y0 = 0, y1 = 0;
    float fy = 0.f;
    if (row_in) {
        if (AA) tai_aa_taps(ry, d.scale_y, d.src_h, fy, aa_iy, y0, y1);  // (centre, 1/support, lo, hi)
        else tai_src_coord(ry, d.scale_y, d.src_h, y0, y1, fy);
    }

#pragma unroll
    for (int k = 0; k < PX; ++k) {
        const int rx = xb + k - d.roi_left;
        if (row_in && rx >= 0 && rx < d.roi_w && xb + k < p.out_w) {
            float r, g, b;
            if (AA) {
                tai_sample_aa<FMT>(d, rx, y0, y1, fy, aa_iy, r, g, b);
            } else {
                int x0, x1;
                float fx;
                tai_src_coord(rx, d.scale_x, d.src_w, x0, x1, fx);
                tai_sample<FMT>(d, x0, x1, fx, y0, y1, fy, r, g, b);
            }
            if (p.out_order == 2) {
                v[0][k] = (FMT == TAI_FMT_GRAY8 ? r : 0.299f * r + 0.587f * g + 0.114f * b) * p.mul[0] + p.add[0];
                v[1][k] = v[2][k] = 0.f;
            } else {
                const float c0 = p.out_order == 0 ? r : b;
                const float c2 = p.out_order == 0 ? b : r;
                v[0][k] = c0 * p.mul[0] + p.add[0];
                v[1][k] = g * p.mul[1] + p.add[1];
                v[2][k] = c2 * p.mul[2] + p.add[2];
            }
        } else {
            v[0][k] = p.pad_out[0];
            v[1][k] = p.pad_out[1];
            v[2][k] = p.pad_out[2];
        }
    }

    const long long plane = (long long)p.out_h * p.out_w;
    const long long base = (long long)n * p.out_image_stride;
    const bool full = PX == TAI_PX_PER_THREAD && xb + PX <= p.out_w;
    if (p.layout == 0) {
        const long long pix = base + (long long)y * p.out_w + xb;
        // One 8- or 16-byte store per channel when the 4-pixel group is aligned
        // (element offset % 4 == 0 and a 16-byte aligned base pointer).
        for (int c = 0; c < channels; ++c) {
            const long long o = pix + c * plane;
            if (p.dtype == 1) {
                unsigned short* out = (unsigned short*)p.out + o;
                if (full && p.vector_stores && ((o & 3) == 0)) {
                    uint2 w;
                    w.x = (unsigned)tai_f2h(v[c][0]) | ((unsigned)tai_f2h(v[c][PX > 1 ? 1 : 0]) << 16);
                    w.y = (unsigned)tai_f2h(v[c][PX > 2 ? 2 : 0]) | ((unsigned)tai_f2h(v[c][PX > 3 ? 3 : 0]) << 16);
                    *(uint2*)out = w;
                } else {
                    for (int k = 0; k < PX && xb + k < p.out_w; ++k) out[k] = tai_f2h(v[c][k]);
                }
            } else {
                float* out = (float*)p.out + o;
                if (full && p.vector_stores && ((o & 3) == 0)) {
                    *(float4*)out = make_float4(v[c][0], v[c][PX > 1 ? 1 : 0], v[c][PX > 2 ? 2 : 0],
                                                v[c][PX > 3 ? 3 : 0]);
                } else {
                    for (int k = 0; k < PX && xb + k < p.out_w; ++k) out[k] = v[c][k];
                }
            }
        }
    } else {
        const long long pix = base + ((long long)y * p.out_w + xb) * channels;
        for (int k = 0; k < PX && xb + k < p.out_w; ++k) {
            for (int c = 0; c < channels; ++c) {
                if (p.dtype == 1) ((unsigned short*)p.out)[pix + k * channels + c] = tai_f2h(v[c][k]);
                else ((float*)p.out)[pix + k * channels + c] = v[c][k];
            }
        }
    }
}

// Antialiased resampling of packed formats, separable through shared memory: a block
// computes a 32x8 output tile; it stages the source rectangle under the tile's filters
// (coalesced loads), filters it horizontally into hbuf, then vertically. A tile whose
// rectangle does not fit (downscales beyond about 5x vertically or 6x horizontally) or
// that holds no image pixel takes the per-pixel path above.
#define TAI_AA_RAW_BYTES 24576
#define TAI_AA_ROWS 56
#define TAI_AA_HSTRIDE (TAI_AA_ROWS * 3 + 1)   // floats per tile column of hbuf (odd: no bank conflicts)

static __device__ __forceinline__ void tai_normalise(const TaiPreprocessParams& p, bool gray_src, float r, float g,
                                                     float b, float& v0, float& v1, float& v2) {
    if (p.out_order == 2) {
        v0 = (gray_src ? r : 0.299f * r + 0.587f * g + 0.114f * b) * p.mul[0] + p.add[0];
        v1 = v2 = 0.f;
    } else {
        const float c0 = p.out_order == 0 ? r : b;
        const float c2 = p.out_order == 0 ? b : r;
        v0 = c0 * p.mul[0] + p.add[0];
        v1 = g * p.mul[1] + p.add[1];
        v2 = c2 * p.mul[2] + p.add[2];
    }
}

static __device__ __forceinline__ void tai_store_pixel(const TaiPreprocessParams& p, int n, int y, int x, float v0,
                                                       float v1, float v2) {
    const int channels = p.out_order == 2 ? 1 : 3;
    const float v[3] = {v0, v1, v2};
    const long long base = (long long)n * p.out_image_stride;
    const long long plane = (long long)p.out_h * p.out_w;
    for (int c = 0; c < channels; ++c) {
        const long long o = p.layout == 0 ? base + c * plane + (long long)y * p.out_w + x
                                          : base + ((long long)y * p.out_w + x) * channels + c;
        if (p.dtype == 1) ((unsigned short*)p.out)[o] = tai_f2h(v[c]);
        else ((float*)p.out)[o] = v[c];
    }
}

template <int FMT>
static __device__ __forceinline__ void tai_preprocess_aa_tiled(const TaiPreprocessParams& p) {
    __shared__ unsigned int raw_words[TAI_AA_RAW_BYTES / 4];
    __shared__ float hbuf[TAI_BLOCK_X * TAI_AA_HSTRIDE];
    constexpr int bpp = FMT == TAI_FMT_GRAY8 ? 1 : 3;
    const int n = blockIdx.z;
    if (n >= p.batch) return;
    const TaiImageDesc d = ((const TaiImageDesc*)p.images)[n];
    const int ox0 = blockIdx.x * TAI_BLOCK_X, oy0 = blockIdx.y * TAI_BLOCK_Y;
    // The tile's pixels in resized-image coordinates: [rx0, rx1) x [ry0, ry1).
    const int rx0 = max(ox0 - d.roi_left, 0);
    const int rx1 = min(min(ox0 + TAI_BLOCK_X, p.out_w) - d.roi_left, d.roi_w);
    const int ry0 = max(oy0 - d.roi_top, 0);
    const int ry1 = min(min(oy0 + TAI_BLOCK_Y, p.out_h) - d.roi_top, d.roi_h);
    if (rx0 >= rx1 || ry0 >= ry1) {  // padding only (uniform per block)
        tai_preprocess_body<FMT, true>(p);
        return;
    }
    float c_, i_;
    int x_lo, x_hi, y_lo, y_hi, unused;
    tai_aa_taps(rx0, d.scale_x, d.src_w, c_, i_, x_lo, unused);       // windows move right with
    tai_aa_taps(rx1 - 1, d.scale_x, d.src_w, c_, i_, unused, x_hi);   // the index: the first and
    tai_aa_taps(ry0, d.scale_y, d.src_h, c_, i_, y_lo, unused);       // last pixels bound the
    tai_aa_taps(ry1 - 1, d.scale_y, d.src_h, c_, i_, unused, y_hi);   // source rectangle
    const int rows = y_hi - y_lo;
    const int row_bytes = (x_hi - x_lo) * bpp;
    // Words per staged row: the row's bytes from the 4-byte word holding its first byte
    // (rows need not be word aligned) to the word holding its last; odd: rows in distinct banks.
    const int words = (row_bytes + 6) >> 2;
    const int stride = words | 1;
    if (rows > TAI_AA_ROWS || stride * rows > TAI_AA_RAW_BYTES / 4) {
        tai_preprocess_body<FMT, true>(p);
        return;
    }
    unsigned char* raw = (unsigned char*)raw_words;
    const unsigned char* src = (const unsigned char*)d.src + (long long)y_lo * d.src_pitch + x_lo * bpp;
    const int tid = threadIdx.y * TAI_BLOCK_X + threadIdx.x;
    // Staging is latency-bound: aligned 32-bit loads over one flat (row, word) index space,
    // unrolled so that each thread has several loads in flight (byte loads in a per-row loop
    // kept one in flight and made the kernel 4x slower than its bytes allow). Only words that
    // hold at least one byte of the row are read.
#pragma unroll 6
    for (int i = tid; i < rows * words; i += TAI_BLOCK_X * TAI_BLOCK_Y) {
        const int r = i / words, w = i - r * words;
        const size_t s = (size_t)(src + (long long)r * d.src_pitch);
        if (w < (int)(((s & 3) + row_bytes + 3) >> 2))
            raw_words[r * stride + w] = __ldg((const unsigned int*)(s & ~(size_t)3) + w);
    }
    __syncthreads();

    // Horizontal pass: (staged row, tile column) items, rows fastest.
    const int cols = rx1 - rx0;
    for (int it = tid; it < rows * cols; it += TAI_BLOCK_X * TAI_BLOCK_Y) {
        const int c = it / rows, r = it - c * rows;
        float cx, ix;
        int lo, hi;
        tai_aa_taps(rx0 + c, d.scale_x, d.src_w, cx, ix, lo, hi);
        const int misalign = (int)((size_t)(src + (long long)r * d.src_pitch) & 3);
        const unsigned char* q = raw + r * stride * 4 + misalign + (lo - x_lo) * bpp;
        float s0 = 0.f, s1 = 0.f, s2 = 0.f, ws = 0.f;
        for (int x = lo; x < hi; ++x, q += bpp) {
            const float w = tai_aa_weight(x, cx, ix);
            ws += w;
            s0 += w * (float)q[0];
            if (bpp == 3) {
                s1 += w * (float)q[1];
                s2 += w * (float)q[2];
            }
        }
        const float inv = 1.f / ws;
        float* h = hbuf + c * TAI_AA_HSTRIDE + r * 3;
        h[0] = s0 * inv;
        h[1] = s1 * inv;
        h[2] = s2 * inv;
    }
    __syncthreads();

    // Vertical pass: one output pixel per thread.
    const int ox = ox0 + threadIdx.x, oy = oy0 + threadIdx.y;
    if (ox >= p.out_w || oy >= p.out_h) return;
    const int rx = ox - d.roi_left, ry = oy - d.roi_top;
    float v0 = p.pad_out[0], v1 = p.pad_out[1], v2 = p.pad_out[2];
    if (rx >= 0 && rx < d.roi_w && ry >= 0 && ry < d.roi_h) {
        float cy, iy;
        int lo, hi;
        tai_aa_taps(ry, d.scale_y, d.src_h, cy, iy, lo, hi);
        const float* h = hbuf + (rx - rx0) * TAI_AA_HSTRIDE + (lo - y_lo) * 3;
        float s0 = 0.f, s1 = 0.f, s2 = 0.f, ws = 0.f;
        for (int y = lo; y < hi; ++y, h += 3) {
            const float w = tai_aa_weight(y, cy, iy);
            ws += w;
            s0 += w * h[0];
            s1 += w * h[1];
            s2 += w * h[2];
        }
        const float inv = 1.f / ws;
        s0 *= inv;
        s1 *= inv;
        s2 *= inv;
        float r, g, b;
        if (FMT == TAI_FMT_BGR8) { b = s0; g = s1; r = s2; }
        else if (FMT == TAI_FMT_RGB8) { r = s0; g = s1; b = s2; }
        else { r = g = b = s0; }
        tai_normalise(p, FMT == TAI_FMT_GRAY8, r, g, b, v0, v1, v2);
    }
    tai_store_pixel(p, n, oy, ox, v0, v1, v2);
}

// One entry point per source format; the _aa variants resample as PIL (descriptors with
// antialias=1; one output pixel per thread), kept apart so the INTER_LINEAR kernels keep
// their register budget.
#define TAI_PREPROCESS_ENTRY(NAME, FMT, AA)                                         \
    extern "C" __global__ void __launch_bounds__(TAI_BLOCK_X * TAI_BLOCK_Y)       \
    NAME(const TaiPreprocessParams p) { tai_preprocess_body<FMT, AA>(p); }
#define TAI_PREPROCESS_AA_TILED(NAME, FMT)                                          \
    extern "C" __global__ void __launch_bounds__(TAI_BLOCK_X * TAI_BLOCK_Y)       \
    NAME(const TaiPreprocessParams p) { tai_preprocess_aa_tiled<FMT>(p); }

TAI_PREPROCESS_ENTRY(tai_preprocess_bgr8, TAI_FMT_BGR8, false)
TAI_PREPROCESS_ENTRY(tai_preprocess_rgb8, TAI_FMT_RGB8, false)
TAI_PREPROCESS_ENTRY(tai_preprocess_gray8, TAI_FMT_GRAY8, false)
TAI_PREPROCESS_ENTRY(tai_preprocess_nv12, TAI_FMT_NV12, false)
TAI_PREPROCESS_AA_TILED(tai_preprocess_bgr8_aa, TAI_FMT_BGR8)
TAI_PREPROCESS_AA_TILED(tai_preprocess_rgb8_aa, TAI_FMT_RGB8)
TAI_PREPROCESS_AA_TILED(tai_preprocess_gray8_aa, TAI_FMT_GRAY8)
TAI_PREPROCESS_ENTRY(tai_preprocess_nv12_aa, TAI_FMT_NV12, true)

#endif  // TAI_PREPROCESS_CU

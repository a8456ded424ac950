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

// Output pixels (y, xb .. xb + PX - 1) of image n, each from its own source taps.
template <int FMT, bool AA>
static __device__ __forceinline__ void tai_preprocess_body(const TaiPreprocessParams& p, int n, int y, int xb) {
    // INTER_LINEAR: 4 output pixels per thread (vector stores); antialiased: 1, so that a
    // warp's loads stay within a few cache lines (its filter windows are wide).
    constexpr int PX = AA ? 1 : TAI_PX_PER_THREAD;
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

// Antialiased resampling of packed formats (bgr8, rgb8, gray8), separable through shared
// memory, vertical pass first. A block of 32 x TAI_AA_BLOCK_Y threads computes a
// 32 x TAI_AA_TILE_H output tile (TAI_AA_ROWS_PER_THREAD rows per thread):
//  1. column filter table (warp 0): per tile column its first source column and normalised
//     weights;
//  2. vertical pass: each (tile row, chunk of source bytes across the tile's column
//     footprint) item sums its source rows' chunks with integer weights (Pillow's fixed
//     point, computed by the thread itself). One filter serves every byte of a row, so
//     channels need no unpacking: a thread loads 16 bytes a tap (4, funnel-shifted, when the
//     image or its pitch is not 16-byte aligned) and spends a byte permute and an integer
//     multiply-add per byte, with no int-to-float conversion per tap (quarter rate: it
//     bounded the horizontal-first version, which converted 3-4 values per tap);
//  3. horizontal pass: one output pixel per thread and tile row, from the float results.
// Only the footprint of the tile's filters is read, once per tile, with coalesced loads.
// What set the speed on an H200 (benchmarks/RESULTS.md, measured with Nsight Compute): shared-
// memory bank conflicts of the column table's reads (fixed: tap-major), local stores of the
// parameters at entry (fixed: copied only where the per-pixel path needs them), resident blocks
// per SM (64 registers: 4 blocks) and rows per tile (16). Measured and not kept: more loads in
// flight per thread, 8-byte loads, staging the footprint in shared memory with cp.async, float
// vertical sums, conflict-free vbuf stores (each the same speed or slower).
// Tiles whose footprint does not fit (downscales beyond about 6x horizontally at 3 bytes
// per pixel, 15x at 1 byte) or that hold no image pixel take the per-pixel path.
#ifndef TAI_AA_ROWS_PER_THREAD
#define TAI_AA_ROWS_PER_THREAD 2   // kernels/layout.py AA_ROWS_PER_THREAD: the launch grid
#endif
#ifndef TAI_AA_BLOCK_Y
#define TAI_AA_BLOCK_Y 8           // kernels/layout.py AA_BLOCK: threads of an _aa block are 32 x this
#endif
#define TAI_AA_TILE_H (TAI_AA_BLOCK_Y * TAI_AA_ROWS_PER_THREAD)
#ifndef TAI_AA_VCAP
#define TAI_AA_VCAP 640            // floats per tile row of the vertical pass's result
#endif
#define TAI_AA_TMAX 32             // horizontal filter taps per output pixel (table size)
#define TAI_AA_WBITS 22            // fixed-point bits of the vertical weights (Pillow's PRECISION_BITS)
#ifndef TAI_AA_MIN_BLOCKS
#define TAI_AA_MIN_BLOCKS 4        // resident blocks per SM the register budget must allow
#endif
#ifndef TAI_AA_VEC
#define TAI_AA_VEC 16              // bytes per load when the image and its pitch are that aligned
#endif
#ifndef TAI_AA_INFLIGHT
#define TAI_AA_INFLIGHT 4          // vertical taps loaded before they are summed
#endif

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

// acc[k] += w * byte k of v (byte permute + integer multiply-add; no float conversion).
static __device__ __forceinline__ void tai_acc_bytes(int* acc, unsigned v, int w) {
    acc[0] += w * (int)__byte_perm(v, 0u, 0x4440);
    acc[1] += w * (int)__byte_perm(v, 0u, 0x4441);
    acc[2] += w * (int)__byte_perm(v, 0u, 0x4442);
    acc[3] += w * (int)__byte_perm(v, 0u, 0x4443);
}

__device__ __forceinline__ void tai_acc_more(int* acc, const uint4& v, int w) {
    tai_acc_bytes(acc, v.z, w);
    tai_acc_bytes(acc + 4, v.w, w);
}
__device__ __forceinline__ void tai_acc_more(int*, const uint2&, int) {}

// Fixed-point vertical weight of source row y (as float) under the filter centred at c with
// 1/support inv: Pillow's triangle weight scaled by inv << TAI_AA_WBITS, so that one output's
// weights sum to about 1 << TAI_AA_WBITS (at most twice that: 255 * sum fits an int).
static __device__ __forceinline__ int tai_aa_iweight(float y, float c, float inv) {
    return __float2int_rn(fmaxf(0.f, 1.f - fabsf((y - c + 0.5f) * inv)) * (inv * (float)(1 << TAI_AA_WBITS)));
}

// The vertical weights of one item, computed per tap by the thread that uses them: a per-block
// table (one more barrier, before the loads) measured 5 % slower on an H200.
struct TaiAaWeights {
    float y0, cy, iy;  // y0: the first tap's row
    __device__ __forceinline__ int operator()(int t) const { return tai_aa_iweight(y0 + (float)t, cy, iy); }
};

// Vertical pass, one item: the nt taps of chunk c, source rows lo, lo + 1, ... (q: the chunk
// in row lo) with weights wf(t); returns the sum of the weights.
// Aligned chunks (VEC 8 or 16): the image and its pitch are VEC-byte aligned, so chunk c
// holds the same columns in every row.
template <int VEC> struct TaiAaVec;
template <> struct TaiAaVec<16> { typedef uint4 T; };
template <> struct TaiAaVec<8> { typedef uint2 T; };

template <int VEC>
struct TaiAaColumn {
    template <class W>
    static __device__ __forceinline__ int run(int* acc, const unsigned char* q, int pitch, int nt, const W& wf, int,
                                              int) {
        typedef typename TaiAaVec<VEC>::T T;
        int wsum = 0;
        // TAI_AA_INFLIGHT taps' loads are issued before their arithmetic (predicated, no
        // remainder loop). 8 in flight needed more registers and measured slower than 4.
        for (int t0 = 0; t0 < nt; t0 += TAI_AA_INFLIGHT) {
            T v[TAI_AA_INFLIGHT];
#pragma unroll
            for (int u = 0; u < TAI_AA_INFLIGHT; ++u)
                if (t0 + u < nt) v[u] = __ldg((const T*)(q + (long long)(t0 + u) * pitch));
#pragma unroll
            for (int u = 0; u < TAI_AA_INFLIGHT; ++u) {
                if (t0 + u < nt) {
                    const int wt = wf(t0 + u);
                    wsum += wt;
                    tai_acc_bytes(acc, v[u].x, wt);
                    tai_acc_bytes(acc + 4, v[u].y, wt);
                    tai_acc_more(acc + 8, v[u], wt);
                }
            }
        }
        return wsum;
    }
};

// VEC 4, rows at any alignment: the aligned word holding the chunk's first byte, funnel-shifted
// with the next word when that one holds a footprint byte.
template <>
struct TaiAaColumn<4> {
    template <class W>
    static __device__ __forceinline__ int run(int* acc, const unsigned char* q, int pitch, int nt, const W& wf, int c,
                                              int nbytes) {
        int wsum = 0;
#pragma unroll 4
        for (int t = 0; t < nt; ++t) {
            const size_t a = (size_t)(q + (long long)t * pitch);
            const unsigned mis = (unsigned)(a & 3);
            const unsigned* wp = (const unsigned*)(a & ~(size_t)3);
            unsigned v = __ldg(wp);
            if (mis != 0 && c * 4 + 4 - (int)mis < nbytes) v = __funnelshift_r(v, __ldg(wp + 1), 8 * mis);
            else v >>= 8 * mis;
            const int wt = wf(t);
            wsum += wt;
            tai_acc_bytes(acc, v, wt);
        }
        return wsum;
    }
};

// Vertical pass of the tiled kernel. Item (j, c): resized row ry0 + j, bytes [c*VEC, c*VEC + VEC)
// of the footprint rows (VEC 8/16: of the VEC-aligned span holding them, the footprint from
// byte b0 % VEC; VEC 4: from the footprint's first byte). Only chunks and words that hold at
// least one footprint byte are read. Each thread computes its own taps and weights: no wait
// for tables, the loads start at once.
template <int VEC>
static __device__ __forceinline__ void tai_aa_vertical(const TaiImageDesc& d, int ry0, int b0, int nbytes, int nch,
                                                       int rows, float* vbuf, int tid) {
    const unsigned char* img = (const unsigned char*)d.src + (VEC == 4 ? b0 : (b0 & ~(VEC - 1)));
    for (int it = tid; it < rows * nch; it += TAI_BLOCK_X * TAI_AA_BLOCK_Y) {
        const int j = it / nch, c = it - j * nch;
        float cy, iy;
        int lo, hi;
        tai_aa_taps(ry0 + j, d.scale_y, d.src_h, cy, iy, lo, hi);
        int acc[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) acc[k] = 0;
        const unsigned char* q = img + (long long)lo * d.src_pitch + c * VEC;
        const TaiAaWeights wf = {(float)lo, cy, iy};
        const int wsum = TaiAaColumn<VEC>::run(acc, q, d.src_pitch, hi - lo, wf, c, nbytes);
        const float inv = 1.f / (float)wsum;
        float* o = vbuf + j * TAI_AA_VCAP + c * VEC;
#pragma unroll
        for (int k = 0; k < VEC; ++k) o[k] = (float)acc[k] * inv;
    }
}

// The per-pixel path out of line: inlined, its registers (a tap array per pixel) would set the
// tiled kernel's budget and halve the blocks an SM holds.
template <int FMT>
static __device__ __noinline__ void tai_aa_fallback(const TaiPreprocessParams& p, int n, int y, int x) {
    tai_preprocess_body<FMT, true>(p, n, y, x);
}

template <int FMT>
static __device__ __forceinline__ void tai_preprocess_aa_tiled(const TaiPreprocessParams& p) {
    __shared__ __align__(16) float vbuf[TAI_AA_TILE_H * TAI_AA_VCAP];
    __shared__ float wx[TAI_BLOCK_X * TAI_AA_TMAX];
    __shared__ int xlo_s[TAI_BLOCK_X], xn_s[TAI_BLOCK_X];
    constexpr int bpp = FMT == TAI_FMT_GRAY8 ? 1 : 3;
    const int n = blockIdx.z;
    if (n >= p.batch) return;
    const TaiImageDesc d = ((const TaiImageDesc*)p.images)[n];
    const int ox0 = blockIdx.x * TAI_BLOCK_X, oy0 = blockIdx.y * TAI_AA_TILE_H;
    // The tile's pixels in resized-image coordinates: [rx0, rx1) x [ry0, ry1).
    const int rx0 = max(ox0 - d.roi_left, 0);
    const int rx1 = min(min(ox0 + TAI_BLOCK_X, p.out_w) - d.roi_left, d.roi_w);
    const int ry0 = max(oy0 - d.roi_top, 0);
    const int ry1 = min(min(oy0 + TAI_AA_TILE_H, p.out_h) - d.roi_top, d.roi_h);
    // Everything below up to the tables is uniform per block.
    const bool tiled = rx0 < rx1 && ry0 < ry1 &&
                       2.f * fmaxf(d.scale_x, 1.f) + 2.f <= (float)TAI_AA_TMAX;   // taps <= 2 * support + 1
    int x_lo = 0, x_hi = 0;
    if (tiled) {
        float c_, i_;
        int unused;
        tai_aa_taps(rx0, d.scale_x, d.src_w, c_, i_, x_lo, unused);       // windows move right with
        tai_aa_taps(rx1 - 1, d.scale_x, d.src_w, c_, i_, unused, x_hi);   // the index: the first and last
    }                                                                     // pixels bound the footprint
    const int b0 = x_lo * bpp, nbytes = (x_hi - x_lo) * bpp;
    const bool aligned = (((size_t)d.src | (size_t)d.src_pitch) & (TAI_AA_VEC - 1)) == 0;
    const int hoff = aligned ? (b0 & (TAI_AA_VEC - 1)) : 0;  // where footprint byte 0 sits in a vbuf row
    const int nch = aligned ? (hoff + nbytes + TAI_AA_VEC - 1) / TAI_AA_VEC : (nbytes + 3) >> 2;
    if (!tiled || nch * (aligned ? TAI_AA_VEC : 4) > TAI_AA_VCAP) {
        // The call takes the parameters' address: they are copied to the stack here, in the
        // branch, not at kernel entry by every thread of every block (88 bytes of local stores
        // per thread, 35 MB per 1080p batch of 16, when the call took the kernel's p).
        const TaiPreprocessParams pc = p;
        for (int k = 0; k < TAI_AA_ROWS_PER_THREAD; ++k)
            tai_aa_fallback<FMT>(pc, n, oy0 + threadIdx.y + k * TAI_AA_BLOCK_Y, ox0 + threadIdx.x);
        return;
    }
    const int tid = threadIdx.y * TAI_BLOCK_X + threadIdx.x;

    // 1. Column filter table (warp 0): first source column, tap count, normalised weights, tap-major
    //    (wx[t * TAI_BLOCK_X + column]) so that the 32 columns of a warp read 32 different banks; a
    //    column-major table made every weight read of the horizontal pass a 32-way bank conflict.
    if (tid < rx1 - rx0) {
        float cx, ix;
        int lo, hi;
        tai_aa_taps(rx0 + tid, d.scale_x, d.src_w, cx, ix, lo, hi);
        float ws = 0.f;
        for (int x = lo; x < hi; ++x) ws += tai_aa_weight(x, cx, ix);
        const float inv = 1.f / ws;
        for (int t = 0; t < hi - lo; ++t) wx[t * TAI_BLOCK_X + tid] = tai_aa_weight(lo + t, cx, ix) * inv;
        xlo_s[tid] = lo;
        xn_s[tid] = hi - lo;
    }

    // 2. Vertical pass into vbuf (no table to wait for: the loads start at once).
    if (aligned) tai_aa_vertical<TAI_AA_VEC>(d, ry0, b0, nbytes, nch, ry1 - ry0, vbuf, tid);
    else tai_aa_vertical<4>(d, ry0, b0, nbytes, nch, ry1 - ry0, vbuf, tid);
    __syncthreads();

    // 3. Horizontal pass: output pixel (ox, oy) per thread and tile row.
    const int ox = ox0 + threadIdx.x;
    if (ox >= p.out_w) return;
    const int rx = ox - d.roi_left;
    const bool col_in = rx >= 0 && rx < d.roi_w;
    for (int k = 0; k < TAI_AA_ROWS_PER_THREAD; ++k) {
        const int oy = oy0 + threadIdx.y + k * TAI_AA_BLOCK_Y;
        if (oy >= p.out_h) break;
        const int ry = oy - d.roi_top;
        float v0 = p.pad_out[0], v1 = p.pad_out[1], v2 = p.pad_out[2];
        if (col_in && ry >= 0 && ry < d.roi_h) {
            const int col = rx - rx0;
            const int nt = xn_s[col];
            const float* w = wx + col;
            const float* h = vbuf + (ry - ry0) * TAI_AA_VCAP + hoff + (xlo_s[col] - x_lo) * bpp;
            float s0 = 0.f, s1 = 0.f, s2 = 0.f;
            for (int t = 0; t < nt; ++t, h += bpp) {
                const float wt = w[t * TAI_BLOCK_X];
                s0 += wt * h[0];
                if (bpp == 3) {
                    s1 += wt * h[1];
                    s2 += wt * h[2];
                }
            }
            float r, g, b;
            if (FMT == TAI_FMT_BGR8) { b = s0; g = s1; r = s2; }
            else if (FMT == TAI_FMT_RGB8) { r = s0; g = s1; b = s2; }
            else { r = g = b = s0; }
            tai_normalise(p, FMT == TAI_FMT_GRAY8, r, g, b, v0, v1, v2);
        }
        tai_store_pixel(p, n, oy, ox, v0, v1, v2);
    }
}

// One entry point per source format; the _aa variants resample as PIL (descriptors with
// antialias=1; one output pixel per thread and TAI_AA_ROWS_PER_THREAD rows), kept apart so
// the INTER_LINEAR kernels keep their register budget.
#define TAI_PREPROCESS_ENTRY(NAME, FMT)                                                          \
    extern "C" __global__ void __launch_bounds__(TAI_BLOCK_X * TAI_BLOCK_Y)                    \
    NAME(const TaiPreprocessParams p) {                                                          \
        tai_preprocess_body<FMT, false>(p, blockIdx.z, blockIdx.y * TAI_BLOCK_Y + threadIdx.y,   \
                                        (blockIdx.x * TAI_BLOCK_X + threadIdx.x) * TAI_PX_PER_THREAD); \
    }
#define TAI_PREPROCESS_AA_PIXEL(NAME, FMT)                                                       \
    extern "C" __global__ void __launch_bounds__(TAI_BLOCK_X * TAI_AA_BLOCK_Y)                    \
    NAME(const TaiPreprocessParams p) {                                                          \
        for (int k = 0; k < TAI_AA_ROWS_PER_THREAD; ++k)                                         \
            tai_preprocess_body<FMT, true>(p, blockIdx.z,                                        \
                                           blockIdx.y * TAI_AA_TILE_H + threadIdx.y + k * TAI_AA_BLOCK_Y, \
                                           blockIdx.x * TAI_BLOCK_X + threadIdx.x);              \
    }
#define TAI_PREPROCESS_AA_TILED(NAME, FMT, MIN_BLOCKS)                              \
    extern "C" __global__ void __launch_bounds__(TAI_BLOCK_X * TAI_AA_BLOCK_Y, MIN_BLOCKS) \
    NAME(const TaiPreprocessParams p) { tai_preprocess_aa_tiled<FMT>(p); }

TAI_PREPROCESS_ENTRY(tai_preprocess_bgr8, TAI_FMT_BGR8)
TAI_PREPROCESS_ENTRY(tai_preprocess_rgb8, TAI_FMT_RGB8)
TAI_PREPROCESS_ENTRY(tai_preprocess_gray8, TAI_FMT_GRAY8)
TAI_PREPROCESS_ENTRY(tai_preprocess_nv12, TAI_FMT_NV12)
TAI_PREPROCESS_AA_TILED(tai_preprocess_bgr8_aa, TAI_FMT_BGR8, TAI_AA_MIN_BLOCKS)
TAI_PREPROCESS_AA_TILED(tai_preprocess_rgb8_aa, TAI_FMT_RGB8, TAI_AA_MIN_BLOCKS)
TAI_PREPROCESS_AA_TILED(tai_preprocess_gray8_aa, TAI_FMT_GRAY8, TAI_AA_MIN_BLOCKS - 1)  // 64 registers spill
TAI_PREPROCESS_AA_PIXEL(tai_preprocess_nv12_aa, TAI_FMT_NV12)

#endif  // TAI_PREPROCESS_CU

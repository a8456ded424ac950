// Exact greedy non-maximum suppression: the kept indices equal torchvision.ops.nms
// (CUDA) for the same boxes, scores and IoU threshold, ties and degenerate boxes
// included; optional class-aware variant (boxes of different classes never suppress
// each other, as torchvision.ops.batched_nms), score threshold and top-k.
//
// Three launches, no host round trip between them:
//   tai_nms_rank    stable sort by score, descending (torch.sort's tie order)
//   tai_nms_mask    64x64 tiles of the IoU bitmask (torchvision's layout)
//   tai_nms_gather  one block walks the tiles in order and writes kept indices
// Header-free: compiles with nvcc and NVRTC, CUDA 11.4 to 13.x.

#ifndef TAI_NMS_CU
#define TAI_NMS_CU

#define TAI_NMS_TILE 64
#define TAI_NMS_RANK_THREADS 128
#define TAI_NMS_RANK_CHUNK 1024
#define TAI_NMS_GATHER_THREADS 1024
#define TAI_NMS_GATHER_UNROLL 8

// Sort key: scores descending, then original index ascending (a stable sort, which is
// what torch.sort gives torchvision on CUDA: checked against torch 2.11 for 2 to 50,000
// boxes with ties), as one 64-bit integer. Float order is bit order with -0.0 equal to
// +0.0, as CUB's radix sort. Boxes under the score threshold sort last.
static __device__ __forceinline__ unsigned long long tai_nms_key(const float* scores, int j,
                                                                 float score_threshold, int use_threshold) {
    const float s = scores[j];
    if (use_threshold && !(s > score_threshold)) return ~0ULL;
    unsigned int bits = __float_as_uint(s);
    if (bits == 0x80000000u) bits = 0u;
    const unsigned int ascending = bits ^ ((bits & 0x80000000u) ? 0xFFFFFFFFu : 0x80000000u);
    return ((unsigned long long)(~ascending) << 32) | (unsigned int)j;
}

// order[rank] = index of the rank-th highest score (ties by index); *n_valid = boxes
// over the threshold. O(n^2) comparisons from shared memory: n is at most a few 10^5.
extern "C" __global__ void __launch_bounds__(TAI_NMS_RANK_THREADS)
tai_nms_rank(const float* scores, int n, float score_threshold, int use_threshold,
             int* order, int* n_valid) {
    __shared__ unsigned long long keys[TAI_NMS_RANK_CHUNK];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long mine = i < n ? tai_nms_key(scores, i, score_threshold, use_threshold) : ~0ULL;
    int rank = 0, valid = 0;
    for (int base = 0; base < n; base += TAI_NMS_RANK_CHUNK) {
        const int len = min(TAI_NMS_RANK_CHUNK, n - base);
        __syncthreads();
        for (int k = threadIdx.x; k < len; k += blockDim.x)
            keys[k] = tai_nms_key(scores, base + k, score_threshold, use_threshold);
        __syncthreads();
        int k = 0;
        for (; k + 4 <= len; k += 4) {
            const unsigned long long k0 = keys[k], k1 = keys[k + 1], k2 = keys[k + 2], k3 = keys[k + 3];
            rank += (k0 < mine) + (k1 < mine) + (k2 < mine) + (k3 < mine);
            valid += (k0 != ~0ULL) + (k1 != ~0ULL) + (k2 != ~0ULL) + (k3 != ~0ULL);
        }
        for (; k < len; ++k) {
            rank += keys[k] < mine;
            valid += keys[k] != ~0ULL;
        }
    }
    if (i < n && mine != ~0ULL) order[rank] = i;
    if (i == 0) *n_valid = valid;
}

// torchvision's devIoU, same expression so the same rounding (and contraction).
// A zero intersection gives 0/union: suppression only for a negative threshold and a
// non-zero, non-NaN union; skipping the division there is exact and saves most of it.
static __device__ __forceinline__ bool tai_iou_above(const float* a, const float* b, float threshold) {
    float left = fmaxf(a[0], b[0]), right = fminf(a[2], b[2]);
    float top = fmaxf(a[1], b[1]), bottom = fminf(a[3], b[3]);
    float width = fmaxf(right - left, 0.f), height = fmaxf(bottom - top, 0.f);
    float interS = width * height;
    float Sa = (a[2] - a[0]) * (a[3] - a[1]);
    float Sb = (b[2] - b[0]) * (b[3] - b[1]);
    if (interS == 0.f) {
        if (!(threshold < 0.f)) return false;
        const float u = Sa + Sb - interS;
        return u != 0.f && u == u;
    }
    return (interS / (Sa + Sb - interS)) > threshold;
}

// mask[r * col_words + c] bit k: sorted box r suppresses sorted box 64*c + k (k > r).
// Grid (col_words, col_words) over the whole input; tiles past the valid count exit.
extern "C" __global__ void __launch_bounds__(TAI_NMS_TILE)
tai_nms_mask(const float* boxes, const int* classes, const int* order,
             const int* n_valid, int n, float iou_threshold, unsigned long long* mask) {
    const int row_start = blockIdx.y, col_start = blockIdx.x;
    const int m = *n_valid;
    if (row_start > col_start || col_start * TAI_NMS_TILE >= m) return;
    const int col_words = (n + TAI_NMS_TILE - 1) / TAI_NMS_TILE;
    const int row_size = min(m - row_start * TAI_NMS_TILE, TAI_NMS_TILE);
    const int col_size = min(m - col_start * TAI_NMS_TILE, TAI_NMS_TILE);

    __shared__ float block_boxes[TAI_NMS_TILE * 4];
    __shared__ int block_classes[TAI_NMS_TILE];
    if (threadIdx.x < col_size) {
        const int j = order[col_start * TAI_NMS_TILE + threadIdx.x];
        const float4 bj = ((const float4*)boxes)[j];
        block_boxes[threadIdx.x * 4 + 0] = bj.x;
        block_boxes[threadIdx.x * 4 + 1] = bj.y;
        block_boxes[threadIdx.x * 4 + 2] = bj.z;
        block_boxes[threadIdx.x * 4 + 3] = bj.w;
        block_classes[threadIdx.x] = classes ? classes[j] : 0;
    }
    __syncthreads();
    if (threadIdx.x < row_size) {
        const int r = row_start * TAI_NMS_TILE + threadIdx.x;
        const int i = order[r];
        const float4 bi = ((const float4*)boxes)[i];
        const float cur[4] = {bi.x, bi.y, bi.z, bi.w};
        const int cls = classes ? classes[i] : 0;
        const int start = row_start == col_start ? threadIdx.x + 1 : 0;
        unsigned long long t = 0;
        for (int k = start; k < col_size; ++k) {
            if (block_classes[k] == cls && tai_iou_above(cur, block_boxes + k * 4, iou_threshold))
                t |= 1ULL << k;
        }
        mask[(long long)r * col_words + col_start] = t;
    }
}

// Greedy pass over the mask, 64 boxes at a time: warp 0 settles one tile from its
// diagonal words (a few bit operations per kept box), then the whole block ORs the kept
// rows into the words of later tiles, every load independent (many in flight).
// Two barriers per 64 boxes, not one per kept box.
// Dynamic shared memory: 8 bytes per 64 input boxes.
extern "C" __global__ void __launch_bounds__(TAI_NMS_GATHER_THREADS)
tai_nms_gather(const int* order, const int* n_valid, const unsigned long long* mask, int n,
               int top_k, int* keep, int* keep_count) {
    extern __shared__ unsigned long long removed[];
    __shared__ unsigned long long s_diag[TAI_NMS_TILE];
    __shared__ int s_rows[TAI_NMS_TILE];
    __shared__ int s_nkept, s_count, s_stop;
    const int m = *n_valid;
    const int col_words = (n + TAI_NMS_TILE - 1) / TAI_NMS_TILE;
    const int tiles = (m + TAI_NMS_TILE - 1) / TAI_NMS_TILE;
    const int limit = top_k > 0 ? min(top_k, m) : m;
    const int lane = threadIdx.x & 31;
    for (int w = threadIdx.x; w < tiles; w += blockDim.x) removed[w] = 0;
    if (threadIdx.x == 0) { s_count = 0; s_stop = limit <= 0; s_nkept = 0; }
    // Warp 0 keeps the next tile's diagonal words in registers: they do not depend on
    // earlier tiles, so their load overlaps the previous tile's OR pass.
    unsigned long long d_lo = 0, d_hi = 0;
    if (threadIdx.x < 32 && tiles > 0) {
        const int rows = min(m, TAI_NMS_TILE);
        if (lane < rows) d_lo = mask[(long long)lane * col_words];
        if (lane + 32 < rows) d_hi = mask[(long long)(lane + 32) * col_words];
    }
    __syncthreads();
    for (int t = 0; t < tiles && !s_stop; ++t) {
        const long long row0 = (long long)t * TAI_NMS_TILE;
        if (threadIdx.x < 32) {
            const int rows = min(m - t * TAI_NMS_TILE, TAI_NMS_TILE);
            s_diag[lane] = d_lo;
            s_diag[lane + 32] = d_hi;
            __syncwarp();
            if (t + 1 < tiles) {
                const int next_rows = min(m - (t + 1) * TAI_NMS_TILE, TAI_NMS_TILE);
                const long long r1 = row0 + TAI_NMS_TILE;
                d_lo = lane < next_rows ? mask[(r1 + lane) * col_words + t + 1] : 0ULL;
                d_hi = lane + 32 < next_rows ? mask[(r1 + lane + 32) * col_words + t + 1] : 0ULL;
            }
            const int count = s_count;
            unsigned long long kept = 0;
            if (lane == 0) {
                const unsigned long long valid = rows == 64 ? ~0ULL : ((1ULL << rows) - 1);
                unsigned long long rem = removed[t];
                unsigned long long cand = ~rem & valid;
                while (cand) {
                    const int k = __ffsll((long long)cand) - 1;
                    kept |= 1ULL << k;
                    rem |= s_diag[k];
                    cand = ~rem & valid & ~((2ULL << k) - 1);
                }
                const int room = limit - count;
                while (__popcll(kept) > room) kept &= ~(1ULL << (63 - __clzll((long long)kept)));
            }
            kept = __shfl_sync(0xFFFFFFFFu, kept, 0);
            for (int k = lane; k < rows; k += 32) {
                if ((kept >> k) & 1ULL) {
                    const int pos = __popcll(kept & ((1ULL << k) - 1));
                    s_rows[pos] = k;
                    keep[count + pos] = order[row0 + k];
                }
            }
            if (lane == 0) {
                s_nkept = __popcll(kept);
                s_count = count + __popcll(kept);
                s_stop = s_count >= limit;
            }
        }
        __syncthreads();
        const int nk = s_nkept;
        const int words = tiles - t - 1;
        if (nk && words > 0 && !s_stop) {
            const int total = nk * words;
            // Up to UNROLL loads per thread issued before the first use: the pass is
            // bound by memory latency, not bandwidth.
            for (int base = threadIdx.x; base < total; base += TAI_NMS_GATHER_UNROLL * blockDim.x) {
                unsigned long long v[TAI_NMS_GATHER_UNROLL];
                int w[TAI_NMS_GATHER_UNROLL];
#pragma unroll
                for (int u = 0; u < TAI_NMS_GATHER_UNROLL; ++u) {
                    const int id = base + u * blockDim.x;
                    v[u] = 0;
                    w[u] = 0;
                    if (id < total) {
                        const int k = s_rows[id / words];
                        w[u] = t + 1 + id % words;
                        v[u] = __ldg(mask + (row0 + k) * col_words + w[u]);
                    }
                }
#pragma unroll
                for (int u = 0; u < TAI_NMS_GATHER_UNROLL; ++u)
                    if (v[u]) atomicOr(&removed[w[u]], v[u]);
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) *keep_count = s_count;
}

#endif  // TAI_NMS_CU

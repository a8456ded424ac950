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

// Arguments of the mask and gather kernels, by value. One "image" per blockIdx.z (mask)
// or blockIdx.x (gather); plain NMS is one image. Mirrored by layout.NmsArgs.
struct TaiNmsArgs {
    unsigned long long boxes;      // const float4* [batch][cap], x1,y1,x2,y2
    unsigned long long classes;    // const int* [batch][cap], or 0: one class
    unsigned long long order;      // const int* [batch][cap]: sorted rank -> box
    unsigned long long n_valid;    // const int* [batch]: boxes in `order`
    unsigned long long dropped;    // const u64* [batch][words]: ranks never kept (per-class top-k), or 0
    unsigned long long mask;       // u64* [batch][cap][words]
    unsigned long long diag_t;     // u64* [batch][words * 64]: diagonal tiles, transposed
    unsigned long long keep;       // int* [batch][cap]: kept boxes, best first
    unsigned long long keep_count; // int* [batch]
    int cap;                       // boxes per image
    int words;                     // (cap + 63) / 64
    int top_k;                     // at most this many kept per image; 0: no limit
    float iou_threshold;
    // Detection output (tai_det_*), all 0 for plain NMS.
    unsigned long long cand_key;   // const u64* [batch][cap]: score key | candidate id
    unsigned long long mapping;    // const float* [batch][6]: scale_x, scale_y, left, top, clip_w, clip_h; or 0
    unsigned long long out_boxes;  // float* [batch][top_k][4]
    unsigned long long out_scores; // float* [batch][top_k]
    unsigned long long out_classes;// int* [batch][top_k]
    unsigned long long out_anchor; // int* [batch][top_k]
    unsigned long long cand_cls;   // const int* [batch][cap]: class of each candidate
    int classes_per_anchor;        // multi-label: candidate id = anchor * C + class; else 0 (id = anchor)
    int reserved;
};

static_assert(sizeof(TaiNmsArgs) == 152, "TaiNmsArgs layout changed: update kernels/layout.py");

// mask[r * words + c] bit k: sorted box r suppresses sorted box 64*c + k (k > r).
// A persistent grid walks the upper triangle of the 64x64 tiles of the valid boxes;
// diagonal tiles are also written transposed (diag_t[64*c + k] bit r) for the gather.
extern "C" __global__ void __launch_bounds__(TAI_NMS_TILE)
tai_nms_mask(TaiNmsArgs a) {
    const int img = blockIdx.z;
    const int m = ((const int*)a.n_valid)[img];
    const int tiles = (m + TAI_NMS_TILE - 1) / TAI_NMS_TILE;
    const float4* boxes = (const float4*)a.boxes + (long long)img * a.cap;
    const int* classes = a.classes ? (const int*)a.classes + (long long)img * a.cap : 0;
    const int* order = (const int*)a.order + (long long)img * a.cap;
    const unsigned long long* dropped = a.dropped ? (const unsigned long long*)a.dropped + (long long)img * a.words : 0;
    unsigned long long* mask = (unsigned long long*)a.mask + (long long)img * a.cap * a.words;
    unsigned long long* diag_t = (unsigned long long*)a.diag_t + (long long)img * a.words * TAI_NMS_TILE;

    __shared__ float4 block_boxes[TAI_NMS_TILE];
    __shared__ int block_classes[TAI_NMS_TILE];
    __shared__ unsigned long long s_rows[TAI_NMS_TILE];
    for (int tile = blockIdx.x; tile < tiles * tiles; tile += gridDim.x) {
        const int row_start = tile / tiles, col_start = tile % tiles;
        if (row_start > col_start) continue;  // uniform across the block
        const int row_size = min(m - row_start * TAI_NMS_TILE, TAI_NMS_TILE);
        const int col_size = min(m - col_start * TAI_NMS_TILE, TAI_NMS_TILE);
        __syncthreads();
        if (threadIdx.x < col_size) {
            const int j = order[col_start * TAI_NMS_TILE + threadIdx.x];
            block_boxes[threadIdx.x] = boxes[j];
            block_classes[threadIdx.x] = classes ? classes[j] : 0;
        }
        __syncthreads();
        unsigned long long t = 0;
        if (threadIdx.x < row_size) {
            const int r = row_start * TAI_NMS_TILE + threadIdx.x;
            const bool row_dropped = dropped && ((dropped[r >> 6] >> (r & 63)) & 1ULL);
            if (!row_dropped) {
                const int i = order[r];
                const float4 bi = boxes[i];
                const float cur[4] = {bi.x, bi.y, bi.z, bi.w};
                const int cls = classes ? classes[i] : 0;
                const int start = row_start == col_start ? threadIdx.x + 1 : 0;
                for (int k = start; k < col_size; ++k) {
                    const float4 bk = block_boxes[k];
                    const float other[4] = {bk.x, bk.y, bk.z, bk.w};
                    if (block_classes[k] == cls && tai_iou_above(cur, other, a.iou_threshold))
                        t |= 1ULL << k;
                }
            }
            mask[(long long)r * a.words + col_start] = t;
        }
        if (row_start == col_start) {
            s_rows[threadIdx.x] = t;  // 0 for rows past the end
            __syncthreads();
            unsigned long long col = 0;
            for (int r = 0; r < threadIdx.x; ++r) col |= ((s_rows[r] >> threadIdx.x) & 1ULL) << r;
            diag_t[(long long)row_start * TAI_NMS_TILE + threadIdx.x] = col;
        }
    }
}

// Greedy pass over the mask, 64 boxes at a time. Warp 0 settles a tile in parallel:
// lane k holds column word k of the diagonal tile (which earlier boxes of the tile
// suppress box k) and the warp iterates kept = candidates not suppressed by a kept box
// to its fixed point, which is the greedy answer (box k depends only on boxes before
// it, so after i rounds the first i boxes are right; a few rounds on real data).
// Then the whole block ORs the kept rows into the words of later tiles, every load
// independent (many in flight). Two barriers per 64 boxes. One block per image.
// Dynamic shared memory: 8 bytes per 64 boxes of capacity.
// With detection arguments it also writes the detections, mapped to the source image.
extern "C" __global__ void __launch_bounds__(TAI_NMS_GATHER_THREADS)
tai_nms_gather(TaiNmsArgs a) {
    extern __shared__ unsigned long long removed[];
    __shared__ int s_rows[TAI_NMS_TILE];
    __shared__ int s_nkept, s_count, s_stop;
    const int img = blockIdx.x;
    const int m = ((const int*)a.n_valid)[img];
    const int* order = (const int*)a.order + (long long)img * a.cap;
    const unsigned long long* dropped = a.dropped ? (const unsigned long long*)a.dropped + (long long)img * a.words : 0;
    const unsigned long long* mask = (const unsigned long long*)a.mask + (long long)img * a.cap * a.words;
    const unsigned long long* diag_t = (const unsigned long long*)a.diag_t + (long long)img * a.words * TAI_NMS_TILE;
    int* keep = (int*)a.keep + (long long)img * a.cap;
    const int col_words = a.words;
    const int tiles = (m + TAI_NMS_TILE - 1) / TAI_NMS_TILE;
    const int limit = a.top_k > 0 ? min(a.top_k, m) : m;
    const int lane = threadIdx.x & 31;
    for (int w = threadIdx.x; w < tiles; w += blockDim.x) removed[w] = 0;
    if (threadIdx.x == 0) { s_count = 0; s_stop = limit <= 0; s_nkept = 0; }
    // Warp 0 keeps the next tile's transposed diagonal in registers: it does not depend
    // on earlier tiles, so its load overlaps the previous tile's OR pass.
    unsigned long long c_lo = 0, c_hi = 0;
    if (threadIdx.x < 32 && tiles > 0) {
        c_lo = diag_t[lane];
        c_hi = diag_t[lane + 32];
    }
    __syncthreads();
    for (int t = 0; t < tiles && !s_stop; ++t) {
        const long long row0 = (long long)t * TAI_NMS_TILE;
        if (threadIdx.x < 32) {
            const int rows = min(m - t * TAI_NMS_TILE, TAI_NMS_TILE);
            const unsigned long long my_lo = c_lo, my_hi = c_hi;
            if (t + 1 < tiles) {
                c_lo = diag_t[row0 + TAI_NMS_TILE + lane];
                c_hi = diag_t[row0 + TAI_NMS_TILE + lane + 32];
            }
            const int count = s_count;
            const unsigned long long valid = rows == 64 ? ~0ULL : ((1ULL << rows) - 1);
            const unsigned long long cand = ~removed[t] & valid & ~(dropped ? dropped[t] : 0ULL);
            unsigned long long kept = cand;
            for (;;) {
                const unsigned int lo = __ballot_sync(0xFFFFFFFFu, (my_lo & kept) != 0ULL);
                const unsigned int hi = __ballot_sync(0xFFFFFFFFu, (my_hi & kept) != 0ULL);
                const unsigned long long next = cand & ~(((unsigned long long)hi << 32) | lo);
                if (next == kept) break;
                kept = next;
            }
            const int room = limit - count;
            while (__popcll(kept) > room) kept &= ~(1ULL << (63 - __clzll((long long)kept)));
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
    const int kept_total = s_count;
    if (threadIdx.x == 0) ((int*)a.keep_count)[img] = kept_total;
    if (!a.out_boxes) return;
    // Detections: score back from the key, class, anchor, box mapped to the source.
    const unsigned long long* keys = (const unsigned long long*)a.cand_key + (long long)img * a.cap;
    const float4* boxes = (const float4*)a.boxes + (long long)img * a.cap;
    const int* cand_cls = (const int*)a.cand_cls + (long long)img * a.cap;
    float sx = 1.f, sy = 1.f, left = 0.f, top = 0.f, cw = 0.f, ch = 0.f;
    if (a.mapping) {
        const float* mp = (const float*)a.mapping + img * 6;
        sx = mp[0]; sy = mp[1]; left = mp[2]; top = mp[3]; cw = mp[4]; ch = mp[5];
    }
    for (int q = threadIdx.x; q < kept_total; q += blockDim.x) {
        const int s = keep[q];
        const unsigned long long key = keys[s];
        const unsigned int id = (unsigned int)key;
        const unsigned int asc = ~(unsigned int)(key >> 32);
        const unsigned int bits = asc ^ ((asc & 0x80000000u) ? 0x80000000u : 0xFFFFFFFFu);
        float4 b = boxes[s];
        b.x = (b.x - left) / sx; b.z = (b.z - left) / sx;
        b.y = (b.y - top) / sy;  b.w = (b.w - top) / sy;
        if (cw > 0.f) { b.x = fminf(fmaxf(b.x, 0.f), cw); b.z = fminf(fmaxf(b.z, 0.f), cw); }
        if (ch > 0.f) { b.y = fminf(fmaxf(b.y, 0.f), ch); b.w = fminf(fmaxf(b.w, 0.f), ch); }
        const long long o = (long long)img * a.top_k + q;
        ((float4*)a.out_boxes)[o] = b;
        ((float*)a.out_scores)[o] = __uint_as_float(bits);
        ((int*)a.out_classes)[o] = cand_cls[s];
        ((int*)a.out_anchor)[o] = a.classes_per_anchor ? (int)(id / a.classes_per_anchor) : (int)id;
    }
}

// ---- Detector heads: decode + score threshold into candidates, then rank ------------
//
// Head tensors are read through element strides, so one kernel serves YOLOv8
// ([N, 4+C, A] or [N, A, 4+C]), YOLOv5 ([N, A, 5+C], objectness) and SSD/EfficientNMS
// style heads (boxes [N, A, 4] + scores [N, A, C]). Semantics: detect_reference.py.
struct TaiDetParams {
    unsigned long long boxes;        // first box coordinate of anchor 0, image 0
    unsigned long long scores;       // first class score
    unsigned long long objectness;   // objectness of anchor 0, or 0
    long long box_batch, box_anchor, box_coord;      // element strides
    long long score_batch, score_anchor, score_class;
    long long obj_batch, obj_anchor;
    int anchors, classes;
    int box_format;                  // 0: cx, cy, w, h; 1: x1, y1, x2, y2
    int half;                        // 1: float16 head, else float32
    int multi_label;                 // 1: every (anchor, class) over the threshold; 0: best class
    float score_threshold;           // keep score > threshold
    int cap;                         // candidates per image
    int per_class_top_k;             // 0: no limit
    int pre_nms_top_k;               // 0: no limit
    int words;                       // (cap + 63) / 64
    unsigned long long count;        // int* [batch]: candidates found (may exceed cap: overflow)
    unsigned long long cand_key;     // u64* [batch][cap]
    unsigned long long cand_box;     // float4* [batch][cap]
    unsigned long long cand_cls;     // int* [batch][cap]
    unsigned long long order;        // int* [batch][cap]
    unsigned long long n_valid;      // int* [batch]
    unsigned long long dropped;      // u64* [batch][words], zeroed before the call
};

static_assert(sizeof(TaiDetParams) == 184, "TaiDetParams layout changed: update kernels/layout.py");

static __device__ __forceinline__ float tai_ld(unsigned long long base, long long i, int half) {
    if (half) {
        const unsigned short h = __ldg((const unsigned short*)base + i);
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
        return f;
    }
    return __ldg((const float*)base + i);
}

static __device__ __forceinline__ unsigned long long tai_score_key(float s, unsigned int id) {
    unsigned int bits = __float_as_uint(s);
    if (bits == 0x80000000u) bits = 0u;
    const unsigned int ascending = bits ^ ((bits & 0x80000000u) ? 0xFFFFFFFFu : 0x80000000u);
    return ((unsigned long long)(~ascending) << 32) | id;
}

static __device__ __forceinline__ void tai_det_push(const TaiDetParams& p, int img, float score, unsigned int id,
                                                    float4 box, int cls) {
    const int slot = atomicAdd((int*)p.count + img, 1);
    if (slot >= p.cap) return;  // overflow: counted, reported by the host
    const long long o = (long long)img * p.cap + slot;
    ((unsigned long long*)p.cand_key)[o] = tai_score_key(score, id);
    ((float4*)p.cand_box)[o] = box;
    ((int*)p.cand_cls)[o] = cls;
}

// Block (32 anchors, 8 class groups): thread (x, g) scans classes g, g+8, ... of anchor
// x, loads of a warp coalesced (32 consecutive anchors, same class) and several in
// flight per thread; best-class mode then reduces the 8 groups in shared memory.
// Grid (ceil(A / 32), batch).
#define TAI_DET_ANCHORS 32
#define TAI_DET_GROUPS 8
#define TAI_DET_UNROLL 4
extern "C" __global__ void __launch_bounds__(TAI_DET_ANCHORS * TAI_DET_GROUPS)
tai_det_decode(TaiDetParams p) {
    __shared__ float s_best[TAI_DET_GROUPS][TAI_DET_ANCHORS];
    __shared__ int s_cls[TAI_DET_GROUPS][TAI_DET_ANCHORS];
    const int img = blockIdx.y;
    const int x = threadIdx.x, g = threadIdx.y;
    const int a = blockIdx.x * TAI_DET_ANCHORS + x;
    const bool valid = a < p.anchors;
    float best = 0.f;
    int best_c = -1;
    if (valid) {
        const float obj = p.objectness ? tai_ld(p.objectness, img * p.obj_batch + a * p.obj_anchor, p.half) : 1.f;
        const long long sb = img * p.score_batch + a * p.score_anchor;
        float4 box = make_float4(0.f, 0.f, 0.f, 0.f);
        if (p.multi_label) {
            const long long bb = img * p.box_batch + a * p.box_anchor;
            const float v0 = tai_ld(p.boxes, bb, p.half), v1 = tai_ld(p.boxes, bb + p.box_coord, p.half);
            const float v2 = tai_ld(p.boxes, bb + 2 * p.box_coord, p.half);
            const float v3 = tai_ld(p.boxes, bb + 3 * p.box_coord, p.half);
            if (p.box_format == 0) {
                const float hw = v2 / 2.f, hh = v3 / 2.f;
                box = make_float4(v0 - hw, v1 - hh, v0 + hw, v1 + hh);
            } else {
                box = make_float4(v0, v1, v2, v3);
            }
        }
        for (int c0 = g; c0 < p.classes; c0 += TAI_DET_GROUPS * TAI_DET_UNROLL) {
            float s[TAI_DET_UNROLL];
#pragma unroll
            for (int u = 0; u < TAI_DET_UNROLL; ++u) {
                const int c = c0 + u * TAI_DET_GROUPS;
                s[u] = c < p.classes ? tai_ld(p.scores, sb + c * p.score_class, p.half) : 0.f;
            }
#pragma unroll
            for (int u = 0; u < TAI_DET_UNROLL; ++u) {
                const int c = c0 + u * TAI_DET_GROUPS;
                if (c >= p.classes) break;
                const float v = p.objectness ? s[u] * obj : s[u];
                if (p.multi_label) {
                    if (v > p.score_threshold) tai_det_push(p, img, v, (unsigned int)a * p.classes + c, box, c);
                } else if (best_c < 0 ? v == v : v > best) {  // first maximum of this group; NaN never wins
                    best = v;
                    best_c = c;
                }
            }
        }
    }
    if (p.multi_label) return;  // uniform: no barrier below is reached by any thread
    s_best[g][x] = best;
    s_cls[g][x] = best_c;
    __syncthreads();
    if (g != 0 || !valid) return;
    // Groups in order; on equal scores the lower class wins (the first maximum overall).
    for (int k = 1; k < TAI_DET_GROUPS; ++k) {
        const float v = s_best[k][x];
        const int c = s_cls[k][x];
        if (c >= 0 && (best_c < 0 || v > best || (v == best && c < best_c))) {
            best = v;
            best_c = c;
        }
    }
    if (best_c < 0 || !(best > p.score_threshold)) return;
    const long long bb = img * p.box_batch + a * p.box_anchor;
    const float v0 = tai_ld(p.boxes, bb, p.half), v1 = tai_ld(p.boxes, bb + p.box_coord, p.half);
    const float v2 = tai_ld(p.boxes, bb + 2 * p.box_coord, p.half), v3 = tai_ld(p.boxes, bb + 3 * p.box_coord, p.half);
    float4 box;
    if (p.box_format == 0) {
        const float hw = v2 / 2.f, hh = v3 / 2.f;
        box = make_float4(v0 - hw, v1 - hh, v0 + hw, v1 + hh);
    } else {
        box = make_float4(v0, v1, v2, v3);
    }
    tai_det_push(p, img, best, (unsigned int)a, box, best_c);
}

// Rank the candidates of each image by key (score descending, candidate id ascending),
// keep the first pre_nms_top_k and mark those past their class's per_class_top_k as
// dropped. Grid (ceil(cap / 128), batch).
extern "C" __global__ void __launch_bounds__(TAI_NMS_RANK_THREADS)
tai_det_rank(TaiDetParams p) {
    __shared__ unsigned long long keys[TAI_NMS_RANK_CHUNK];
    __shared__ int cls[TAI_NMS_RANK_CHUNK];
    const int img = blockIdx.y;
    const int n = min(((const int*)p.count)[img], p.cap);
    if (blockIdx.x * blockDim.x >= max(n, 1)) return;  // uniform: the whole block is past the end
    const long long base_off = (long long)img * p.cap;
    const unsigned long long* all_keys = (const unsigned long long*)p.cand_key + base_off;
    const int* all_cls = (const int*)p.cand_cls + base_off;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned long long mine = i < n ? all_keys[i] : ~0ULL;
    const int my_cls = i < n ? all_cls[i] : -1;
    int rank = 0, crank = 0;
    for (int base = 0; base < n; base += TAI_NMS_RANK_CHUNK) {
        const int len = min(TAI_NMS_RANK_CHUNK, n - base);
        __syncthreads();
        for (int k = threadIdx.x; k < len; k += blockDim.x) {
            keys[k] = all_keys[base + k];
            cls[k] = all_cls[base + k];
        }
        __syncthreads();
        if (p.per_class_top_k > 0) {
            for (int k = 0; k < len; ++k) {
                const bool before = keys[k] < mine;
                rank += before;
                crank += before && cls[k] == my_cls;
            }
        } else {
            int k = 0;
            for (; k + 4 <= len; k += 4)
                rank += (keys[k] < mine) + (keys[k + 1] < mine) + (keys[k + 2] < mine) + (keys[k + 3] < mine);
            for (; k < len; ++k) rank += keys[k] < mine;
        }
    }
    const int limit = p.pre_nms_top_k > 0 ? min(p.pre_nms_top_k, n) : n;
    if (i < n && rank < limit) {
        ((int*)p.order)[base_off + rank] = i;
        if (p.per_class_top_k > 0 && crank >= p.per_class_top_k)
            atomicOr((unsigned long long*)p.dropped + (long long)img * p.words + (rank >> 6), 1ULL << (rank & 63));
    }
    if (i == 0) ((int*)p.n_valid)[img] = limit;
}

#endif  // TAI_NMS_CU

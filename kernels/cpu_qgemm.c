/* Quantized GEMM for x86 CPUs with AVX2, FMA and F16C: y[M, N] = x[M, K] @ W[N, K]^T in float32,
 * reading W in its quantized form so that a decode step moves a quarter (int8, FP8) or an
 * eighth (int4) of the bytes a float32 weight needs.
 *
 * Weights are repacked once at load (kernels/cpu_native.py) into blocks of 8 output rows, so
 * that one column of a block fills one 8-lane vector:
 *   W4: uint32 [N/8][K/8][8]: lane j holds row 8b+j's codes of columns 8kk..8kk+7, nibble i
 *       for column 8kk+i (compressed-tensors' own int32 words, interleaved by rows);
 *   W8: int8 [N/8][K][8], the code minus 128; F8: uint8 [N/8][K][8], float8_e4m3fn bits.
 * Scales are float32 [N/8][K/group][8] and offsets int32 [N/8][K/group][8]: a weight is
 * (code - offset) * scale, the offset being the stored code that means zero (8 plus the zero
 * point for W4, the zero point for W8, 0 for F8). FP8 codes become exact float32 through F16C:
 * the e4m3 bits shifted into a half float are the value times 2^-8 (subnormals included), and
 * the scale passed in carries the 2^8 back.
 *
 * Up to DIRECT_ROWS activation rows (decode), each tile multiplies the codes themselves and
 * applies a group's scale and offset once per group: sum(x * (c - o) * s) over a group is
 * s * (sum(x * c) - o * sum(x)), which leaves one conversion and one FMA per 8 weights. A decode
 * step is bound by this arithmetic rather than by memory once the weights are int4. Past that,
 * each block's weights are built once, as the reference builds them ((c - o) * s, one rounding),
 * into a buffer that stays in L2, and read from there by tiles of MR_DECODED rows. Prefills
 * (kernels/cpu_native.py decides from how many rows) instead take the weight built whole, in
 * slabs, for a float32 GEMM library (hub_dequant_*).
 *
 * Threads split the blocks of rows (OpenMP; the process's own runtime, torch's). */
#include <float.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

enum { W4 = 0, W8 = 1, F8 = 2 };
#define MR 4 /* activation rows per tile that multiplies the codes */
#define DIRECT_ROWS 8 /* up to this many rows, tiles of MR rows multiply the codes */
#define MR_DECODED 6 /* rows per tile over built weights */

/* The 8 codes of column k8 + i of a block (k8 a multiple of 8), as floats; W4 takes the word
 * vector of columns k8..k8+7. */
static inline __attribute__((always_inline)) __m256 code(const int kind, const uint8_t *w, int64_t k8, int i,
                                                         __m256i word) {
    const int64_t k = k8 + i;
    if (kind == W4)
        return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(word, 4 * i), _mm256_set1_epi32(15)));
    if (kind == W8)
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(w + 8 * k))));
    __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(w + 8 * k)));
    __m128i mag = _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7F)), 7);
    __m128i sign = _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8);
    return _mm256_cvtph_ps(_mm_or_si128(mag, sign));
}

static inline __attribute__((always_inline)) __m256i word_at(const int kind, const uint8_t *w, int64_t k) {
    return kind == W4 ? _mm256_loadu_si256((const __m256i *)(w + 32 * (k / 8))) : _mm256_setzero_si256();
}

/* One block of 8 output columns for `mr` rows, from the codes; `u` independent sums per row,
 * so that a single row is not held to one FMA per FMA latency. xsum [mr][groups]: each row's
 * sum over each group. */
static inline __attribute__((always_inline)) void tile(const int kind, const int mr, const int u, const float *x,
                                                       int64_t K, const uint8_t *w, const float *scale,
                                                       const int32_t *off, int64_t group, const float *xsum,
                                                       float *y, int64_t N) {
    const int64_t groups = K / group;
    __m256 acc[MR];
    for (int m = 0; m < mr; m++) acc[m] = _mm256_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        __m256 part[MR][4];
        for (int m = 0; m < mr; m++)
            for (int j = 0; j < u; j++) part[m][j] = _mm256_setzero_ps();
        for (int64_t k8 = g * group; k8 < (g + 1) * group; k8 += 8) {
            const __m256i word = word_at(kind, w, k8);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                const __m256 c = code(kind, w, k8, i, word);
                for (int m = 0; m < mr; m++)
                    part[m][i % u] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + m * K + k8 + i), c, part[m][i % u]);
            }
        }
        const __m256 s = _mm256_loadu_ps(scale + 8 * g);
        const __m256 o = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(off + 8 * g)));
        for (int m = 0; m < mr; m++) {
            __m256 sum = part[m][0];
            for (int j = 1; j < u; j++) sum = _mm256_add_ps(sum, part[m][j]);
            if (kind != F8) sum = _mm256_fnmadd_ps(o, _mm256_set1_ps(xsum[m * groups + g]), sum);
            acc[m] = _mm256_fmadd_ps(s, sum, acc[m]);
        }
    }
    for (int m = 0; m < mr; m++) _mm256_storeu_ps(y + m * N, acc[m]);
}

/* Columns k8..k8+7 of a block's weights, built as the reference builds them: (c - o) * s. */
static inline __attribute__((always_inline)) void build8(const int kind, const uint8_t *w, int64_t k8, __m256 o,
                                                         __m256 s, __m256 c[8]) {
    const __m256i word = word_at(kind, w, k8);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) c[i] = _mm256_mul_ps(_mm256_sub_ps(code(kind, w, k8, i, word), o), s);
}

/* A block's weights [K][8], column after column. */
static inline __attribute__((always_inline)) void build_block(const int kind, const uint8_t *w, const float *scale,
                                                              const int32_t *off, int64_t K, int64_t group,
                                                              float *buf) {
    for (int64_t g = 0; g < K / group; g++) {
        const __m256 s = _mm256_loadu_ps(scale + 8 * g);
        const __m256 o = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(off + 8 * g)));
        for (int64_t k8 = g * group; k8 < (g + 1) * group; k8 += 8) {
            __m256 c[8];
            build8(kind, w, k8, o, s, c);
            for (int i = 0; i < 8; i++) _mm256_store_ps(buf + 8 * (k8 + i), c[i]);
        }
    }
}

static inline __attribute__((always_inline)) void tile_built(const int mr, const float *x, int64_t K,
                                                             const float *buf, float *y, int64_t N) {
    __m256 acc[MR_DECODED];
    for (int m = 0; m < mr; m++) acc[m] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const __m256 wv = _mm256_load_ps(buf + 8 * k);
        for (int m = 0; m < mr; m++) acc[m] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + m * K + k), wv, acc[m]);
    }
    for (int m = 0; m < mr; m++) _mm256_storeu_ps(y + m * N, acc[m]);
}

/* One block of 8 output columns for all M rows. */
static inline __attribute__((always_inline)) void block(const int kind, const float *x, int64_t M, int64_t K,
                                                        const uint8_t *w, const float *scale, const int32_t *off,
                                                        int64_t group, const float *xsum, float *buf, float *y,
                                                        int64_t N) {
    const int64_t groups = K / group;
    if (buf == NULL) {
        for (int64_t m = 0; m < M; m += MR) {
            const float *xm = x + m * K, *sm = xsum + m * groups;
            float *ym = y + m * N;
            switch (M - m < MR ? M - m : MR) {
            case 1: tile(kind, 1, 4, xm, K, w, scale, off, group, sm, ym, N); break;
            case 2: tile(kind, 2, 2, xm, K, w, scale, off, group, sm, ym, N); break;
            case 3: tile(kind, 3, 1, xm, K, w, scale, off, group, sm, ym, N); break;
            default: tile(kind, MR, 1, xm, K, w, scale, off, group, sm, ym, N); break;
            }
        }
        return;
    }
    build_block(kind, w, scale, off, K, group, buf);
    for (int64_t m = 0; m < M; m += MR_DECODED) {
        const float *xm = x + m * K;
        float *ym = y + m * N;
        switch (M - m < MR_DECODED ? M - m : MR_DECODED) {
        case 1: tile_built(1, xm, K, buf, ym, N); break;
        case 2: tile_built(2, xm, K, buf, ym, N); break;
        case 3: tile_built(3, xm, K, buf, ym, N); break;
        case 4: tile_built(4, xm, K, buf, ym, N); break;
        case 5: tile_built(5, xm, K, buf, ym, N); break;
        default: tile_built(MR_DECODED, xm, K, buf, ym, N); break;
        }
    }
}

static void group_sums(const float *x, int64_t M, int64_t K, int64_t group, float *xsum) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t g = 0; g < K / group; g++) {
            float s = 0.0f;
            for (int64_t k = g * group; k < (g + 1) * group; k++) s += x[m * K + k];
            xsum[m * (K / group) + g] = s;
        }
}

/* The float32 weight [N, K], row-major, built as the reference builds it: for many activation
 * rows (a prefill), multiplying it with a float32 GEMM library, which blocks over the rows and
 * keeps them in cache, beats streaming all of them past each block of 8 columns. Eight columns
 * of a block are built at once and transposed, so each row is written 8 floats at a time. */
static inline __attribute__((always_inline)) void dequant_block(const int kind, const uint8_t *w, const float *scale,
                                                                const int32_t *off, int64_t K, int64_t group,
                                                                float *out) {
    for (int64_t g = 0; g < K / group; g++) {
        const __m256 s = _mm256_loadu_ps(scale + 8 * g);
        const __m256 o = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(off + 8 * g)));
        for (int64_t k8 = g * group; k8 < (g + 1) * group; k8 += 8) {
            __m256 c[8];
            build8(kind, w, k8, o, s, c);
            /* c[i] holds column k8+i of rows 0..7: transpose to rows */
            __m256 t0 = _mm256_unpacklo_ps(c[0], c[1]), t1 = _mm256_unpackhi_ps(c[0], c[1]);
            __m256 t2 = _mm256_unpacklo_ps(c[2], c[3]), t3 = _mm256_unpackhi_ps(c[2], c[3]);
            __m256 t4 = _mm256_unpacklo_ps(c[4], c[5]), t5 = _mm256_unpackhi_ps(c[4], c[5]);
            __m256 t6 = _mm256_unpacklo_ps(c[6], c[7]), t7 = _mm256_unpackhi_ps(c[6], c[7]);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            _mm256_storeu_ps(out + 0 * K + k8, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(out + 1 * K + k8, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(out + 2 * K + k8, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(out + 3 * K + k8, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(out + 4 * K + k8, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(out + 5 * K + k8, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(out + 6 * K + k8, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(out + 7 * K + k8, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
}

#define DEQUANT(NAME, KIND)                                                                                    \
    void NAME(const uint8_t *w, const float *scale, const int32_t *off, int64_t N, int64_t K, int64_t group,  \
              float *out, int threads) {                                                                      \
        const int64_t groups = K / group, block_bytes = KIND == W4 ? 4 * K : 8 * K;                          \
        _Pragma("omp parallel for schedule(static) num_threads(threads)") for (int64_t b = 0; b < N / 8; b++) \
            dequant_block(KIND, w + b * block_bytes, scale + b * groups * 8, off + b * groups * 8, K, group,   \
                          out + 8 * b * K);                                                                   \
    }

DEQUANT(hub_dequant_w4, W4)
DEQUANT(hub_dequant_w8, W8)
DEQUANT(hub_dequant_f8, F8)

/* One entry point per kind, each with its own parallel region: OpenMP outlines a region before
 * inlining, so a region in a shared function would test the kind inside the inner loops. */
#define QGEMM(NAME, KIND)                                                                                      \
    void NAME(const float *x, int64_t M, int64_t K, const uint8_t *w, const float *scale, const int32_t *off, \
              int64_t N, int64_t group, float *y, int threads) {                                              \
        const int64_t groups = K / group, block_bytes = KIND == W4 ? 4 * K : 8 * K;                          \
        float xsum[DIRECT_ROWS * groups];                                                                     \
        if (M <= DIRECT_ROWS) group_sums(x, M, K, group, xsum);                                               \
        _Pragma("omp parallel num_threads(threads)") {                                                        \
            float *buf = M <= DIRECT_ROWS ? NULL : aligned_alloc(32, K * 8 * sizeof(float));                  \
            _Pragma("omp for schedule(static)") for (int64_t b = 0; b < N / 8; b++)                           \
                block(KIND, x, M, K, w + b * block_bytes, scale + b * groups * 8, off + b * groups * 8, group, \
                      xsum, buf, y + 8 * b, N);                                                               \
            free(buf);                                                                                        \
        }                                                                                                     \
    }

QGEMM(hub_qgemm_w4, W4)
QGEMM(hub_qgemm_w8, W8)
QGEMM(hub_qgemm_f8, F8)

/* x rounded to the nearest float8_e4m3fn (ties to even), for |x| <= 448: normals keep 3 of
 * float32's 23 mantissa bits; below 2^-6 the e4m3 steps are 2^-9 apart. */
static inline __m256 round_e4m3(__m256 x) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i even = _mm256_and_si256(_mm256_srli_epi32(u, 20), _mm256_set1_epi32(1));
    const __m256i up = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFFF), even));
    const __m256 normal = _mm256_castsi256_ps(_mm256_andnot_si256(_mm256_set1_epi32(0xFFFFF), up));
    const __m256 steps = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(512.0f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 sub = _mm256_mul_ps(steps, _mm256_set1_ps(1.0f / 512.0f));
    const __m256 abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    return _mm256_blendv_ps(normal, sub, _mm256_cmp_ps(abs, _mm256_set1_ps(1.0f / 64.0f), _CMP_LT_OQ));
}

static inline __m256 fake_quant8(__m256 x, __m256 scale, int fp8) {
    const float lo = fp8 ? -448.0f : -128.0f, hi = fp8 ? 448.0f : 127.0f;
    __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_div_ps(x, scale), _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
    v = fp8 ? round_e4m3(v) : _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_mul_ps(v, scale);
}

/* Each row of x [M, K] quantized to int8 (fp8 = 0) or float8_e4m3fn and back to float32, in
 * compressed-tensors' order of operations: scale = max|x| / half range (127.5 or 448; an
 * all-zero row takes FLT_EPSILON), then x / scale clamped and rounded to nearest even, times
 * scale. W8A8 and FP8 models were calibrated with these activations. */
void hub_fake_quant(const float *x, int64_t M, int64_t K, int fp8, float *out) {
    const int64_t body = K - K % 8;
    for (int64_t m = 0; m < M; m++) {
        const float *r = x + m * K;
        float *o = out + m * K, tail[8] = {0};
        for (int64_t k = body; k < K; k++) tail[k - body] = r[k];
        __m256 amax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(tail));
        for (int64_t k = 0; k < body; k += 8)
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(r + k)));
        float lanes[8], top = 0.0f;
        _mm256_storeu_ps(lanes, amax);
        for (int j = 0; j < 8; j++) top = lanes[j] > top ? lanes[j] : top;
        float s = top / (fp8 ? 448.0f : 127.5f);
        const __m256 scale = _mm256_set1_ps(s == 0.0f ? FLT_EPSILON : s);
        for (int64_t k = 0; k < body; k += 8) _mm256_storeu_ps(o + k, fake_quant8(_mm256_loadu_ps(r + k), scale, fp8));
        _mm256_storeu_ps(tail, fake_quant8(_mm256_loadu_ps(tail), scale, fp8));
        for (int64_t k = body; k < K; k++) o[k] = tail[k - body];
    }
}

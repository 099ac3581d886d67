/* Quantized GEMM for x86 CPUs with AVX2, FMA and F16C: y[M, N] = x[M, K] @ W[N, K]^T in float32,
 * reading W in its quantized form so that a decode step moves a quarter (int8, FP8) or an
 * eighth (int4) of the bytes a float32 weight needs; on the CPU, decoding is memory-bound.
 *
 * Weights are repacked once at load (kernels/cpu_native.py) into blocks of 8 output rows, so
 * that one k step of a block fills one 8-lane vector:
 *   W4: uint32 [N/8][K], nibble j of word (b, k) = the unsigned code of row 8b+j at column k;
 *   W8 / F8: uint8 [N/8][K][8], the unsigned int8 code or the float8_e4m3fn bits.
 * Scales are float32 [N/8][K/group][8] and integer offsets int32 [N/8][K/group][8] (the code
 * that means zero: 8 or 128 plus the zero point). A weight is (code - offset) * scale, computed
 * as the reference dequantizes it (one rounding), so only the order of the sums differs from a
 * float32 GEMM over the dequantized weight. FP8 codes become exact float32 through F16C: the
 * e4m3 bits shifted into a half float are the value times 2^-8 (subnormals included), and the
 * scale passed in carries the 2^8 back.
 *
 * Threads split the blocks of rows (OpenMP; the process's own runtime, torch's). */
#include <float.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

enum { W4 = 0, W8 = 1, F8 = 2 };
#define MR 4 /* activation rows per tile that decodes in registers */
#define DIRECT_ROWS 8 /* up to this many rows, each tile of MR rows decodes the weights itself */
#define MR_DECODED 6 /* rows per tile over decoded weights */

static inline __attribute__((always_inline)) __m256 decode(const int kind, const uint8_t *w, int64_t k, __m256i off,
                                                           __m256 scale) {
    __m256i v;
    if (kind == F8) {
        __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(w + 8 * k)));
        __m128i mag = _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7F)), 7);
        __m128i sign = _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8);
        return _mm256_mul_ps(_mm256_cvtph_ps(_mm_or_si128(mag, sign)), scale);
    }
    if (kind == W4) {
        v = _mm256_set1_epi32((int)((const uint32_t *)w)[k]);
        v = _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                             _mm256_set1_epi32(15));
    } else {
        v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w + 8 * k)));
    }
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, off)), scale);
}

/* One block of 8 output columns for `mr` rows; `u` independent sums per row along k, so that
 * a single row is not held to one FMA per FMA latency. */
static inline __attribute__((always_inline)) void tile(const int kind, const int mr, const int u, const float *x,
                                                       int64_t K, const uint8_t *w, const float *scale,
                                                       const int32_t *off, int64_t group, float *y, int64_t N) {
    __m256 acc[MR][4];
    for (int m = 0; m < mr; m++)
        for (int j = 0; j < u; j++) acc[m][j] = _mm256_setzero_ps();
    for (int64_t g = 0; g < K / group; g++) {
        const __m256 s = _mm256_loadu_ps(scale + 8 * g);
        const __m256i o = _mm256_loadu_si256((const __m256i *)(off + 8 * g));
        for (int64_t k = g * group; k < (g + 1) * group; k += u) {
            for (int j = 0; j < u; j++) {
                const __m256 wv = decode(kind, w, k + j, o, s);
                for (int m = 0; m < mr; m++)
                    acc[m][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + m * K + k + j), wv, acc[m][j]);
            }
        }
    }
    for (int m = 0; m < mr; m++) {
        __m256 sum = acc[m][0];
        for (int j = 1; j < u; j++) sum = _mm256_add_ps(sum, acc[m][j]);
        _mm256_storeu_ps(y + m * N, sum);
    }
}

/* Many rows: the block's weights are decoded once into `buf` [K][8] (it stays in L2), and each
 * group of `mr` rows then reads them from there, as a float32 GEMM would. */
static inline __attribute__((always_inline)) void decode_block(const int kind, const uint8_t *w, const float *scale,
                                                               const int32_t *off, int64_t K, int64_t group,
                                                               float *buf) {
    for (int64_t g = 0; g < K / group; g++) {
        const __m256 s = _mm256_loadu_ps(scale + 8 * g);
        const __m256i o = _mm256_loadu_si256((const __m256i *)(off + 8 * g));
        for (int64_t k = g * group; k < (g + 1) * group; k++) _mm256_store_ps(buf + 8 * k, decode(kind, w, k, o, s));
    }
}

static inline __attribute__((always_inline)) void tile_decoded(const int mr, const float *x, int64_t K,
                                                               const float *buf, float *y, int64_t N) {
    __m256 acc[MR_DECODED];
    for (int m = 0; m < mr; m++) acc[m] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const __m256 wv = _mm256_load_ps(buf + 8 * k);
        for (int m = 0; m < mr; m++) acc[m] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + m * K + k), wv, acc[m]);
    }
    for (int m = 0; m < mr; m++) _mm256_storeu_ps(y + m * N, acc[m]);
}

static inline __attribute__((always_inline)) void gemm(const int kind, const float *x, int64_t M, int64_t K,
                                                       const uint8_t *w, const float *scale, const int32_t *off,
                                                       int64_t N, int64_t group, float *y, int threads) {
    const int64_t blocks = N / 8, groups = K / group;
    const int64_t block_bytes = kind == W4 ? 4 * K : 8 * K;
#pragma omp parallel num_threads(threads)
    {
        float *buf = M > DIRECT_ROWS ? aligned_alloc(32, K * 8 * sizeof(float)) : NULL;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            const uint8_t *wb = w + b * block_bytes;
            const float *sb = scale + b * groups * 8;
            const int32_t *ob = off + b * groups * 8;
            if (buf == NULL) {
                for (int64_t m = 0; m < M; m += MR) {
                    const float *xm = x + m * K;
                    float *ym = y + m * N + 8 * b;
                    switch (M - m < MR ? M - m : MR) {
                    case 1: tile(kind, 1, 4, xm, K, wb, sb, ob, group, ym, N); break;
                    case 2: tile(kind, 2, 2, xm, K, wb, sb, ob, group, ym, N); break;
                    case 3: tile(kind, 3, 1, xm, K, wb, sb, ob, group, ym, N); break;
                    default: tile(kind, MR, 1, xm, K, wb, sb, ob, group, ym, N); break;
                    }
                }
                continue;
            }
            decode_block(kind, wb, sb, ob, K, group, buf);
            for (int64_t m = 0; m < M; m += MR_DECODED) {
                const float *xm = x + m * K;
                float *ym = y + m * N + 8 * b;
                switch (M - m < MR_DECODED ? M - m : MR_DECODED) {
                case 1: tile_decoded(1, xm, K, buf, ym, N); break;
                case 2: tile_decoded(2, xm, K, buf, ym, N); break;
                case 3: tile_decoded(3, xm, K, buf, ym, N); break;
                case 4: tile_decoded(4, xm, K, buf, ym, N); break;
                case 5: tile_decoded(5, xm, K, buf, ym, N); break;
                default: tile_decoded(MR_DECODED, xm, K, buf, ym, N); break;
                }
            }
        }
        free(buf);
    }
}

void hub_qgemm_w4(const float *x, int64_t M, int64_t K, const uint8_t *w, const float *scale, const int32_t *off,
                  int64_t N, int64_t group, float *y, int threads) {
    gemm(W4, x, M, K, w, scale, off, N, group, y, threads);
}

void hub_qgemm_w8(const float *x, int64_t M, int64_t K, const uint8_t *w, const float *scale, const int32_t *off,
                  int64_t N, int64_t group, float *y, int threads) {
    gemm(W8, x, M, K, w, scale, off, N, group, y, threads);
}

void hub_qgemm_f8(const float *x, int64_t M, int64_t K, const uint8_t *w, const float *scale, const int32_t *off,
                  int64_t N, int64_t group, float *y, int threads) {
    gemm(F8, x, M, K, w, scale, off, N, group, y, threads);
}


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

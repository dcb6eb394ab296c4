// bf16 x bf16 -> fp32 matrix products on Intel AMX or with AVX512-BF16, with an OpenBLAS fallback.
//
// Both fast paths share one packing: op(A) is packed into 16-row x 32-column bf16 tiles, op(B) into
// 32 x 16 tiles in the VNNI layout (row r holds the pairs (op(B)[2r][j], op(B)[2r+1][j]) for j = 0..15),
// both zero-padded to multiples of 32 rows and columns and of 32 in k. C is computed in 32 x 32 blocks.
// AMX: a block is four accumulator tiles that stay in the tile registers over the whole k loop (two A
// tiles, two B tiles, four TDPBF16PS per 32 k). AVX512-BF16: a block is four groups of 8 rows, each row's
// 32 columns two zmm accumulators; per k pair, two B rows are loaded and each A pair broadcast into two
// VDPBF16PS. Then C = alpha * block + beta * C.

#include "matmul_bf16.h"

#include <cblas.h>
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define TILE_BF16 512          // one 16 x 32 tile of bf16 (1 KiB)

// ---------------------------------------------------------------------------------------------------
// Per-thread packing buffers: grown on demand, reused by every later call on the thread.

typedef struct { void *data; size_t capacity; } Buffer;
typedef struct { Buffer a, b; } Scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    Scratch *s = p;
    free(s->a.data);
    free(s->b.data);
    free(s);
}

static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }

static Scratch *thread_scratch(void) {
    pthread_once(&scratch_once, scratch_init);
    Scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s) != 0) abort();
    }
    return s;
}

static void *reserve(Buffer *buffer, size_t bytes) {
    if (bytes > buffer->capacity) {
        free(buffer->data);
        size_t rounded = (bytes + 63) & ~(size_t)63;
        buffer->data = aligned_alloc(64, rounded);
        if (!buffer->data) abort();
        buffer->capacity = rounded;
    }
    return buffer->data;
}

// ---------------------------------------------------------------------------------------------------
// CPU support: AVX512-BF16 in CPUID with the OS saving zmm state; for AMX also AMX-TILE and AMX-BF16, and
// Linux's permission to use tile data.

static int best_kernel = XT_BF16_PORTABLE;
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

static void detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    int avx512 = (b >> 16) & (b >> 30) & 1;              // AVX512F, AVX512BW
    int amx = (d >> 22) & (d >> 24) & 1;                 // AMX-BF16, AMX-TILE
    unsigned a1, b1, c1, d1;
    if (!avx512 || !__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) || !((a1 >> 5) & 1)) return;  // AVX512-BF16
    if (!__get_cpuid(1, &a1, &b1, &c1, &d1) || !((c1 >> 27) & 1)) return;                      // OSXSAVE
    unsigned xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0xe6) != 0xe6) return;                // the OS saves xmm, ymm, opmask and zmm state
    best_kernel = XT_BF16_AVX512;
    if (amx && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0) best_kernel = XT_BF16_AMX;
}

int xt_bf16_best_kernel(void) {
    pthread_once(&detect_once, detect);
    return best_kernel;
}

// ---------------------------------------------------------------------------------------------------
// Packing (AVX-512 BF16), shared by both fast paths.

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

static inline int clamp16(int count) { return count < 0 ? 0 : count > 16 ? 16 : count; }

/// Up to 16 floats from p (count of them, the rest zero).
AVX512_TARGET static inline __m512 load16(const float *p, int count) {
    count = clamp16(count);
    return count == 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps((__mmask16)((1u << count) - 1), p);
}

/// 32 bf16 in order: lo's 16 floats, then hi's.
AVX512_TARGET static inline __m512i bf16_concat(__m512 lo, __m512 hi) {
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/// 16 32-bit lanes, lane j the bf16 pair (even[j], odd[j]).
AVX512_TARGET static inline __m512i bf16_pairs(__m512 even, __m512 odd) {
    static const short interleave[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                         8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(interleave), bf16_concat(even, odd));
}

/// Stores the 16 x 16 transpose of the 32-bit lanes of `rows` as 16 rows of 64 bytes at dst: 32-bit,
/// 64-bit, then 128-bit and 256-bit interleaves.
AVX512_TARGET static inline void store_transposed(__m512i r[16], uint16_t *dst) {
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 4; j++) {
            t[8 * i + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
            t[8 * i + 4 + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
        }
    }
    for (int j = 0; j < 8; j++) {
        _mm512_storeu_si512(dst + 32 * j, _mm512_shuffle_i32x4(t[j], t[8 + j], 0x88));
        _mm512_storeu_si512(dst + 32 * (8 + j), _mm512_shuffle_i32x4(t[j], t[8 + j], 0xdd));
    }
}

/// Packs strips first ..< first + count of op(A) (m, k) into tiles [strip][k block], each 16 rows of 32
/// bf16; rows and k blocks beyond m and k are zero.
AVX512_TARGET static void pack_a(int trans, int m, int k, const float *a, int lda, uint16_t *dst, int first, int count, int kblocks) {
    for (int s = first; s < first + count; s++) {
        for (int kb = 0; kb < kblocks; kb++) {
            uint16_t *tile = dst + ((size_t)(s - first) * kblocks + kb) * TILE_BF16;
            int i0 = s * 16, p0 = kb * 32;
            if (!trans) {   // row i of op(A) is row i of A
                for (int r = 0; r < 16; r++) {
                    int i = i0 + r;
                    __m512i row = _mm512_setzero_si512();
                    if (i < m) {
                        const float *src = a + (size_t)i * lda + p0;
                        row = bf16_concat(load16(src, k - p0), load16(src + 16, k - p0 - 16));
                    }
                    _mm512_storeu_si512(tile + r * 32, row);
                }
            } else {        // row i of op(A) is column i of A: pair rows p, p+1 of A, then transpose
                __m512i pairs[16];
                for (int t = 0; t < 16; t++) {
                    int p = p0 + 2 * t;
                    __m512 even = p < k ? load16(a + (size_t)p * lda + i0, m - i0) : _mm512_setzero_ps();
                    __m512 odd = p + 1 < k ? load16(a + (size_t)(p + 1) * lda + i0, m - i0) : _mm512_setzero_ps();
                    pairs[t] = bf16_pairs(even, odd);
                }
                store_transposed(pairs, tile);
            }
        }
    }
}

/// Packs op(B) (k, n) into VNNI tiles [panel][k block], each 16 rows of 16 bf16 pairs; panels and k
/// blocks beyond n and k are zero.
AVX512_TARGET static void pack_b(int trans, int k, int n, const float *b, int ldb, uint16_t *dst, int panels, int kblocks) {
    for (int q = 0; q < panels; q++) {
        for (int kb = 0; kb < kblocks; kb++) {
            uint16_t *tile = dst + ((size_t)q * kblocks + kb) * TILE_BF16;
            int j0 = q * 16, p0 = kb * 32;
            if (!trans) {   // row p of op(B) is row p of B: rows p, p+1 interleave into one tile row
                for (int t = 0; t < 16; t++) {
                    int p = p0 + 2 * t;
                    __m512 even = p < k ? load16(b + (size_t)p * ldb + j0, n - j0) : _mm512_setzero_ps();
                    __m512 odd = p + 1 < k ? load16(b + (size_t)(p + 1) * ldb + j0, n - j0) : _mm512_setzero_ps();
                    _mm512_storeu_si512(tile + t * 32, bf16_pairs(even, odd));
                }
            } else {        // column j of op(B) is row j of B: its 32 k values are 16 pairs, then transpose
                __m512i columns[16];
                for (int c = 0; c < 16; c++) {
                    int j = j0 + c;
                    columns[c] = _mm512_setzero_si512();
                    if (j < n) {
                        const float *src = b + (size_t)j * ldb + p0;
                        columns[c] = bf16_concat(load16(src, k - p0), load16(src + 16, k - p0 - 16));
                    }
                }
                store_transposed(columns, tile);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The tile loop.

#define AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16,amx-tile,amx-bf16")))

typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} TileConfig;

/// Eight tiles of 16 rows x 64 bytes: 0-3 accumulators, 4-5 A, 6-7 B.
AMX_TARGET static void configure_tiles(void) {
    TileConfig config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.rows[t] = 16;
        config.bytes_per_row[t] = 64;
    }
    _tile_loadconfig(&config);
}

/// Back to the initial tile state, which a context switch need not save.
AMX_TARGET static void release_tiles(void) { _tile_release(); }

/// c[0..<rows, 0..<cols] = alpha * block + beta * c, block a 32 x 32 float array.
AVX512_TARGET static inline void write_block(const float *block, int rows, int cols, float alpha, float beta, float *c, int ldc) {
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int r = 0; r < rows; r++) {
        for (int h = 0; h < 2; h++) {
            int count = clamp16(cols - 16 * h);
            if (count == 0) break;
            __mmask16 mask = (__mmask16)((1u << count) - 1);
            float *dst = c + (size_t)r * ldc + 16 * h;
            __m512 v = _mm512_mul_ps(va, _mm512_load_ps(block + r * 32 + 16 * h));
            if (beta != 0) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, dst), v);
            _mm512_mask_storeu_ps(dst, mask, v);
        }
    }
}

/// block (32 x 32) = c[0..<rows, 0..<cols], zero elsewhere; ldc = 0 repeats one row.
AVX512_TARGET static inline void read_block(float *block, int rows, int cols, const float *c, int ldc) {
    memset(block, 0, 32 * 32 * sizeof(float));
    for (int r = 0; r < rows; r++) memcpy(block + r * 32, c + (size_t)r * ldc, cols * sizeof(float));
}

/// c[0..<rows, 0..<cols] = the same part of block (32 x 32).
AVX512_TARGET static inline void copy_block(const float *block, int rows, int cols, float *c, int ldc) {
    for (int r = 0; r < rows; r++) memcpy(c + (size_t)r * ldc, block + r * 32, cols * sizeof(float));
}

/// C's part of a finished block: copied back with `direct`, else C = alpha * block + beta * C.
AVX512_TARGET static inline void finish_block(const float *block, int rows, int cols, int direct, float alpha, float beta,
                                              float *cblock, int ldc) {
    if (direct)
        copy_block(block, rows, cols, cblock, ldc);
    else
        write_block(block, rows, cols, alpha, beta, cblock, ldc);
}

/// One 32 x 32 block of C on the tile unit. With `direct`, the accumulators start from `sblock` (or zero)
/// and go back to C (straight from the tiles for whole blocks, through `block` at the edges); otherwise
/// they start from zero and C = alpha * block + beta * C.
AMX_TARGET static void amx_block(const uint16_t *a0, const uint16_t *a1, const uint16_t *b0, const uint16_t *b1, int kblocks,
                                 int rows, int cols, int direct, const float *sblock, int start_ld,
                                 float alpha, float beta, float *cblock, int ldc, float *block) {
    int full = rows == 32 && cols == 32;
    if (direct && sblock && full) {
        _tile_loadd(0, sblock, start_ld * 4);
        _tile_loadd(1, sblock + 16, start_ld * 4);
        _tile_loadd(2, sblock + 16 * (size_t)start_ld, start_ld * 4);
        _tile_loadd(3, sblock + 16 * (size_t)start_ld + 16, start_ld * 4);
    } else if (direct && sblock) {
        read_block(block, rows, cols, sblock, start_ld);
        _tile_loadd(0, block, 128);
        _tile_loadd(1, block + 16, 128);
        _tile_loadd(2, block + 16 * 32, 128);
        _tile_loadd(3, block + 16 * 32 + 16, 128);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int kb = 0; kb < kblocks; kb++) {
        _tile_loadd(4, a0 + (size_t)kb * TILE_BF16, 64);
        _tile_loadd(5, a1 + (size_t)kb * TILE_BF16, 64);
        _tile_loadd(6, b0 + (size_t)kb * TILE_BF16, 64);
        _tile_loadd(7, b1 + (size_t)kb * TILE_BF16, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    if (direct && full) {
        _tile_stored(0, cblock, ldc * 4);
        _tile_stored(1, cblock + 16, ldc * 4);
        _tile_stored(2, cblock + 16 * (size_t)ldc, ldc * 4);
        _tile_stored(3, cblock + 16 * (size_t)ldc + 16, ldc * 4);
        return;
    }
    _tile_stored(0, block, 128);
    _tile_stored(1, block + 16, 128);
    _tile_stored(2, block + 16 * 32, 128);
    _tile_stored(3, block + 16 * 32 + 16, 128);
    finish_block(block, rows, cols, direct, alpha, beta, cblock, ldc);
}

/// The same block with AVX512-BF16, through `block`: four groups of 8 rows, each row's 32 columns in two
/// accumulators over the whole k loop.
AVX512_TARGET static void avx512_block(const uint16_t *a0, const uint16_t *a1, const uint16_t *b0, const uint16_t *b1, int kblocks,
                                     int rows, int cols, int direct, const float *sblock, int start_ld,
                                     float alpha, float beta, float *cblock, int ldc, float *block) {
    if (direct && sblock)
        read_block(block, rows, cols, sblock, start_ld);
    else
        memset(block, 0, 32 * 32 * sizeof(float));
    for (int g = 0; g < 4; g++) {
        if (8 * g >= rows) break;
        const uint16_t *a = (g < 2 ? a0 : a1) + (g % 2) * 8 * 32;   // 8 rows of 32 bf16 in each k block
        float *out = block + 8 * g * 32;
        __m512 acc[8][2];
        for (int r = 0; r < 8; r++) {
            acc[r][0] = _mm512_load_ps(out + r * 32);
            acc[r][1] = _mm512_load_ps(out + r * 32 + 16);
        }
        for (int kb = 0; kb < kblocks; kb++) {
            const uint16_t *ak = a + (size_t)kb * TILE_BF16, *bk0 = b0 + (size_t)kb * TILE_BF16, *bk1 = b1 + (size_t)kb * TILE_BF16;
            for (int t = 0; t < 16; t++) {   // k pair t: B row t, the A pairs at column 2t
                __m512bh v0 = (__m512bh)_mm512_load_si512(bk0 + 32 * t), v1 = (__m512bh)_mm512_load_si512(bk1 + 32 * t);
                for (int r = 0; r < 8; r++) {
                    int32_t pair;
                    memcpy(&pair, ak + r * 32 + 2 * t, sizeof pair);
                    __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
                    acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, v0);
                    acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, v1);
                }
            }
        }
        for (int r = 0; r < 8; r++) {
            _mm512_store_ps(out + r * 32, acc[r][0]);
            _mm512_store_ps(out + r * 32 + 16, acc[r][1]);
        }
    }
    finish_block(block, rows, cols, direct, alpha, beta, cblock, ldc);
}

/// C = alpha * op(A) op(B) + beta * C on packed operands, block by block with `kernel` (AMX or AVX512).
/// With a bias (alpha 1, beta 0), C = op(A) op(B) + bias in each row: the accumulators start from it.
static void packed_gemm(int kernel, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, const float *bias, float *c, int ldc) {
    int strips = (m + 31) / 32 * 2, panels = (n + 31) / 32 * 2, kblocks = (k + 31) / 32;
    // B panels in groups of at most 1 MiB, so that a group stays in L2 while the strips of A pass over it.
    // With one group, each pair of A strips is packed just before its use; with more, A is packed once.
    int group = (1024 * 1024) / (kblocks * TILE_BF16 * 2);
    group = group < 2 ? 2 : group & ~1;
    int pack_a_once = panels > group;
    Scratch *scratch = thread_scratch();
    uint16_t *pa = reserve(&scratch->a, (size_t)(pack_a_once ? strips : 2) * kblocks * TILE_BF16 * sizeof(uint16_t));
    uint16_t *pb = reserve(&scratch->b, (size_t)panels * kblocks * TILE_BF16 * sizeof(uint16_t));
    pack_b(trans_b, k, n, b, ldb, pb, panels, kblocks);
    if (pack_a_once) pack_a(trans_a, m, k, a, lda, pa, 0, strips, kblocks);
    if (kernel == XT_BF16_AMX) configure_tiles();

    float block[32 * 32] __attribute__((aligned(64)));
    // With alpha = 1 and beta = 0 or 1 the accumulators start from zero, from C or from the bias, and go
    // straight back to C (through `block` only at the edges on AMX, so every element sees the same
    // arithmetic); otherwise they start from zero and C = alpha * block + beta * C.
    int direct = alpha == 1 && (beta == 0 || beta == 1);
    // The rows the accumulators start from, and their stride (0: the bias, the same row for all).
    const float *start = bias ? bias : beta != 0 ? c : NULL;
    int start_ld = bias ? 0 : ldc;
    for (int q0 = 0; q0 < panels; q0 += group) {
        int q1 = q0 + group < panels ? q0 + group : panels;
        for (int s = 0; s < strips; s += 2) {
            if (!pack_a_once) pack_a(trans_a, m, k, a, lda, pa, s, 2, kblocks);
            const uint16_t *a0 = pack_a_once ? pa + (size_t)s * kblocks * TILE_BF16 : pa, *a1 = a0 + (size_t)kblocks * TILE_BF16;
            for (int q = q0; q < q1; q += 2) {
                const uint16_t *b0 = pb + (size_t)q * kblocks * TILE_BF16, *b1 = b0 + (size_t)kblocks * TILE_BF16;
                int i0 = s * 16, j0 = q * 16;
                int rows = m - i0 < 32 ? m - i0 : 32, cols = n - j0 < 32 ? n - j0 : 32;
                float *cblock = c + (size_t)i0 * ldc + j0;
                const float *sblock = start ? start + (size_t)i0 * start_ld + j0 : NULL;
                (kernel == XT_BF16_AMX ? amx_block : avx512_block)(a0, a1, b0, b1, kblocks, rows, cols, direct, sblock, start_ld,
                                                                  alpha, beta, cblock, ldc, block);
            }
        }
    }
    if (kernel == XT_BF16_AMX) release_tiles();
}

// ---------------------------------------------------------------------------------------------------
// Portable path: operands rounded into float32 copies, then sgemm.

/// Round to nearest even, without a branch so that loops over it vectorize; NaN stays NaN.
static inline uint32_t round_bits(uint32_t u) {
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    return (u & 0x7fffffffu) > 0x7f800000u ? u : rounded;
}

float xt_round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u = round_bits(u);
    memcpy(&x, &u, sizeof x);
    return x;
}

/// src (rows, cols), row stride ld, rounded to bf16 into dst with its rows packed. The copy keeps the
/// layout as stored, and sgemm applies the caller's transposes to it, so src is read row by row, in order.
static void round_copy(int rows, int cols, const float *src, int ld, float *dst) {
    for (int r = 0; r < rows; r++) {
        const float *from = src + (size_t)r * ld;
        float *to = dst + (size_t)r * cols;
        for (int c = 0; c < cols; c++) {
            uint32_t u;
            memcpy(&u, from + c, sizeof u);
            u = round_bits(u);
            memcpy(to + c, &u, sizeof u);
        }
    }
}

static void portable_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                          const float *b, int ldb, float beta, float *c, int ldc) {
    Scratch *scratch = thread_scratch();
    // As stored: A is (m, k), or (k, m) when transposed; B is (k, n), or (n, k).
    int a_rows = trans_a ? k : m, a_cols = trans_a ? m : k, b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    float *ra = reserve(&scratch->a, (size_t)m * k * sizeof(float));
    float *rb = reserve(&scratch->b, (size_t)k * n * sizeof(float));
    round_copy(a_rows, a_cols, a, lda, ra);
    round_copy(b_rows, b_cols, b, ldb, rb);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, ra, a_cols, rb, b_cols, beta, c, ldc);
}

/// The kernel asked for, or the best one this CPU has if that is slower (the portable one for anything
/// below it).
static int chosen(int kernel) {
    int best = xt_bf16_best_kernel();
    if (kernel <= XT_BF16_PORTABLE) return XT_BF16_PORTABLE;
    return kernel < best ? kernel : best;
}

void xt_gemm_bf16(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc, int kernel) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {   // an empty sum: C = beta * C
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * c[(size_t)i * ldc + j];
        return;
    }
    kernel = chosen(kernel);
    if (kernel != XT_BF16_PORTABLE)
        packed_gemm(kernel, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, NULL, c, ldc);
    else
        portable_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void xt_gemm_bf16_bias(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                       const float *bias, float *c, int ldc, int kernel) {
    if (m <= 0 || n <= 0) return;
    kernel = chosen(kernel);
    if (k > 0 && kernel != XT_BF16_PORTABLE) {
        packed_gemm(kernel, trans_a, trans_b, m, n, k, 1, a, lda, b, ldb, 0, bias, c, ldc);
        return;
    }
    for (int i = 0; i < m; i++) memcpy(c + (size_t)i * ldc, bias, n * sizeof(float));
    xt_gemm_bf16(trans_a, trans_b, m, n, k, 1, a, lda, b, ldb, 1, c, ldc, kernel);
}

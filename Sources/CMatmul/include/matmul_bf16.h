#ifndef XTRAIN_MATMUL_BF16_H
#define XTRAIN_MATMUL_BF16_H

// Matrix products with bfloat16 operands and float32 accumulation (mixed precision), row-major like
// cblas_sgemm: C = alpha * op(A) op(B) + beta * C, op(A) (m, k), op(B) (k, n), C (m, n). Each operand
// element is rounded to bf16 (nearest, ties to even) and every product is summed in float32.
//
// Three kernels: AMX tiles (Intel Sapphire Rapids and later), AVX512-BF16 dot products (AMD Zen 4,
// Intel Cooper Lake and later), and elsewhere the operands rounded into float32 copies and multiplied by
// OpenBLAS's sgemm. On the first two one C element depends only on its row of op(A), its column of op(B),
// k, alpha and beta, never on m, n or the thread: results are bit-identical however the rows are split
// (but differ between the two kernels in the last bits). Packing buffers are per thread and only grow.

#include <stdint.h>

/// The kernels, slower to faster.
enum { XT_BF16_PORTABLE = 0, XT_BF16_AVX512 = 1, XT_BF16_AMX = 2 };

/// The fastest kernel this CPU and OS allow (AMX needs AMX-BF16 and Linux's grant of tile data).
int xt_bf16_best_kernel(void);

/// C = alpha * op(A) op(B) + beta * C with bf16 operands; with beta == 0, C is not read. `kernel` is the
/// fastest kernel to use: the best one with XT_BF16_AMX, a slower one on purpose (for tests) with less.
void xt_gemm_bf16(int trans_a, int trans_b, int m, int n, int k,
                  float alpha, const float *a, int lda, const float *b, int ldb,
                  float beta, float *c, int ldc, int kernel);

/// C = op(A) op(B) + bias, the bias (n) added to every row of C, which is not read: on AMX and
/// AVX512-BF16 the accumulators start from the bias, so the result equals C filled with it and `xt_gemm_bf16` with beta 1.
void xt_gemm_bf16_bias(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                       const float *bias, float *c, int ldc, int kernel);

/// x rounded to bfloat16 (nearest, ties to even) and back to float32.
float xt_round_bf16(float x);

#endif

import CBLAS
import CMatmul

/// The arithmetic of every matrix product: float32 throughout, or bfloat16 operands with float32
/// accumulation (mixed precision, on the fastest kernel the CPU has, see `Matmul.bf16Kernel`).
public enum MatmulPrecision: String, Sendable, CaseIterable {
    case fp32, bf16
}

public enum Matmul {
    /// The precision `gemm` uses; set it before training, not while kernels run.
    nonisolated(unsafe) public static var precision = MatmulPrecision.fp32

    /// Where bf16 products run: AMX tiles, AVX512-BF16 dot products, or OpenBLAS on rounded copies of
    /// the operands (slower than fp32).
    public static var bf16Kernel: String { ["OpenBLAS (no AVX512-BF16)", "AVX512-BF16", "AMX"][Int(xt_bf16_best_kernel())] }

    /// Whether this CPU multiplies bf16 in hardware (AMX or AVX512-BF16); without it bf16 is slower than fp32.
    public static var hasBF16Hardware: Bool { xt_bf16_best_kernel() > 0 }
}

/// `C = alpha * op(A) * op(B) + beta * C` in row-major layout, one call on the calling thread: OpenBLAS's
/// sgemm, or the bf16 kernel when `Matmul.precision` is `.bf16`.
/// op(A) is (m, k), op(B) is (k, n), C is (m, n); `lda`, `ldb`, `ldc` are the row strides as stored.
@inlinable
public func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    guard m > 0, n > 0 else { return }
    if Matmul.precision == .bf16 {
        xt_gemm_bf16(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                     beta, c, Int32(ldc), Int32(XT_BF16_AMX))
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// `C = op(A) * op(B) + bias`, the bias (n) added to every row of C; C is not read. One call on the
/// calling thread. With bf16 on AMX or AVX512-BF16 the bias is where the accumulators start.
@inlinable
public func gemmAddingBias(
    transB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    bias: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    guard m > 0, n > 0 else { return }
    if Matmul.precision == .bf16 {
        xt_gemm_bf16_bias(0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb), bias, c, Int32(ldc), Int32(XT_BF16_AMX))
        return
    }
    for r in 0 ..< m { (c + r * ldc).update(from: bias, count: n) }
    gemm(transA: false, transB: transB, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 1, c: c, ldc: ldc)
}

/// `gemm` with C split over `Parallel.threads` (each chunk a single-threaded call): by rows when op(B) is
/// the smaller operand, else by columns, since every chunk packs the whole of the operand it does not split.
/// The split depends only on the sizes, and each element's arithmetic does not depend on where a chunk
/// starts, so results are bit-identical run after run.
public func parallelGemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    // About a million multiply-adds per chunk before a second thread pays for itself.
    if n > m {
        Parallel.chunks(n, grain: max(1, (1 << 20) / max(1, m * k))) { columns in
            // Column j of op(B) is column j of B, or row j of B when transposed.
            let bColumns = transB ? b + columns.lowerBound * ldb : b + columns.lowerBound
            gemm(transA: transA, transB: transB, m: m, n: columns.count, k: k,
                 alpha: alpha, a: a, lda: lda, b: bColumns, ldb: ldb,
                 beta: beta, c: c + columns.lowerBound, ldc: ldc)
        }
        return
    }
    Parallel.chunks(m, grain: max(1, (1 << 20) / max(1, n * k))) { rows in
        // Row r of op(A) is row r of A, or column r of A when transposed.
        let aRows = transA ? a + rows.lowerBound : a + rows.lowerBound * lda
        gemm(transA: transA, transB: transB, m: rows.count, n: n, k: k,
             alpha: alpha, a: aRows, lda: lda, b: b, ldb: ldb,
             beta: beta, c: c + rows.lowerBound * ldc, ldc: ldc)
    }
}

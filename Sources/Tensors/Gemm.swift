import CBLAS

/// `C = alpha * op(A) * op(B) + beta * C` in row-major layout, one OpenBLAS call on the calling thread.
/// op(A) is (m, k), op(B) is (k, n), C is (m, n); `lda`, `ldb`, `ldc` are the row strides as stored.
@inlinable
public func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    guard m > 0, n > 0 else { return }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// `gemm` with the rows of C split over `Parallel.threads` (each chunk a single-threaded BLAS call).
/// The split depends only on the sizes, so results are bit-identical run after run.
public func parallelGemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    // About a million multiply-adds per chunk before a second thread pays for itself.
    let grain = max(1, (1 << 20) / max(1, n * k))
    Parallel.chunks(m, grain: grain) { rows in
        // Row r of op(A) is row r of A, or column r of A when transposed.
        let aRows = transA ? a + rows.lowerBound : a + rows.lowerBound * lda
        gemm(transA: transA, transB: transB, m: rows.count, n: n, k: k,
             alpha: alpha, a: aRows, lda: lda, b: b, ldb: ldb,
             beta: beta, c: c + rows.lowerBound * ldc, ldc: ldc)
    }
}

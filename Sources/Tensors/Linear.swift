/// Linear layer `y = x W^T + b`, the weight stored [out, in] as PyTorch and Hugging Face store it.

/// out is (N, OC), inp is (N, C), weight is (OC, C), bias is (OC) or nil. N is every leading dimension.
public func linearForward(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor?) {
    let n = inp.rows, c = inp.columns, oc = weight.shape[0]
    weight.expect([oc, c], "linearForward weight")
    precondition(out.rows == n && out.columns == oc, "linearForward: out \(out.shape) does not fit inp \(inp.shape) and weight \(weight.shape)")
    if let bias { bias.expect([oc], "linearForward bias") }
    let grain = max(1, (1 << 20) / max(1, c * oc))
    Parallel.chunks(n, grain: grain) { rows in
        // Start each output row from the bias, then let the GEMM accumulate onto it (beta = 1).
        let o = out.data + rows.lowerBound * oc
        if let bias {
            for r in 0 ..< rows.count { (o + r * oc).update(from: bias.data, count: oc) }
        }
        gemm(transA: false, transB: true, m: rows.count, n: oc, k: c,
             alpha: 1, a: inp.data + rows.lowerBound * c, lda: c, b: weight.data, ldb: c,
             beta: bias == nil ? 0 : 1, c: o, ldc: oc)
    }
}

/// Accumulates dinp (N, C) += dout W, dweight (OC, C) += dout^T inp, dbias (OC) += sum over rows of dout.
/// A nil gradient is not computed (a frozen weight, or an input nothing upstream needs).
public func linearBackward(dinp: Tensor?, dweight: Tensor?, dbias: Tensor?, dout: Tensor, inp: Tensor, weight: Tensor) {
    let n = inp.rows, c = inp.columns, oc = weight.shape[0]
    weight.expect([oc, c], "linearBackward weight")
    precondition(dout.rows == n && dout.columns == oc, "linearBackward: dout \(dout.shape) does not fit inp \(inp.shape) and weight \(weight.shape)")
    if let dinp {
        dinp.expectSameShape(inp, "linearBackward dinp vs inp")
        parallelGemm(transA: false, transB: false, m: n, n: c, k: oc,
                     alpha: 1, a: dout.data, lda: oc, b: weight.data, ldb: c, beta: 1, c: dinp.data, ldc: c)
    }
    if let dweight {
        dweight.expectSameShape(weight, "linearBackward dweight vs weight")
        parallelGemm(transA: true, transB: false, m: oc, n: c, k: n,
                     alpha: 1, a: dout.data, lda: oc, b: inp.data, ldb: c, beta: 1, c: dweight.data, ldc: c)
    }
    if let dbias {
        dbias.expect([oc], "linearBackward dbias")
        sumRows(into: dbias.data, dout.data, rows: n, columns: oc)
    }
}

/// acc (C) += sum over the N rows of x (N, C), each thread owning a block of columns so that every sum
/// runs over the rows in order.
func sumRows(into acc: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows n: Int, columns c: Int) {
    Parallel.chunks(c, grain: max(16, (1 << 16) / max(1, n))) { cols in
        for r in 0 ..< n {
            let row = x + r * c
            for j in cols { acc[j] += row[j] }
        }
    }
}

/// Linear layer `y = x W^T + b`, the weight stored [out, in] as PyTorch and Hugging Face store it.

/// out is (N, OC), inp is (N, C), weight is (OC, C), bias is (OC) or nil. N is every leading dimension.
public func linearForward(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor?) {
    let n = inp.rows, c = inp.columns, oc = weight.shape[0]
    weight.expect([oc, c], "linearForward weight")
    precondition(out.rows == n && out.columns == oc, "linearForward: out \(out.shape) does not fit inp \(inp.shape) and weight \(weight.shape)")
    if let bias { bias.expect([oc], "linearForward bias") }
    let grain = max(1, (1 << 20) / max(1, c * oc))
    Parallel.chunks(n, grain: grain) { rows in
        let (o, x) = (out.data + rows.lowerBound * oc, inp.data + rows.lowerBound * c)
        if let bias {
            gemmAddingBias(transB: true, m: rows.count, n: oc, k: c, a: x, lda: c, b: weight.data, ldb: c, bias: bias.data, c: o, ldc: oc)
        } else {
            gemm(transA: false, transB: true, m: rows.count, n: oc, k: c, alpha: 1, a: x, lda: c, b: weight.data, ldb: c, beta: 0, c: o, ldc: oc)
        }
    }
}

/// Accumulates dinp (N, C) += dout W, dweight (OC, C) += dout^T inp, dbias (OC) += sum over rows of dout;
/// with `overwrite`, dinp = dout W (its old contents are not read). A nil gradient is not computed (a
/// frozen weight, or an input nothing upstream needs).
public func linearBackward(dinp: Tensor?, dweight: Tensor?, dbias: Tensor?, dout: Tensor, inp: Tensor, weight: Tensor, overwrite: Bool = false) {
    let n = inp.rows, c = inp.columns, oc = weight.shape[0]
    weight.expect([oc, c], "linearBackward weight")
    precondition(dout.rows == n && dout.columns == oc, "linearBackward: dout \(dout.shape) does not fit inp \(inp.shape) and weight \(weight.shape)")
    if let dinp {
        dinp.expectSameShape(inp, "linearBackward dinp vs inp")
        parallelGemm(transA: false, transB: false, m: n, n: c, k: oc,
                     alpha: 1, a: dout.data, lda: oc, b: weight.data, ldb: c, beta: overwrite ? 0 : 1, c: dinp.data, ldc: c)
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

/// The low-rank update of a LoRA-adapted linear layer: out (N, OC) += scale * h A^T B^T, with
/// h (N, C) the (dropped-out) input, A (R, C), B (OC, R); u (N, R) = h A^T is kept for backward.
public func loraForward(out: Tensor, u: Tensor, h: Tensor, a: Tensor, b: Tensor, scale: Float) {
    let n = h.rows, c = h.columns, r = a.shape[0], oc = b.shape[0]
    a.expect([r, c], "loraForward A")
    b.expect([oc, r], "loraForward B")
    u.expect([n, r], "loraForward u")
    precondition(out.rows == n && out.columns == oc, "loraForward: out \(out.shape) does not fit h \(h.shape) and B \(b.shape)")
    parallelGemm(transA: false, transB: true, m: n, n: r, k: c, alpha: 1, a: h.data, lda: c, b: a.data, ldb: c, beta: 0, c: u.data, ldc: r)
    parallelGemm(transA: false, transB: true, m: n, n: oc, k: r, alpha: scale, a: u.data, lda: r, b: b.data, ldb: r, beta: 1, c: out.data, ldc: oc)
}

/// Accumulates dB (OC, R) += scale * dout^T u, dA (R, C) += du^T h and dh (N, C) += du A (with
/// `overwrite`, dh = du A), where du (N, R) = scale * dout B is written into `du`. A nil gradient is skipped.
public func loraBackward(dh: Tensor?, da: Tensor?, db: Tensor?, du: Tensor, dout: Tensor, u: Tensor, h: Tensor, a: Tensor, b: Tensor, scale: Float,
                         overwrite: Bool = false) {
    let n = h.rows, c = h.columns, r = a.shape[0], oc = b.shape[0]
    du.expect([n, r], "loraBackward du")
    precondition(dout.rows == n && dout.columns == oc, "loraBackward: dout \(dout.shape) does not fit h \(h.shape) and B \(b.shape)")
    if let db {
        db.expectSameShape(b, "loraBackward dB vs B")
        parallelGemm(transA: true, transB: false, m: oc, n: r, k: n, alpha: scale, a: dout.data, lda: oc, b: u.data, ldb: r, beta: 1, c: db.data, ldc: r)
    }
    parallelGemm(transA: false, transB: false, m: n, n: r, k: oc, alpha: scale, a: dout.data, lda: oc, b: b.data, ldb: r, beta: 0, c: du.data, ldc: r)
    if let da {
        da.expectSameShape(a, "loraBackward dA vs A")
        parallelGemm(transA: true, transB: false, m: r, n: c, k: n, alpha: 1, a: du.data, lda: r, b: h.data, ldb: c, beta: 1, c: da.data, ldc: c)
    }
    if let dh {
        precondition(dh.rows == n && dh.columns == c, "loraBackward: dh \(dh.shape) does not fit h \(h.shape)")
        parallelGemm(transA: false, transB: false, m: n, n: c, k: r, alpha: 1, a: du.data, lda: r, b: a.data, ldb: c, beta: overwrite ? 0 : 1,
                     c: dh.data, ldc: c)
    }
}

/// Scaled dot-product attention with heads, for self- and cross-attention, with causal and key-padding
/// masks. Each (batch, head) pair is two GEMMs forward and four backward, run on the heads' strided
/// columns in place (no transposes or copies), pairs spread over the threads.

/// Where an operand's heads live: columns `column ..< column + heads * headDim` of each row of a
/// (B, T, width) tensor. A fused qkv projection output (B, T, 3D) gives q, k and v at columns 0, D, 2D.
public struct HeadSlice {
    public let tensor: Tensor
    public let column: Int

    public init(_ tensor: Tensor, column: Int = 0) {
        self.tensor = tensor
        self.column = column
    }

    var stride: Int { tensor.columns }

    /// The first element of head `h` at time 0 of batch `b`, for sequences of length `length`.
    func base(batch b: Int, head h: Int, length: Int, headDim: Int) -> UnsafeMutablePointer<Float> {
        tensor.data + b * length * stride + column + h * headDim
    }

    func check(_ name: String, batch: Int, length: Int, width: Int) {
        precondition(tensor.rank == 3 && tensor.shape[0] == batch && tensor.shape[1] == length && column >= 0 && column + width <= tensor.shape[2],
                     "attention \(name): columns \(column)..<\(column + width) of a (\(batch), \(length), _) tensor expected, got shape \(tensor.shape)")
    }
}

/// The sizes of one attention call.
public struct AttentionShape: Sendable {
    public var batch: Int
    public var queryLength: Int
    public var keyLength: Int
    public var heads: Int
    public var headDim: Int
    /// Query i sees key j only if j <= i + (keyLength - queryLength): queries are the last positions.
    public var causal: Bool
    public var scale: Float

    public init(batch: Int, queryLength: Int, keyLength: Int, heads: Int, headDim: Int, causal: Bool, scale: Float? = nil) {
        self.batch = batch
        self.queryLength = queryLength
        self.keyLength = keyLength
        self.heads = heads
        self.headDim = headDim
        self.causal = causal
        self.scale = scale ?? 1 / Float(headDim).squareRoot()
    }

    /// Elements of the per-thread scratch `attentionBackward` needs.
    public var backwardScratchCount: Int { Parallel.threads * queryLength * keyLength }

    /// The number of keys query `i` may see before the key-padding mask.
    func visibleKeys(_ i: Int) -> Int { causal ? max(0, min(keyLength, i + keyLength - queryLength + 1)) : keyLength }
}

/// out (B, Tq, H*d) = softmax(scale * q k^T, masked) v for every batch and head; probs (B, H, Tq, Tk)
/// keeps the weights for backward. keyMask (B, Tk) holds 1 for keys that may be attended and 0 for
/// padding. A query with no visible key gets zero weights and a zero output.
public func attentionForward(out: Tensor, probs: Tensor, q: HeadSlice, k: HeadSlice, v: HeadSlice, keyMask: Tensor?, shape s: AttentionShape) {
    let (tq, tk, d, h) = (s.queryLength, s.keyLength, s.headDim, s.heads)
    q.check("q", batch: s.batch, length: tq, width: h * d)
    k.check("k", batch: s.batch, length: tk, width: h * d)
    v.check("v", batch: s.batch, length: tk, width: h * d)
    out.expect([s.batch, tq, h * d], "attentionForward out")
    probs.expect([s.batch, h, tq, tk], "attentionForward probs")
    if let keyMask { keyMask.expect([s.batch, tk], "attentionForward keyMask") }
    Parallel.chunks(s.batch * h, grain: 1) { pairs in
        for pair in pairs {
            let b = pair / h, head = pair % h
            let p = probs.data + pair * tq * tk
            let qp = q.base(batch: b, head: head, length: tq, headDim: d)
            let kp = k.base(batch: b, head: head, length: tk, headDim: d)
            let vp = v.base(batch: b, head: head, length: tk, headDim: d)
            gemm(transA: false, transB: true, m: tq, n: tk, k: d,
                 alpha: s.scale, a: qp, lda: q.stride, b: kp, ldb: k.stride, beta: 0, c: p, ldc: tk)
            let mask = keyMask.map { UnsafePointer($0.data + b * tk) }
            for i in 0 ..< tq { maskedSoftmaxRow(p + i * tk, visible: s.visibleKeys(i), length: tk, mask: mask) }
            gemm(transA: false, transB: false, m: tq, n: d, k: tk,
                 alpha: 1, a: p, lda: tk, b: vp, ldb: v.stride, beta: 0, c: out.data + b * tq * h * d + head * d, ldc: h * d)
        }
    }
}

/// Softmax of row[0..<visible] where mask (if any) is non-zero; every other weight becomes exactly 0.
@inline(__always)
private func maskedSoftmaxRow(_ row: UnsafeMutablePointer<Float>, visible: Int, length: Int, mask: UnsafePointer<Float>?) {
    if let mask {
        for j in 0 ..< visible where mask[j] == 0 { row[j] = -.infinity }
    }
    let m = rowMax(row, visible)
    if m == -.infinity {
        row.update(repeating: 0, count: length)
        return
    }
    // exp(-inf - m) would be clamped to a tiny positive number, so masked weights are zeroed explicitly.
    let sum = rowExpSum(row, row, visible, shift: m)
    if let mask {
        for j in 0 ..< visible where mask[j] == 0 { row[j] = 0 }
    }
    rowScale(row, visible, by: 1 / sum)
    (row + visible).update(repeating: 0, count: length - visible)
}

/// Accumulates dq, dk, dv (each laid out like its forward operand) from dout (B, Tq, H*d) and the
/// forward's probs, or with `overwrite` writes them; nil ones are skipped. scratch holds at least
/// `shape.backwardScratchCount` elements.
public func attentionBackward(dq: HeadSlice?, dk: HeadSlice?, dv: HeadSlice?, scratch: Tensor, dout: Tensor, probs: Tensor,
                              q: HeadSlice, k: HeadSlice, v: HeadSlice, shape s: AttentionShape, overwrite: Bool = false) {
    let (tq, tk, d, h) = (s.queryLength, s.keyLength, s.headDim, s.heads)
    dout.expect([s.batch, tq, h * d], "attentionBackward dout")
    probs.expect([s.batch, h, tq, tk], "attentionBackward probs")
    dq?.check("dq", batch: s.batch, length: tq, width: h * d)
    dk?.check("dk", batch: s.batch, length: tk, width: h * d)
    dv?.check("dv", batch: s.batch, length: tk, width: h * d)
    precondition(scratch.count >= s.backwardScratchCount, "attentionBackward: scratch of \(scratch.count) elements, need \(s.backwardScratchCount)")
    let beta: Float = overwrite ? 0 : 1
    Parallel.indexedChunks(s.batch * h, grain: 1) { thread, pairs in
        let ds = scratch.data + thread * tq * tk
        for pair in pairs {
            let b = pair / h, head = pair % h
            let p = probs.data + pair * tq * tk
            let dop = dout.data + b * tq * h * d + head * d
            let qp = q.base(batch: b, head: head, length: tq, headDim: d)
            let kp = k.base(batch: b, head: head, length: tk, headDim: d)
            let vp = v.base(batch: b, head: head, length: tk, headDim: d)
            if let dv {  // dv += p^T dout
                gemm(transA: true, transB: false, m: tk, n: d, k: tq, alpha: 1, a: p, lda: tk, b: dop, ldb: h * d,
                     beta: beta, c: dv.base(batch: b, head: head, length: tk, headDim: d), ldc: dv.stride)
            }
            guard dq != nil || dk != nil else { continue }
            // dp = dout v^T, then the softmax backward in place: ds = p * (dp - rowsum(p * dp)).
            gemm(transA: false, transB: true, m: tq, n: tk, k: d, alpha: 1, a: dop, lda: h * d, b: vp, ldb: v.stride,
                 beta: 0, c: ds, ldc: tk)
            for i in 0 ..< tq {
                let pr = p + i * tk, dr = ds + i * tk
                let dot = rowDot(pr, dr, tk)
                for j in 0 ..< tk { dr[j] = pr[j] * (dr[j] - dot) }
            }
            if let dq {  // dq += scale * ds k
                gemm(transA: false, transB: false, m: tq, n: d, k: tk, alpha: s.scale, a: ds, lda: tk, b: kp, ldb: k.stride,
                     beta: beta, c: dq.base(batch: b, head: head, length: tq, headDim: d), ldc: dq.stride)
            }
            if let dk {  // dk += scale * ds^T q
                gemm(transA: true, transB: false, m: tk, n: d, k: tq, alpha: s.scale, a: ds, lda: tk, b: qp, ldb: q.stride,
                     beta: beta, c: dk.base(batch: b, head: head, length: tk, headDim: d), ldc: dk.stride)
            }
        }
    }
}

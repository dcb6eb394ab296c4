import Tensors

/// LoRA (Hu et al.) on the decoder's linear layers: y = x W^T + b + (alpha / r) dropout(x) A^T B^T with
/// A [r, in] and B [out, r]; B starts at zero so training starts from the base model. The paper's stage
/// B uses rank and alpha 256 on attention q/k/v and the FFN.
public struct LoRAConfig: Codable, Equatable, Sendable {
    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    /// Decoder linear layers to adapt, by their Hugging Face module names.
    public var targets: [String]

    public static let allTargets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    public init(rank: Int, alpha: Double, dropout: Double = 0, targets: [String] = ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targets = targets
    }

    public var scale: Float { Float(alpha / Double(rank)) }

    /// The adapter tensors' key suffixes (PEFT's names, under the adapted module's key).
    public static let aSuffix = ".lora_A.weight", bSuffix = ".lora_B.weight"

    public func adapts(_ module: String) -> Bool { targets.contains(module) }

    /// Whether an adapter of rank r on an (in -> out) layer runs through its product scale B A (out, in)
    /// rather than its factors (see `LoRAAdapter`): when r (in + out) > in out, the product is fewer flops.
    public static func isDense(rank: Int, inFeatures: Int, outFeatures: Int) -> Bool {
        rank * (inFeatures + outFeatures) > inFeatures * outFeatures
    }
}

/// One adapted layer's trainable pair and its constants.
///
/// When r (in + out) > in out, as for the paper's rank 256 on a narrow model, the adapter runs through
/// its product P = scale B A (out, in) instead of its two factors, which is fewer flops for every token:
/// without dropout the layer computes x (W + P)^T in one product, with dropout x W^T + dropout(x) P^T;
/// backward takes dP = dout^T h once and turns it into dA = scale B^T dP and dB = scale dP A^T.
public struct LoRAAdapter {
    public let a: Param      // (r, in)
    public let b: Param      // (out, r)
    public let scale: Float
    public let dropout: Float

    public var rank: Int { a.value.shape[0] }

    /// Whether the adapter runs through its product (see the type's doc).
    public var isDense: Bool { LoRAConfig.isDense(rank: rank, inFeatures: a.value.shape[1], outFeatures: b.value.shape[0]) }

    /// out (N, out) = inp (N, in) W^T + bias + scale dropout(inp) A^T B^T.
    func forward(_ out: Tensor, _ inp: Tensor, weight: Tensor, bias: Tensor?, _ s: LoRAActivations) {
        if let mask = s.mask { dropoutForward(out: s.h, inp: inp.reshaped(s.h.shape), p: dropout, mask: mask) }
        guard let product = s.product else {
            linearForward(out: out, inp: inp, weight: weight, bias: bias)
            return loraForward(out: out, u: s.u!, h: s.h, a: a.value, b: b.value, scale: scale)
        }
        if s.mask == nil {
            product.copy(from: weight)
            mergeLoRA(into: product, a: a.value, b: b.value, scale: scale)
            return linearForward(out: out, inp: inp, weight: product, bias: bias)
        }
        product.zero()
        mergeLoRA(into: product, a: a.value, b: b.value, scale: scale)
        linearForward(out: out, inp: inp, weight: weight, bias: bias)
        let (n, c, oc) = (s.h.rows, s.h.columns, product.shape[0])
        parallelGemm(transA: false, transB: true, m: n, n: oc, k: c, alpha: 1, a: s.h.data, lda: c, b: product.data, ldb: c, beta: 1, c: out.data, ldc: oc)
    }

    /// Accumulates the gradients of A, B, the base weight and bias (when they train) and dinp (when given;
    /// with `overwrite` replaced instead of added to).
    func backward(dinp: Tensor?, dout: Tensor, inp: Tensor, weight: Param, bias: Param?, _ s: LoRAActivations, _ scratch: LoRAScratch, overwrite: Bool) {
        guard let product = s.product else {
            linearBackward(dinp: dinp, dweight: weight.grad, dbias: bias?.grad, dout: dout, inp: inp, weight: weight.value, overwrite: overwrite)
            return factoredBackward(dinp: dinp, dout: dout, s, scratch)
        }
        let (n, c, oc) = (s.h.rows, s.h.columns, product.shape[0])
        let dproduct = scratch.dproduct.slice(0 ..< oc * c).reshaped([oc, c])
        // dP (out, in) = dout^T h; for W + P it is also dW.
        parallelGemm(transA: true, transB: false, m: oc, n: c, k: n, alpha: 1, a: dout.data, lda: oc, b: s.h.data, ldb: c, beta: 0, c: dproduct.data, ldc: c)
        if let mask = s.mask {
            linearBackward(dinp: dinp, dweight: weight.grad, dbias: bias?.grad, dout: dout, inp: inp, weight: weight.value, overwrite: overwrite)
            if let dinp {
                let dh = scratch.dh.slice(0 ..< n * c).reshaped([n, c])
                parallelGemm(transA: false, transB: false, m: n, n: c, k: oc, alpha: 1, a: dout.data, lda: oc, b: product.data, ldb: c, beta: 0, c: dh.data, ldc: c)
                dropoutBackward(dinp: dinp.reshaped(dh.shape), dout: dh, p: dropout, mask: mask)
            }
        } else {
            linearBackward(dinp: dinp, dweight: nil, dbias: bias?.grad, dout: dout, inp: inp, weight: product, overwrite: overwrite)
            if let dweight = weight.grad { accumulate(into: dweight, dproduct) }
        }
        // dA (r, in) += scale B^T dP; dB (out, r) += scale dP A^T.
        let r = rank
        if let da = a.grad {
            parallelGemm(transA: true, transB: false, m: r, n: c, k: oc, alpha: scale, a: b.value.data, lda: r, b: dproduct.data, ldb: c, beta: 1, c: da.data, ldc: c)
        }
        if let db = b.grad {
            parallelGemm(transA: false, transB: true, m: oc, n: r, k: c, alpha: scale, a: dproduct.data, lda: c, b: a.value.data, ldb: c, beta: 1, c: db.data, ldc: r)
        }
    }

    /// The factored adapter's share of backward: through u = h A^T and B.
    private func factoredBackward(dinp: Tensor?, dout: Tensor, _ s: LoRAActivations, _ scratch: LoRAScratch) {
        let n = dout.rows
        let du = scratch.du.slice(0 ..< n * rank).reshaped([n, rank])
        if let mask = s.mask {
            let dh = scratch.dh.slice(0 ..< s.h.count).reshaped(s.h.shape)
            loraBackward(dh: dinp == nil ? nil : dh, da: a.grad, db: b.grad, du: du, dout: dout, u: s.u!, h: s.h, a: a.value, b: b.value, scale: scale,
                         overwrite: true)
            if let dinp { dropoutBackward(dinp: dinp.reshaped(dh.shape), dout: dh, p: dropout, mask: mask) }
        } else {
            loraBackward(dh: dinp, da: a.grad, db: b.grad, du: du, dout: dout, u: s.u!, h: s.h, a: a.value, b: b.value, scale: scale)
        }
    }
}

/// weight (out, in) += scale * B A with A (r, in), B (out, r): an adapter folded into its base weight.
public func mergeLoRA(into weight: Tensor, a: Tensor, b: Tensor, scale: Float) {
    let (out, inFeatures, rank) = (weight.shape[0], weight.shape[1], a.shape[0])
    a.expect([rank, inFeatures], "mergeLoRA A")
    b.expect([out, rank], "mergeLoRA B")
    parallelGemm(transA: false, transB: false, m: out, n: inFeatures, k: rank, alpha: scale, a: b.data, lda: rank,
                 b: a.data, ldb: inFeatures, beta: 1, c: weight.data, ldc: inFeatures)
}

/// What forward keeps of one adapted layer: h = dropout(x) (x itself without dropout) and, for a factored
/// adapter, u = h A^T; for a dense one, its product: W + scale B A without dropout, scale B A with it.
public struct LoRAActivations {
    let h: Tensor                 // (N, in)
    let u: Tensor?                // (N, r), factored adapters
    let product: Tensor?          // (out, in), dense adapters
    /// The dropout mask; nil when not training (no dropout).
    let mask: DropoutMask?

    init(_ arena: Arena, input: Tensor, adapter: LoRAAdapter, mask: DropoutMask?) {
        let n = input.rows
        if adapter.isDense {
            product = arena.tensor([adapter.b.value.shape[0], input.columns], zeroed: false)
            u = nil
        } else {
            u = arena.tensor([n, adapter.rank], zeroed: false)
            product = nil
        }
        if adapter.dropout > 0, let mask {
            h = arena.tensor(input.shape, zeroed: false)
            self.mask = mask
        } else {
            h = input
            self.mask = nil
        }
    }
}

/// Backward buffers shared by a pass over all adapted layers: du (N, r), dh (N, widest input) and the
/// product's gradient (largest out x in).
public struct LoRAScratch {
    let du: Tensor, dh: Tensor, dproduct: Tensor

    init(_ arena: Arena, rows: Int, rank: Int, widest: Int, largest: Int) {
        du = arena.tensor([rows * rank], zeroed: false)
        dh = arena.tensor([rows * widest], zeroed: false)
        dproduct = arena.tensor([largest], zeroed: false)
    }
}

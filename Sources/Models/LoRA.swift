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
}

/// One adapted layer's trainable pair and its constants.
public struct LoRAAdapter {
    public let a: Param      // (r, in)
    public let b: Param      // (out, r)
    public let scale: Float
    public let dropout: Float

    public var rank: Int { a.value.shape[0] }

    func forward(_ out: Tensor, _ inp: Tensor, _ s: LoRAActivations) {
        if let mask = s.mask, dropout > 0 { dropoutForward(out: s.h, inp: inp.reshaped(s.h.shape), p: dropout, mask: mask) }
        loraForward(out: out, u: s.u, h: s.h, a: a.value, b: b.value, scale: scale)
    }

    func backward(dinp: Tensor?, dout: Tensor, _ s: LoRAActivations, _ scratch: LoRAScratch) {
        let n = dout.rows
        let du = scratch.du.slice(0 ..< n * rank).reshaped([n, rank])
        if let mask = s.mask, dropout > 0 {
            let dh = scratch.dh.slice(0 ..< s.h.count).reshaped(s.h.shape)
            loraBackward(dh: dinp == nil ? nil : dh, da: a.grad, db: b.grad, du: du, dout: dout, u: s.u, h: s.h, a: a.value, b: b.value, scale: scale,
                         overwrite: true)
            if let dinp { dropoutBackward(dinp: dinp.reshaped(dh.shape), dout: dh, p: dropout, mask: mask) }
        } else {
            loraBackward(dh: dinp, da: a.grad, db: b.grad, du: du, dout: dout, u: s.u, h: s.h, a: a.value, b: b.value, scale: scale)
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

/// What forward keeps of one adapted layer: h = dropout(x) (x itself without dropout) and u = h A^T.
public struct LoRAActivations {
    let h: Tensor                 // (N, in)
    let u: Tensor                 // (N, r)
    /// The dropout mask; nil when not training (no dropout).
    let mask: DropoutMask?

    init(_ arena: Arena, input: Tensor, rank: Int, dropout: Float, mask: DropoutMask?) {
        let n = input.rows
        u = arena.tensor([n, rank], zeroed: false)
        if dropout > 0, let mask {
            h = arena.tensor(input.shape, zeroed: false)
            self.mask = mask
        } else {
            h = input
            self.mask = nil
        }
    }
}

/// Backward buffers shared by a pass over all adapted layers: du (N, r) and dh (N, widest input).
public struct LoRAScratch {
    let du: Tensor, dh: Tensor

    init(_ arena: Arena, rows: Int, rank: Int, widest: Int) {
        du = arena.tensor([rows * rank], zeroed: false)
        dh = arena.tensor([rows * widest], zeroed: false)
    }
}

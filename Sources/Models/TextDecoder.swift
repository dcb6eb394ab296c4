import Tensors

/// The InternLM decoder (Hugging Face `LlamaForCausalLM` with `attention_bias`): token embedding, pre-norm
/// blocks `x + attn(RMSNorm x)`, `x + mlp(RMSNorm x)` with rotary q/k, causal attention and a SwiGLU FFN,
/// a final RMSNorm and an untied `lm_head`.
public final class TextDecoder {
    public let config: TextConfig
    let embedTokens: Param            // (V, D)
    let layers: [Layer]
    let norm: NormParams
    let lmHead: LinearParams          // (V, D), no bias
    let rotary: RotaryTable
    let eps: Float

    struct Layer {
        let qProj, kProj, vProj, oProj: LinearParams   // (D, D) each, biases when attention_bias
        let gateProj, upProj, downProj: LinearParams   // (I, D), (I, D), (D, I)
        let inputNorm, postAttentionNorm: NormParams

        /// In `TextDecoder.linearNames` order.
        var linears: [LinearParams] { [qProj, kProj, vProj, oProj, gateProj, upProj, downProj] }
    }

    /// The layer's linear modules, as Hugging Face names them.
    static let linearNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    /// The LoRA config of the adapters, if the decoder has any.
    public let lora: LoRAConfig?

    /// Declares `language_model.*` in Hugging Face's order (each adapter right after its layer's weights).
    init(_ config: TextConfig, lora: LoRAConfig?, _ b: ParameterBuilder) {
        self.config = config
        self.lora = lora
        b.part = .decoder
        let d = config.hiddenSize, i = config.intermediateSize, bias = config.attentionBias
        embedTokens = b.param("language_model.model.embed_tokens.weight", [config.vocabSize, d])
        func adapter(_ module: String) -> LoRAConfig? { lora?.adapts(module) == true ? lora : nil }
        layers = (0 ..< config.numHiddenLayers).map { l in
            let name = "language_model.model.layers.\(l)."
            return Layer(qProj: b.linear(name + "self_attn.q_proj", in: d, out: d, bias: bias, lora: adapter("q_proj")),
                         kProj: b.linear(name + "self_attn.k_proj", in: d, out: d, bias: bias, lora: adapter("k_proj")),
                         vProj: b.linear(name + "self_attn.v_proj", in: d, out: d, bias: bias, lora: adapter("v_proj")),
                         oProj: b.linear(name + "self_attn.o_proj", in: d, out: d, bias: bias, lora: adapter("o_proj")),
                         gateProj: b.linear(name + "mlp.gate_proj", in: d, out: i, bias: false, lora: adapter("gate_proj")),
                         upProj: b.linear(name + "mlp.up_proj", in: d, out: i, bias: false, lora: adapter("up_proj")),
                         downProj: b.linear(name + "mlp.down_proj", in: i, out: d, bias: false, lora: adapter("down_proj")),
                         inputNorm: b.norm(name + "input_layernorm", d, bias: false),
                         postAttentionNorm: b.norm(name + "post_attention_layernorm", d, bias: false))
        }
        norm = b.norm("language_model.model.norm", d, bias: false)
        lmHead = b.linear("language_model.lm_head", in: d, out: config.vocabSize, bias: false)
        rotary = RotaryTable(headDim: config.headDim, maxPositions: b.allocated == nil ? 0 : config.maxPositionEmbeddings, base: config.ropeTheta)
        eps = Float(config.rmsNormEps)
    }

    /// RMSNorm output and its per-row statistic.
    struct NormActivations {
        let out, rstd: Tensor

        init(_ arena: Arena, _ shape: [Int]) {
            out = arena.tensor(shape, zeroed: false)
            rstd = arena.tensor([shape.dropLast().reduce(1, *)], zeroed: false)
        }
    }

    struct LayerActivations {
        let inputNorm, postAttentionNorm: NormActivations   // (B, T, D)
        let q, k, v: Tensor             // (B, T, D), q and k after rotation
        let probs: Tensor               // (B, H, T, T)
        let context, attnOut, residual1: Tensor   // (B, T, D)
        let gate, up, gated: Tensor     // (B, T, I)
        let mlpOut, residual2: Tensor   // (B, T, D)
        /// Per linear (in `linearNames` order): its adapter's activations, nil when not adapted.
        let adapters: [LoRAActivations?]
    }

    /// What forward keeps for a batch of B sequences of T tokens.
    struct Activations {
        let embeddings: Tensor          // (B, T, D) the input, with image features spliced in
        let keyMask: Tensor             // (B, T) 1 for real tokens, 0 for padding
        let layers: [LayerActivations]
        let finalNorm: NormActivations  // (B, T, D)
        let logits: Tensor              // (B, T, V)
        let losses: Tensor              // (B*T) per-position cross-entropy

        /// `dropout` is the step's stream for LoRA dropout (nil: no dropout, as in evaluation); the batch's
        /// first sequence is global sample `firstSample` of the step (see `DropoutMask`).
        init(_ arena: Arena, batch b: Int, length t: Int, _ m: TextDecoder, dropout: RandomStream? = nil, firstSample: Int = 0) {
            let c = m.config
            let (d, i, h, v) = (c.hiddenSize, c.intermediateSize, c.numAttentionHeads, c.vocabSize)
            embeddings = arena.tensor([b, t, d], zeroed: false)
            keyMask = arena.tensor([b, t], zeroed: false)
            layers = m.layers.enumerated().map { l, layer in
                let inputNorm = NormActivations(arena, [b, t, d]), postAttentionNorm = NormActivations(arena, [b, t, d])
                let context = arena.tensor([b, t, d], zeroed: false), gated = arena.tensor([b, t, i], zeroed: false)
                let inputs = [inputNorm.out, inputNorm.out, inputNorm.out, context, postAttentionNorm.out, postAttentionNorm.out, gated]
                let adapters = zip(layer.linears, inputs).enumerated().map { k, pair in
                    pair.0.lora.map { adapter in
                        LoRAActivations(arena, input: pair.1.reshaped([b * t, pair.1.columns]), adapter: adapter,
                                        mask: dropout.map { DropoutMask(RandomStream(seed: $0.seed, stream: $0.stream << 16 | UInt64(l) << 3 | UInt64(k)),
                                                                           length: t, firstSample: firstSample) })
                    }
                }
                return LayerActivations(inputNorm: inputNorm, postAttentionNorm: postAttentionNorm,
                                        q: arena.tensor([b, t, d], zeroed: false), k: arena.tensor([b, t, d], zeroed: false), v: arena.tensor([b, t, d], zeroed: false),
                                        probs: arena.tensor([b, h, t, t], zeroed: false), context: context, attnOut: arena.tensor([b, t, d], zeroed: false),
                                        residual1: arena.tensor([b, t, d], zeroed: false), gate: arena.tensor([b, t, i], zeroed: false), up: arena.tensor([b, t, i], zeroed: false),
                                        gated: gated, mlpOut: arena.tensor([b, t, d], zeroed: false), residual2: arena.tensor([b, t, d], zeroed: false),
                                        adapters: adapters)
            }
            finalNorm = NormActivations(arena, [b, t, d])
            logits = arena.tensor([b, t, v], zeroed: false)
            losses = arena.tensor([b * t], zeroed: false)
        }
    }

    func attentionShape(batch b: Int, length t: Int) -> AttentionShape {
        AttentionShape(batch: b, queryLength: t, keyLength: t, heads: config.numAttentionHeads, headDim: config.headDim, causal: true)
    }

    /// Token ids (B*T) -> token embeddings `a.embeddings` (B, T, D).
    func embed(_ a: Activations, tokens: [Int32]) {
        embeddingForward(out: a.embeddings.reshaped([tokens.count, config.hiddenSize]), ids: tokens, table: embedTokens.value)
    }

    /// a.embeddings (B, T, D) -> a.logits (B, T, V); returns the mean cross-entropy over the counted targets
    /// (targets[b*T + t] is the token position t should predict, or `ignoreIndex`), weighted by `weights`
    /// (B*T) when given, and the targets' total weight.
    func forward(_ a: Activations, targets: [Int32], weights: [Float]? = nil) -> (loss: Float, weight: Double) {
        let (b, t, h) = (a.embeddings.shape[0], a.embeddings.shape[1], config.numAttentionHeads)
        let shape = attentionShape(batch: b, length: t)
        var x = a.embeddings
        for (layer, act) in zip(layers, a.layers) {
            rmsNormForward(out: act.inputNorm.out, rstd: act.inputNorm.rstd, inp: x, weight: layer.inputNorm.weight.value, eps: eps)
            layer.qProj.forward(act.q, act.inputNorm.out, adapter: act.adapters[0])
            layer.kProj.forward(act.k, act.inputNorm.out, adapter: act.adapters[1])
            layer.vProj.forward(act.v, act.inputNorm.out, adapter: act.adapters[2])
            rotaryForward(x: act.q, heads: h, table: rotary)
            rotaryForward(x: act.k, heads: h, table: rotary)
            attentionForward(out: act.context, probs: act.probs, q: HeadSlice(act.q), k: HeadSlice(act.k), v: HeadSlice(act.v), keyMask: a.keyMask, shape: shape)
            layer.oProj.forward(act.attnOut, act.context, adapter: act.adapters[3])
            residualForward(out: act.residual1, a: x, b: act.attnOut)
            rmsNormForward(out: act.postAttentionNorm.out, rstd: act.postAttentionNorm.rstd, inp: act.residual1, weight: layer.postAttentionNorm.weight.value, eps: eps)
            layer.gateProj.forward(act.gate, act.postAttentionNorm.out, adapter: act.adapters[4])
            layer.upProj.forward(act.up, act.postAttentionNorm.out, adapter: act.adapters[5])
            swigluForward(out: act.gated, gate: act.gate, up: act.up)
            layer.downProj.forward(act.mlpOut, act.gated, adapter: act.adapters[6])
            residualForward(out: act.residual2, a: act.residual1, b: act.mlpOut)
            x = act.residual2
        }
        rmsNormForward(out: a.finalNorm.out, rstd: a.finalNorm.rstd, inp: x, weight: norm.weight.value, eps: eps)
        lmHead.forward(a.logits, a.finalNorm.out)
        return crossEntropyForward(losses: a.losses, logits: a.logits.reshaped([b * t, config.vocabSize]), targets: targets, weights: weights)
    }

    /// Gradient buffers of one backward pass, shared by all layers.
    struct Scratch {
        let dlogits: Tensor                                   // (B, T, V)
        let dx, dnorm, dcontext, dq, dk, dv: Tensor           // (B, T, D); dx is the residual stream's gradient
        let dgate, dup, dgated: Tensor                        // (B, T, I)
        let attention: Tensor
        let lora: LoRAScratch?

        init(_ arena: Arena, batch b: Int, length t: Int, _ m: TextDecoder) {
            let (d, i) = (m.config.hiddenSize, m.config.intermediateSize)
            lora = m.lora.map { LoRAScratch(arena, rows: b * t, rank: $0.rank, widest: max(d, i), largest: d * max(d, i)) }
            // dlogits and dx are accumulated into from the start; every other buffer is overwritten first.
            dlogits = arena.tensor([b, t, m.config.vocabSize])
            dx = arena.tensor([b, t, d])
            let fresh = { (width: Int) in arena.tensor([b, t, width], zeroed: false) }
            (dnorm, dcontext, dq, dk, dv) = (fresh(d), fresh(d), fresh(d), fresh(d), fresh(d))
            (dgate, dup, dgated) = (fresh(i), fresh(i), fresh(i))
            attention = arena.tensor([m.attentionShape(batch: b, length: t).backwardScratchCount], zeroed: false)
        }
    }

    /// Accumulates the parameter gradients (of trainable parts) for the targets' losses times their `weights`
    /// (1 each when nil) times `scale`, and returns d embeddings (B, T, D); the token embedding's own gradient
    /// is left to `embedBackward`, after image rows are cut out.
    func backward(_ a: Activations, targets: [Int32], weights: [Float]? = nil, scale: Float, arena: Arena) -> Tensor {
        let (b, t, h) = (a.embeddings.shape[0], a.embeddings.shape[1], config.numAttentionHeads)
        let shape = attentionShape(batch: b, length: t)
        let s = Scratch(arena, batch: b, length: t, self)
        let (dlogits, dx, dnorm, dcontext, dq, dk, dv) = (s.dlogits, s.dx, s.dnorm, s.dcontext, s.dq, s.dk, s.dv)
        let (dgate, dup, dgated, scratch) = (s.dgate, s.dup, s.dgated, s.attention)
        crossEntropyBackward(dlogits: dlogits.reshaped([b * t, config.vocabSize]), logits: a.logits.reshaped([b * t, config.vocabSize]), targets: targets, weights: weights, scale: scale)
        lmHead.backward(dinp: dnorm, dout: dlogits, inp: a.finalNorm.out, overwrite: true)
        let last = a.layers.last?.residual2 ?? a.embeddings
        rmsNormBackward(dinp: dx, dweight: norm.weight.grad, dout: dnorm, inp: last, weight: norm.weight.value, rstd: a.finalNorm.rstd)
        for l in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[l], act = a.layers[l]
            let input = l == 0 ? a.embeddings : a.layers[l - 1].residual2
            // residual2 = residual1 + down(silu(gate(n)) * up(n)), n = RMSNorm(residual1). The first kernel
            // to reach each gradient buffer overwrites it; the rest accumulate.
            layer.downProj.backward(dinp: dgated, dout: dx, inp: act.gated, adapter: act.adapters[6], scratch: s.lora, overwrite: true)
            swigluBackward(dgate: dgate, dup: dup, dout: dgated, gate: act.gate, up: act.up, overwrite: true)
            layer.gateProj.backward(dinp: dnorm, dout: dgate, inp: act.postAttentionNorm.out, adapter: act.adapters[4], scratch: s.lora, overwrite: true)
            layer.upProj.backward(dinp: dnorm, dout: dup, inp: act.postAttentionNorm.out, adapter: act.adapters[5], scratch: s.lora)
            rmsNormBackward(dinp: dx, dweight: layer.postAttentionNorm.weight.grad, dout: dnorm, inp: act.residual1,
                            weight: layer.postAttentionNorm.weight.value, rstd: act.postAttentionNorm.rstd)
            // residual1 = input + o(attention(rope(q(n)), rope(k(n)), v(n))), n = RMSNorm(input).
            layer.oProj.backward(dinp: dcontext, dout: dx, inp: act.context, adapter: act.adapters[3], scratch: s.lora, overwrite: true)
            attentionBackward(dq: HeadSlice(dq), dk: HeadSlice(dk), dv: HeadSlice(dv), scratch: scratch, dout: dcontext, probs: act.probs,
                              q: HeadSlice(act.q), k: HeadSlice(act.k), v: HeadSlice(act.v), shape: shape, overwrite: true)
            rotaryBackward(dx: dq, heads: h, table: rotary)
            rotaryBackward(dx: dk, heads: h, table: rotary)
            layer.qProj.backward(dinp: dnorm, dout: dq, inp: act.inputNorm.out, adapter: act.adapters[0], scratch: s.lora, overwrite: true)
            layer.kProj.backward(dinp: dnorm, dout: dk, inp: act.inputNorm.out, adapter: act.adapters[1], scratch: s.lora)
            layer.vProj.backward(dinp: dnorm, dout: dv, inp: act.inputNorm.out, adapter: act.adapters[2], scratch: s.lora)
            rmsNormBackward(dinp: dx, dweight: layer.inputNorm.weight.grad, dout: dnorm, inp: input, weight: layer.inputNorm.weight.value, rstd: act.inputNorm.rstd)
        }
        return dx
    }

    /// Accumulates the token embedding's gradient from d embeddings (B, T, D).
    func embedBackward(dembeddings: Tensor, tokens: [Int32]) {
        guard let grad = embedTokens.grad else { return }
        embeddingBackward(dtable: grad, dout: dembeddings.reshaped([tokens.count, config.hiddenSize]), ids: tokens)
    }
}

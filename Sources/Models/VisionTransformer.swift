import Foundation
import Tensors

/// The EVA-CLIP vision encoder (Hugging Face `Blip2VisionModel`): a Conv2d patch embedding, a class token
/// and learned positions, pre-norm blocks `x + attn(LN1 x)`, `x + mlp(LN2 x)` with a fused qkv projection
/// and exact GELU, then `post_layernorm`.
public final class VisionTransformer {
    public let config: VisionConfig
    let classEmbedding: Param       // (1, 1, D)
    let positionEmbedding: Param    // (1, T, D)
    let patchWeight: Param          // (D, 3, p, p), used as (D, 3*p*p)
    let patchBias: Param            // (D)
    let layers: [Layer]
    let postLayerNorm: NormParams
    let eps: Float

    struct Layer {
        let qkv, projection: LinearParams   // (3D, D), (D, D)
        let norm1, norm2: NormParams
        let fc1, fc2: LinearParams          // (F, D), (D, F)
    }

    /// Declares the parameters under `vision_model.` in Hugging Face's order.
    init(_ config: VisionConfig, _ b: ParameterBuilder) {
        self.config = config
        b.part = .vision
        let d = config.hiddenSize, f = config.intermediateSize, p = config.patchSize
        let prefix = "vision_model."
        classEmbedding = b.param(prefix + "embeddings.class_embedding", [1, 1, d])
        positionEmbedding = b.param(prefix + "embeddings.position_embedding", [1, config.tokens, d])
        patchWeight = b.param(prefix + "embeddings.patch_embedding.weight", [d, 3, p, p])
        patchBias = b.param(prefix + "embeddings.patch_embedding.bias", [d])
        layers = (0 ..< config.numHiddenLayers).map { l in
            let name = prefix + "encoder.layers.\(l)."
            let qkv = b.linear(name + "self_attn.qkv", in: d, out: 3 * d, bias: config.qkvBias)
            let projection = b.linear(name + "self_attn.projection", in: d, out: d, bias: true)
            let norm1 = b.norm(name + "layer_norm1", d, bias: true)
            let fc1 = b.linear(name + "mlp.fc1", in: d, out: f, bias: true)
            let fc2 = b.linear(name + "mlp.fc2", in: f, out: d, bias: true)
            let norm2 = b.norm(name + "layer_norm2", d, bias: true)
            return Layer(qkv: qkv, projection: projection, norm1: norm1, norm2: norm2, fc1: fc1, fc2: fc2)
        }
        postLayerNorm = b.norm(prefix + "post_layernorm", d, bias: true)
        eps = Float(config.layerNormEps)
    }

    /// Sets the position embeddings to MAE's fixed 2-D sine-cosine table (`sinCosPosition`); the class
    /// token's row is 0. A random ViT initialised so encodes where each patch is.
    func fillSinCosPositions() {
        let d = config.hiddenSize, side = config.patchesPerSide
        let table = positionEmbedding.value.data
        table.update(repeating: 0, count: d)
        for patch in 0 ..< side * side {
            sinCosPosition(x: Double(patch % side), y: Double(patch / side), into: table + (1 + patch) * d, width: d)
        }
    }

    /// What forward keeps for backward, for n images of T tokens, width D, F hidden, H heads.
    struct Activations {
        let cols: Tensor                   // (n*P, 3*p*p) im2col patches
        let patches: Tensor                // (n, P, D)
        let embeddings: Tensor             // (n, T, D) block 0's input
        let layers: [LayerActivations]
        let post: LayerNormActivations     // out (n, T, D): the image embeddings

        init(_ arena: Arena, images n: Int, _ c: VisionConfig) {
            let (t, d, p) = (c.tokens, c.hiddenSize, c.patchSize)
            cols = arena.tensor([n * (t - 1), 3 * p * p], zeroed: false)
            patches = arena.tensor([n, t - 1, d], zeroed: false)
            embeddings = arena.tensor([n, t, d], zeroed: false)
            layers = (0 ..< c.numHiddenLayers).map { _ in LayerActivations(arena, images: n, c) }
            post = LayerNormActivations(arena, rows: n * t, width: d, shape: [n, t, d])
        }
    }

    struct LayerActivations {
        let norm1, norm2: LayerNormActivations   // (n, T, D)
        let qkv: Tensor                          // (n, T, 3D)
        let probs: Tensor                        // (n, H, T, T)
        let context: Tensor                      // (n, T, D) attention output before the projection
        let projected, residual1: Tensor         // (n, T, D)
        let hidden, activated: Tensor            // (n, T, F) fc1 output, GELU output
        let mlpOut, residual2: Tensor            // (n, T, D)

        init(_ arena: Arena, images n: Int, _ c: VisionConfig) {
            let (t, d, f, h) = (c.tokens, c.hiddenSize, c.intermediateSize, c.numAttentionHeads)
            norm1 = LayerNormActivations(arena, rows: n * t, width: d, shape: [n, t, d])
            qkv = arena.tensor([n, t, 3 * d], zeroed: false)
            probs = arena.tensor([n, h, t, t], zeroed: false)
            context = arena.tensor([n, t, d], zeroed: false)
            projected = arena.tensor([n, t, d], zeroed: false)
            residual1 = arena.tensor([n, t, d], zeroed: false)
            norm2 = LayerNormActivations(arena, rows: n * t, width: d, shape: [n, t, d])
            hidden = arena.tensor([n, t, f], zeroed: false)
            activated = arena.tensor([n, t, f], zeroed: false)
            mlpOut = arena.tensor([n, t, d], zeroed: false)
            residual2 = arena.tensor([n, t, d], zeroed: false)
        }
    }

    func attentionShape(images n: Int) -> AttentionShape {
        AttentionShape(batch: n, queryLength: config.tokens, keyLength: config.tokens,
                       heads: config.numAttentionHeads, headDim: config.headDim, causal: false)
    }

    /// images (n, 3, S, S) -> image embeddings `a.post.out` (n, T, D).
    func forward(_ a: Activations, images: Tensor) {
        let (t, d) = (config.tokens, config.hiddenSize)
        let n = images.shape[0]
        patchEmbedForward(out: a.patches, cols: a.cols, images: images, weight: patchWeight.value.reshaped([d, 3 * config.patchSize * config.patchSize]),
                          bias: patchBias.value, patch: config.patchSize)
        // Row 0 of each image is the class token, rows 1... its patches; then add the positions.
        let x = a.embeddings.data, pos = positionEmbedding.value.data, cls = classEmbedding.value.data
        for i in 0 ..< n {
            let row = x + i * t * d
            for j in 0 ..< d { row[j] = cls[j] + pos[j] }
            let patches = a.patches.data + i * (t - 1) * d
            for k in 0 ..< (t - 1) * d { row[d + k] = patches[k] + pos[d + k] }
        }
        var input = a.embeddings
        let shape = attentionShape(images: n)
        for (layer, act) in zip(layers, a.layers) {
            act.norm1.forward(input, layer.norm1, eps: eps)
            layer.qkv.forward(act.qkv, act.norm1.out)
            attentionForward(out: act.context, probs: act.probs, q: HeadSlice(act.qkv), k: HeadSlice(act.qkv, column: d),
                             v: HeadSlice(act.qkv, column: 2 * d), keyMask: nil, shape: shape)
            layer.projection.forward(act.projected, act.context)
            residualForward(out: act.residual1, a: input, b: act.projected)
            act.norm2.forward(act.residual1, layer.norm2, eps: eps)
            layer.fc1.forward(act.hidden, act.norm2.out)
            geluForward(out: act.activated, inp: act.hidden)
            layer.fc2.forward(act.mlpOut, act.activated)
            residualForward(out: act.residual2, a: act.residual1, b: act.mlpOut)
            input = act.residual2
        }
        a.post.forward(input, postLayerNorm, eps: eps)
    }

    /// Gradient buffers of one backward pass, shared by all layers.
    struct Scratch {
        let dx, dnorm, dcontext: Tensor     // (n, T, D); dx is the residual stream's gradient
        let dqkv: Tensor                    // (n, T, 3D)
        let dhidden, dactivated: Tensor     // (n, T, F)
        let attention: Tensor

        init(_ arena: Arena, images n: Int, _ v: VisionTransformer) {
            let (t, d, f) = (v.config.tokens, v.config.hiddenSize, v.config.intermediateSize)
            // Only dx is accumulated into from the start; every other buffer is overwritten first.
            dx = arena.tensor([n, t, d])
            dnorm = arena.tensor([n, t, d], zeroed: false)
            dcontext = arena.tensor([n, t, d], zeroed: false)
            dqkv = arena.tensor([n, t, 3 * d], zeroed: false)
            dhidden = arena.tensor([n, t, f], zeroed: false)
            dactivated = arena.tensor([n, t, f], zeroed: false)
            attention = arena.tensor([v.attentionShape(images: n).backwardScratchCount], zeroed: false)
        }
    }

    /// Accumulates every parameter gradient from dout (n, T, D), the gradient of the image embeddings.
    /// The images themselves get no gradient: nothing upstream of them is trained.
    func backward(_ a: Activations, dout: Tensor, arena: Arena) {
        let n = dout.shape[0], (t, d) = (config.tokens, config.hiddenSize)
        let shape = attentionShape(images: n)
        let s = Scratch(arena, images: n, self)
        let (dx, dnorm, dcontext, dqkv, dhidden, dactivated, scratch) = (s.dx, s.dnorm, s.dcontext, s.dqkv, s.dhidden, s.dactivated, s.attention)
        a.post.backward(dinp: dx, dout: dout, inp: a.layers.last?.residual2 ?? a.embeddings, postLayerNorm)
        for l in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[l], act = a.layers[l]
            let input = l == 0 ? a.embeddings : a.layers[l - 1].residual2
            // residual2 = residual1 + fc2(gelu(fc1(LN2(residual1)))): dx is also d residual1 through the skip.
            // The gradient buffers are overwritten by their first kernel, so none is zeroed.
            layer.fc2.backward(dinp: dactivated, dout: dx, inp: act.activated, overwrite: true)
            geluBackward(dinp: dhidden, dout: dactivated, inp: act.hidden, overwrite: true)
            layer.fc1.backward(dinp: dnorm, dout: dhidden, inp: act.norm2.out, overwrite: true)
            act.norm2.backward(dinp: dx, dout: dnorm, inp: act.residual1, layer.norm2)
            // residual1 = input + projection(attention(qkv(LN1(input)))).
            layer.projection.backward(dinp: dcontext, dout: dx, inp: act.context, overwrite: true)
            attentionBackward(dq: HeadSlice(dqkv), dk: HeadSlice(dqkv, column: d), dv: HeadSlice(dqkv, column: 2 * d), scratch: scratch,
                              dout: dcontext, probs: act.probs, q: HeadSlice(act.qkv), k: HeadSlice(act.qkv, column: d),
                              v: HeadSlice(act.qkv, column: 2 * d), shape: shape, overwrite: true)
            layer.qkv.backward(dinp: dnorm, dout: dqkv, inp: act.norm1.out, overwrite: true)
            act.norm1.backward(dinp: dx, dout: dnorm, inp: input, layer.norm1)
        }
        // dx is now the gradient of the embeddings: class token + positions + patches.
        if let dpos = positionEmbedding.grad {
            for i in 0 ..< n { accumulate(into: dpos.reshaped([t, d]), dx.row(i)) }
        }
        if let dcls = classEmbedding.grad {
            for i in 0 ..< n { accumulate(into: dcls.reshaped([d]), dx.row(i).slice(0 ..< 1).reshaped([d])) }
        }
        let dpatches = a.patches   // reused: the patch outputs are no longer needed
        for i in 0 ..< n { dpatches.row(i).copy(from: dx.row(i).slice(1 ..< t)) }
        patchEmbedBackward(dimages: nil, dcols: nil, dweight: patchWeight.grad?.reshaped([d, 3 * config.patchSize * config.patchSize]),
                           dbias: patchBias.grad, dout: dpatches, cols: a.cols, weight: patchWeight.value.reshaped([d, 3 * config.patchSize * config.patchSize]), patch: config.patchSize)
    }
}

/// Frequency i of a sin-cos position embedding of width D: w_i = 10000^(-i / (D/4)), i < D/4.
func sinCosFrequency(_ i: Int, width d: Int) -> Double { pow(10000, -Double(i) / Double(d / 4)) }

/// Writes MAE's 2-D sine-cosine embedding of the point (x, y), in patch units, into `row` (width D, a
/// multiple of 4): [sin(x w_i), cos(x w_i), sin(y w_i), cos(y w_i)] for the D/4 frequencies w_i.
func sinCosPosition(x: Double, y: Double, into row: UnsafeMutablePointer<Float>, width d: Int) {
    precondition(d % 4 == 0, "sin-cos positions need a width divisible by 4, got \(d)")
    let quarter = d / 4
    for (axis, coordinate) in [x, y].enumerated() {
        for i in 0 ..< quarter {
            let angle = coordinate * sinCosFrequency(i, width: d)
            row[axis * 2 * quarter + i] = Float(sin(angle))
            row[axis * 2 * quarter + quarter + i] = Float(cos(angle))
        }
    }
}

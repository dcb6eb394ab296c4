import Foundation
import Tensors

/// The Perceive Sampler (BLIP-2's Q-Former, Hugging Face `Blip2QFormerModel`) and the projection into the
/// decoder's width: Q learned queries, LayerNorm, then post-norm BERT layers of self-attention, cross-
/// attention to the image embeddings every `cross_attention_frequency` layers, and the query FFN;
/// finally `language_projection`.
public final class PerceiveSampler {
    public let config: QFormerConfig
    public let queries: Int
    let queryTokens: Param            // (1, Q, H)
    let layerNorm: NormParams
    let layers: [Layer]
    let projection: LinearParams      // (Dtext, H)
    let eps: Float

    /// BERT attention with its output: `LayerNorm(dense(attention(query x, key/value y)) + x)`.
    struct AttentionBlock {
        let query, key, value, dense: LinearParams
        let norm: NormParams
    }

    struct Layer {
        let attention: AttentionBlock
        let crossAttention: AttentionBlock?
        let intermediate, output: LinearParams   // (I, H), (H, I)
        let outputNorm: NormParams
    }

    /// Declares `query_tokens`, `qformer.*` and `language_projection.*` in Hugging Face's order.
    init(_ config: QFormerConfig, queries: Int, textHidden: Int, _ b: ParameterBuilder) {
        self.config = config
        self.queries = queries
        b.part = .sampler
        let h = config.hiddenSize, e = config.encoderHiddenSize, i = config.intermediateSize
        queryTokens = b.param("query_tokens", [1, queries, h])
        layerNorm = b.norm("qformer.layernorm", h, bias: true)
        func block(_ name: String, keyWidth: Int) -> AttentionBlock {
            AttentionBlock(query: b.linear(name + ".attention.query", in: h, out: h, bias: true),
                           key: b.linear(name + ".attention.key", in: keyWidth, out: h, bias: true),
                           value: b.linear(name + ".attention.value", in: keyWidth, out: h, bias: true),
                           dense: b.linear(name + ".output.dense", in: h, out: h, bias: true),
                           norm: b.norm(name + ".output.LayerNorm", h, bias: true))
        }
        layers = (0 ..< config.numHiddenLayers).map { l in
            let name = "qformer.encoder.layer.\(l)."
            let attention = block(name + "attention", keyWidth: h)
            let cross = config.hasCrossAttention(l) ? block(name + "crossattention", keyWidth: e) : nil
            return Layer(attention: attention, crossAttention: cross,
                         intermediate: b.linear(name + "intermediate_query.dense", in: h, out: i, bias: true),
                         output: b.linear(name + "output_query.dense", in: i, out: h, bias: true),
                         outputNorm: b.norm(name + "output_query.LayerNorm", h, bias: true))
        }
        projection = b.linear("language_projection", in: h, out: textHidden, bias: true)
        eps = Float(config.layerNormEps)
    }

    /// A spatial prior for a random sampler over a ViT with sin-cos positions: the Q = g x g query tokens
    /// become the sin-cos embeddings of the centres of a g x g grid of cells over the image, and every
    /// cross-attention's query and key projections read the H / (4 heads) highest sin-cos frequencies of x and
    /// y, times `sharpness`. The query projection also rotates each head's phases so that heads 0-3 look
    /// at the four quarters of the cell (the 2 x 2 patches of a cell two patches wide) and the others at
    /// its centre: the logit of a head for patch p is sum_i cos(w_i (target - p)) over those frequencies.
    /// The sampler so starts by reading every patch through some query instead of averaging the whole
    /// image. The cross-attention's value and output projections are redrawn with std 1/sqrt(H), so that
    /// what a query reads reaches its token at the scale of the query itself (at a small std the token is
    /// nearly its position alone); everything else keeps its random init. `zOrder` gives the queries the
    /// cells in Z-order (see `gridCells`) instead of row by row.
    func useGridQueries(imageGrid side: Int, sharpness: Float, zOrder: Bool, rng: inout RNG) throws {
        let h = config.hiddenSize, heads = config.numAttentionHeads, quarter = h / 4, perHead = h / heads / 4
        let grid = Int(Double(queries).squareRoot())
        guard grid * grid == queries else { throw ModelError("grid queries need a square number of query tokens, got \(queries)") }
        guard config.encoderHiddenSize == h, h % (4 * heads) == 0 else {
            throw ModelError("grid queries need the ViT's width (\(config.encoderHiddenSize)) to equal the sampler's (\(h)), a multiple of 4 x \(heads) heads")
        }
        let cell = Double(side) / Double(grid)
        for (q, (x, y)) in PerceiveSampler.gridCells(grid, zOrder: zOrder).enumerated() {
            let centre = { (index: Int) in (Double(index) + 0.5) * cell - 0.5 }
            sinCosPosition(x: centre(x), y: centre(y), into: queryTokens.value.data + q * h, width: h)
        }
        for layer in layers {
            guard let cross = layer.crossAttention else { continue }
            for (projection, shifted) in [(cross.query, true), (cross.key, false)] {
                let w = projection.weight.value.data
                w.update(repeating: 0, count: h * h)
                // Output m of head k is component m / perHead (sin x, cos x, sin y, cos y) of frequency m % perHead,
                // for the query shifted by the head's offset: sin(w(c + d)) = sin(wc) cos(wd) + cos(wc) sin(wd), and so on.
                for out in 0 ..< h {
                    let (k, m) = (out / (4 * perHead), out % (4 * perHead))
                    let (component, i) = (m / perHead, m % perHead)
                    let axis = component / 2, isCos = component % 2 == 1
                    let offset = shifted && k < 4 ? (Double(axis == 0 ? k % 2 : k / 2) - 0.5) * cell / 2 : 0
                    let (c, s) = (cos(sinCosFrequency(i, width: h) * offset), sin(sinCosFrequency(i, width: h) * offset))
                    let sinIn = out * h + axis * 2 * quarter + i, cosIn = sinIn + quarter
                    w[isCos ? cosIn : sinIn] = sharpness * Float(c)
                    w[isCos ? sinIn : cosIn] = sharpness * Float(isCos ? -s : s)
                }
                projection.bias?.value.zero()
            }
            for projection in [cross.value, cross.dense] {
                rng.fillNormal(projection.weight.value, std: 1 / Float(projection.weight.value.shape[1]).squareRoot())
            }
        }
    }

    /// The cells of a g x g grid in the order the grid prior gives them to the queries: row by row, or in
    /// Z-order (by the Morton code that interleaves the bits of x and y), where cells near each other in the
    /// image are near each other in the decoder's one-dimensional sequence and each quarter of the image is
    /// a contiguous run of tokens.
    public static func gridCells(_ grid: Int, zOrder: Bool) -> [(x: Int, y: Int)] {
        let rows = (0 ..< grid * grid).map { (x: $0 % grid, y: $0 / grid) }
        guard zOrder else { return rows }
        func morton(_ c: (x: Int, y: Int)) -> Int {
            (0 ..< 16).reduce(0) { code, bit in code | (c.x >> bit & 1) << (2 * bit) | (c.y >> bit & 1) << (2 * bit + 1) }
        }
        return rows.sorted { morton($0) < morton($1) }
    }

    /// One attention block's saved tensors for n images: queries (n, Q, H), keys from Tk rows.
    struct BlockActivations {
        let q, k, v: Tensor           // (n, Q, H), (n, Tk, H), (n, Tk, H)
        let probs: Tensor             // (n, heads, Q, Tk)
        let context, dense, sum: Tensor   // (n, Q, H)
        let norm: LayerNormActivations    // out (n, Q, H): the block's output

        init(_ arena: Arena, images n: Int, queries: Int, keys: Int, _ c: QFormerConfig) {
            let h = c.hiddenSize
            q = arena.tensor([n, queries, h], zeroed: false)
            k = arena.tensor([n, keys, h], zeroed: false)
            v = arena.tensor([n, keys, h], zeroed: false)
            probs = arena.tensor([n, c.numAttentionHeads, queries, keys], zeroed: false)
            context = arena.tensor([n, queries, h], zeroed: false)
            dense = arena.tensor([n, queries, h], zeroed: false)
            sum = arena.tensor([n, queries, h], zeroed: false)
            norm = LayerNormActivations(arena, rows: n * queries, width: h, shape: [n, queries, h])
        }
    }

    struct LayerActivations {
        let attention: BlockActivations
        let crossAttention: BlockActivations?
        let hidden, activated: Tensor     // (n, Q, I)
        let output, sum: Tensor           // (n, Q, H)
        let norm: LayerNormActivations    // out (n, Q, H): the layer's output
    }

    struct Activations {
        let queries: Tensor               // (n, Q, H) the query tokens, once per image
        let embedded: LayerNormActivations
        let layers: [LayerActivations]
        let projected: Tensor             // (n, Q, Dtext)

        init(_ arena: Arena, images n: Int, imageTokens: Int, _ s: PerceiveSampler) {
            let (c, q, h) = (s.config, s.queries, s.config.hiddenSize)
            queries = arena.tensor([n, q, h], zeroed: false)
            embedded = LayerNormActivations(arena, rows: n * q, width: h, shape: [n, q, h])
            layers = (0 ..< c.numHiddenLayers).map { l in
                LayerActivations(attention: BlockActivations(arena, images: n, queries: q, keys: q, c),
                                 crossAttention: c.hasCrossAttention(l) ? BlockActivations(arena, images: n, queries: q, keys: imageTokens, c) : nil,
                                 hidden: arena.tensor([n, q, c.intermediateSize], zeroed: false), activated: arena.tensor([n, q, c.intermediateSize], zeroed: false),
                                 output: arena.tensor([n, q, h], zeroed: false), sum: arena.tensor([n, q, h], zeroed: false),
                                 norm: LayerNormActivations(arena, rows: n * q, width: h, shape: [n, q, h]))
            }
            projected = arena.tensor([n, q, s.projection.outFeatures], zeroed: false)
        }
    }

    func attentionShape(images n: Int, keys: Int) -> AttentionShape {
        AttentionShape(batch: n, queryLength: queries, keyLength: keys, heads: config.numAttentionHeads, headDim: config.headDim, causal: false)
    }

    /// image embeddings (n, T, E) -> projected queries `a.projected` (n, Q, Dtext).
    func forward(_ a: Activations, imageEmbeddings: Tensor) {
        let n = imageEmbeddings.shape[0]
        for i in 0 ..< n { a.queries.row(i).copy(from: queryTokens.value.row(0)) }
        a.embedded.forward(a.queries, layerNorm, eps: eps)
        var x = a.embedded.out
        for (layer, act) in zip(layers, a.layers) {
            x = blockForward(act.attention, layer.attention, x, keys: x)
            if let cross = layer.crossAttention, let crossAct = act.crossAttention {
                x = blockForward(crossAct, cross, x, keys: imageEmbeddings)
            }
            layer.intermediate.forward(act.hidden, x)
            geluForward(out: act.activated, inp: act.hidden)
            layer.output.forward(act.output, act.activated)
            residualForward(out: act.sum, a: act.output, b: x)
            act.norm.forward(act.sum, layer.outputNorm, eps: eps)
            x = act.norm.out
        }
        projection.forward(a.projected, x)
    }

    private func blockForward(_ a: BlockActivations, _ p: AttentionBlock, _ x: Tensor, keys y: Tensor) -> Tensor {
        p.query.forward(a.q, x)
        p.key.forward(a.k, y)
        p.value.forward(a.v, y)
        attentionForward(out: a.context, probs: a.probs, q: HeadSlice(a.q), k: HeadSlice(a.k), v: HeadSlice(a.v), keyMask: nil,
                         shape: attentionShape(images: x.shape[0], keys: y.shape[1]))
        p.dense.forward(a.dense, a.context)
        residualForward(out: a.sum, a: a.dense, b: x)
        a.norm.forward(a.sum, p.norm, eps: eps)
        return a.norm.out
    }

    /// Gradient buffers shared by all layers of one backward pass.
    struct Scratch {
        let dq, dkQueries, dvQueries, dcontext, dsum, dx, dy: Tensor   // (n, Q, H)
        let dkImage, dvImage: Tensor                                    // (n, T, H)
        let dhidden, dactivated: Tensor                                 // (n, Q, I)
        let attention: Tensor

        init(_ arena: Arena, images n: Int, imageTokens t: Int, _ p: PerceiveSampler) {
            let (q, h, i) = (p.queries, p.config.hiddenSize, p.config.intermediateSize)
            (dq, dkQueries, dvQueries) = (arena.tensor([n, q, h]), arena.tensor([n, q, h]), arena.tensor([n, q, h]))
            (dcontext, dsum, dx, dy) = (arena.tensor([n, q, h]), arena.tensor([n, q, h]), arena.tensor([n, q, h]), arena.tensor([n, q, h]))
            (dkImage, dvImage) = (arena.tensor([n, t, h]), arena.tensor([n, t, h]))
            (dhidden, dactivated) = (arena.tensor([n, q, i]), arena.tensor([n, q, i]))
            attention = arena.tensor([max(p.attentionShape(images: n, keys: t).backwardScratchCount, p.attentionShape(images: n, keys: q).backwardScratchCount)])
        }
    }

    /// Accumulates the parameter gradients from dprojected (n, Q, Dtext); adds the gradient of the image
    /// embeddings into dimage (n, T, E) when it is given (a trained ViT needs it).
    func backward(_ a: Activations, dprojected: Tensor, imageEmbeddings: Tensor, dimage: Tensor?, arena: Arena) {
        let n = dprojected.shape[0]
        let s = Scratch(arena, images: n, imageTokens: imageEmbeddings.shape[1], self)
        let dout = s.dy   // gradient of the current layer's output
        dout.zero()
        projection.backward(dinp: dout, dout: dprojected, inp: a.layers.last?.norm.out ?? a.embedded.out)
        for l in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[l], act = a.layers[l]
            let ffnInput = act.crossAttention?.norm.out ?? act.attention.norm.out
            // out = LN(output(gelu(intermediate(z))) + z): dsum flows to the FFN and, through the skip, to z.
            s.dsum.zero(); s.dactivated.zero(); s.dhidden.zero()
            act.norm.backward(dinp: s.dsum, dout: dout, inp: act.sum, layer.outputNorm)
            layer.output.backward(dinp: s.dactivated, dout: s.dsum, inp: act.activated)
            geluBackward(dinp: s.dhidden, dout: s.dactivated, inp: act.hidden)
            s.dx.copy(from: s.dsum)
            layer.intermediate.backward(dinp: s.dx, dout: s.dhidden, inp: ffnInput)
            let layerInput = l == 0 ? a.embedded.out : a.layers[l - 1].norm.out
            if let cross = layer.crossAttention, let crossAct = act.crossAttention {
                // dx holds d(cross output); the block writes d(its query input) into dout.
                blockBackward(crossAct, cross, dout: s.dx, dx: dout, x: act.attention.norm.out, keys: imageEmbeddings, dkeys: dimage,
                              dk: s.dkImage, dv: s.dvImage, s)
                s.dx.copy(from: dout)
            }
            blockBackward(act.attention, layer.attention, dout: s.dx, dx: dout, x: layerInput, keys: layerInput, dkeys: dout,
                          dk: s.dkQueries, dv: s.dvQueries, s)
        }
        // dout is now d(LayerNorm(query tokens)) per image.
        s.dsum.zero()
        a.embedded.backward(dinp: s.dsum, dout: dout, inp: a.queries, layerNorm)
        if let dtokens = queryTokens.grad {
            for i in 0 ..< n { accumulate(into: dtokens.row(0), s.dsum.row(i)) }
        }
    }

    /// Backward of `LN(dense(attention(query(x), key(y), value(y))) + x)`: reads dout, overwrites dx with
    /// d x, and adds d y into dkeys (which may be dx itself for self-attention) when given.
    private func blockBackward(_ a: BlockActivations, _ p: AttentionBlock, dout: Tensor, dx: Tensor, x: Tensor, keys y: Tensor, dkeys: Tensor?,
                               dk: Tensor, dv: Tensor, _ s: Scratch) {
        s.dsum.zero(); s.dcontext.zero(); s.dq.zero(); dk.zero(); dv.zero()
        a.norm.backward(dinp: s.dsum, dout: dout, inp: a.sum, p.norm)
        p.dense.backward(dinp: s.dcontext, dout: s.dsum, inp: a.context)
        attentionBackward(dq: HeadSlice(s.dq), dk: HeadSlice(dk), dv: HeadSlice(dv), scratch: s.attention, dout: s.dcontext, probs: a.probs,
                          q: HeadSlice(a.q), k: HeadSlice(a.k), v: HeadSlice(a.v), shape: attentionShape(images: x.shape[0], keys: y.shape[1]))
        dx.copy(from: s.dsum)
        p.query.backward(dinp: dx, dout: s.dq, inp: x)
        p.key.backward(dinp: dkeys, dout: dk, inp: y)
        p.value.backward(dinp: dkeys, dout: dv, inp: y)
    }
}

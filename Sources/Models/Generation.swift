import Foundation
import Tensors

/// How the next token is chosen.
public enum Sampling: Sendable {
    case greedy
    /// Softmax of logits / temperature over the top `topK` tokens (all when nil), drawn from Philox(seed).
    case sample(temperature: Float, topK: Int?, seed: UInt64)
}

/// Text generation with a key/value cache: the prompt (with its images) runs once through the whole
/// model; each new token then runs through the decoder alone, attending to the cached keys and values.
/// Adapters are merged first, so generation runs plain linear layers.
public final class Generator {
    public let model: XComposer
    private let arena = Arena()

    /// `model` may have LoRA adapters; generation uses its merged copy.
    public init(model: XComposer) {
        self.model = model.lora == nil ? model : model.merged()
    }

    /// Continues `prompt` (with `images` for its placeholders) until a `stop` token (included) or
    /// `maxTokens` new tokens. `cached: false` recomputes the whole sequence for every token instead.
    /// `onToken` sees each new token as soon as it is chosen.
    public func generate(prompt: [Int32], images: Tensor?, maxTokens: Int, stop: Set<Int32>, sampling: Sampling = .greedy, cached: Bool = true,
                         onToken: (Int32) -> Void = { _ in }) throws -> [Int32] {
        let maxLength = model.config.textConfig.maxPositionEmbeddings
        guard !prompt.isEmpty, prompt.count < maxLength else {
            throw ModelError("generate: the prompt has \(prompt.count) tokens; it must be non-empty and shorter than max_position_embeddings \(maxLength)")
        }
        let rng = RandomStream(seed: { if case let .sample(_, _, seed) = sampling { return seed }; return 0 }(), stream: 0x6765_6E)
        var generated: [Int32] = []
        arena.reset()
        let prefill = try model.forward(Batch(batchSize: 1, sequenceLength: prompt.count, tokens: prompt,
                                              labels: [Int32](repeating: ignoreIndex, count: prompt.count), images: images), arena: arena)
        var logits = prefill.logits.row(0).row(prompt.count - 1)
        let cache = cached ? KVCache(model.decoder, prefill: prefill.decoder, length: prompt.count, capacity: maxLength) : nil
        let stepArena = Arena()
        while generated.count < maxTokens, prompt.count + generated.count < maxLength {
            let next = choose(logits, sampling, rng, index: generated.count)
            generated.append(next)
            onToken(next)
            if stop.contains(next) { break }
            stepArena.reset()
            if let cache {
                logits = model.decoder.step(token: next, position: prompt.count + generated.count - 1, cache: cache, arena: stepArena)
            } else {
                let tokens = prompt + generated
                let full = try model.forward(Batch(batchSize: 1, sequenceLength: tokens.count, tokens: tokens,
                                                   labels: [Int32](repeating: ignoreIndex, count: tokens.count), images: images), arena: stepArena)
                logits = full.logits.row(0).row(tokens.count - 1)
            }
        }
        return generated
    }

    /// The next token from `logits` (V); a sampled choice uses element `index` of `rng`.
    private func choose(_ logits: Tensor, _ sampling: Sampling, _ rng: RandomStream, index: Int) -> Int32 {
        switch sampling {
        case .greedy:
            var best = 0
            for i in 1 ..< logits.count where logits[flat: i] > logits[flat: best] { best = i }
            return Int32(best)
        case let .sample(temperature, topK, _):
            var order = Array(0 ..< logits.count)
            order.sort { logits[flat: $0] > logits[flat: $1] }
            let kept = Array(order.prefix(topK ?? logits.count))
            let top = logits[flat: kept[0]]
            let weights = kept.map { Foundation.exp(Double((logits[flat: $0] - top) / max(temperature, 1e-6))) }
            var u = Double(rng.uniform(index)) * weights.reduce(0, +)
            for (token, w) in zip(kept, weights) {
                u -= w
                if u <= 0 { return Int32(token) }
            }
            return Int32(kept.last!)
        }
    }
}

/// The decoder's keys (after rotation) and values of every position so far, per layer.
final class KVCache {
    let keys: [Tensor], values: [Tensor]   // (capacity, D) each

    init(_ decoder: TextDecoder, prefill: TextDecoder.Activations, length: Int, capacity: Int) {
        let d = decoder.config.hiddenSize
        keys = prefill.layers.map { layer in
            let t = Tensor(zeros: [capacity, d])
            t.slice(0 ..< length).copy(from: layer.k.reshaped([length, d]))
            return t
        }
        values = prefill.layers.map { layer in
            let t = Tensor(zeros: [capacity, d])
            t.slice(0 ..< length).copy(from: layer.v.reshaped([length, d]))
            return t
        }
    }
}

extension TextDecoder {
    /// The logits (V) after `token` at `position`, given the cache of positions 0 ..< position, which it
    /// extends. Batch of one; a plain decoder (adapters merged).
    func step(token: Int32, position: Int, cache: KVCache, arena: Arena) -> Tensor {
        let (d, i, h) = (config.hiddenSize, config.intermediateSize, config.numAttentionHeads)
        let length = position + 1
        let shape = AttentionShape(batch: 1, queryLength: 1, keyLength: length, heads: h, headDim: config.headDim, causal: true)
        var x = arena.tensor([1, 1, d], zeroed: false)
        embeddingForward(out: x.reshaped([1, d]), ids: [token], table: embedTokens.value)
        let norm = arena.tensor([1, 1, d], zeroed: false), rstd = arena.tensor([1], zeroed: false)
        let q = arena.tensor([1, 1, d], zeroed: false), context = arena.tensor([1, 1, d], zeroed: false)
        let attnOut = arena.tensor([1, 1, d], zeroed: false), probs = arena.tensor([1, h, 1, length], zeroed: false)
        let gate = arena.tensor([1, 1, i], zeroed: false), up = arena.tensor([1, 1, i], zeroed: false), gated = arena.tensor([1, 1, i], zeroed: false)
        for (l, layer) in layers.enumerated() {
            let k = cache.keys[l].slice(position ..< length).reshaped([1, 1, d]), v = cache.values[l].slice(position ..< length).reshaped([1, 1, d])
            rmsNormForward(out: norm, rstd: rstd, inp: x, weight: layer.inputNorm.weight.value, eps: eps)
            layer.qProj.forward(q, norm)
            layer.kProj.forward(k, norm)
            layer.vProj.forward(v, norm)
            rotaryForward(x: q, heads: h, table: rotary, positionOffset: position)
            rotaryForward(x: k, heads: h, table: rotary, positionOffset: position)
            let keys = cache.keys[l].slice(0 ..< length).reshaped([1, length, d]), values = cache.values[l].slice(0 ..< length).reshaped([1, length, d])
            attentionForward(out: context, probs: probs, q: HeadSlice(q), k: HeadSlice(keys), v: HeadSlice(values), keyMask: nil, shape: shape)
            layer.oProj.forward(attnOut, context)
            let residual = arena.tensor([1, 1, d], zeroed: false)
            residualForward(out: residual, a: x, b: attnOut)
            rmsNormForward(out: norm, rstd: rstd, inp: residual, weight: layer.postAttentionNorm.weight.value, eps: eps)
            layer.gateProj.forward(gate, norm)
            layer.upProj.forward(up, norm)
            swigluForward(out: gated, gate: gate, up: up)
            layer.downProj.forward(attnOut, gated)
            let out = arena.tensor([1, 1, d], zeroed: false)
            residualForward(out: out, a: residual, b: attnOut)
            x = out
        }
        rmsNormForward(out: norm, rstd: rstd, inp: x, weight: self.norm.weight.value, eps: eps)
        let logits = arena.tensor([1, config.vocabSize], zeroed: false)
        lmHead.forward(logits, norm.reshaped([1, d]))
        return logits.reshaped([config.vocabSize])
    }
}

import Foundation
import Tensors

/// One training batch: B sequences of T token ids (right-padded), their labels, and the images whose
/// placeholders appear in the tokens, in reading order.
public struct Batch {
    public var batchSize: Int
    public var sequenceLength: Int
    /// (B*T) token ids; each image occupies `numQueryTokens` consecutive `image_token_index` placeholders.
    public var tokens: [Int32]
    /// (B*T) the token each position is labelled with, or `ignoreIndex` (prompts, images, padding). As in
    /// Hugging Face, position t's logits are scored against label t+1.
    public var labels: [Int32]
    /// (B*T) 1 for real tokens, 0 for padding.
    public var attentionMask: [Float]
    /// (n, 3, S, S) preprocessed images, or nil for a text-only batch.
    public var images: Tensor?
    /// Which sample of the step's global batch the first sequence is (its rank's offset): LoRA dropout
    /// masks follow the global sample, so a run split over ranks draws the same masks.
    public var firstSample: Int
    /// (B*T) the weight of each position's target in the loss (`LossAverage.weights`); nil: 1 each.
    public var lossWeights: [Float]?
    /// (B) the data source each sequence was drawn from, for losses by source; nil when not known.
    public var sources: [Int]?

    public init(batchSize: Int, sequenceLength: Int, tokens: [Int32], labels: [Int32], attentionMask: [Float]? = nil, images: Tensor? = nil,
                firstSample: Int = 0, lossWeights: [Float]? = nil, sources: [Int]? = nil) {
        self.batchSize = batchSize
        self.sequenceLength = sequenceLength
        self.tokens = tokens
        self.labels = labels
        self.attentionMask = attentionMask ?? [Float](repeating: 1, count: tokens.count)
        self.images = images
        self.firstSample = firstSample
        self.lossWeights = lossWeights
        self.sources = sources
    }

    public var imageCount: Int { images?.shape[0] ?? 0 }

    /// targets[b*T + t] = labels[b*T + t + 1], and `ignoreIndex` at each sequence's last position.
    public var targets: [Int32] {
        (0 ..< tokens.count).map { i in (i + 1) % sequenceLength == 0 ? ignoreIndex : labels[i + 1] }
    }
}

/// How a batch's loss averages over its targets. "token": every target alike (Hugging Face's mean), so
/// long answers weigh more; "sample": every sequence alike, its targets sharing a weight of 1; "square":
/// in between, each target of a sequence with n targets weighing 1/sqrt(n) (InternVL 2.5's square averaging).
public enum LossAverage: String, CaseIterable, Sendable {
    case token, sample, square

    /// The weight of each of `batch`'s targets (B*T), or nil for the token average.
    public func weights(_ batch: Batch) -> [Float]? {
        guard self != .token else { return nil }
        let targets = batch.targets, t = batch.sequenceLength
        var weights = [Float](repeating: 0, count: targets.count)
        for row in 0 ..< batch.batchSize {
            let counted = (row * t ..< (row + 1) * t).filter { targets[$0] != ignoreIndex }
            guard !counted.isEmpty else { continue }
            let n = Float(counted.count), w = self == .sample ? 1 / n : 1 / n.squareRoot()
            for i in counted { weights[i] = w }
        }
        return weights
    }
}

/// The composed model: images -> ViT -> Perceive Sampler -> projection, spliced into the decoder's input
/// embeddings at the image placeholders; next-token loss over the labelled positions.
public final class XComposer {
    public let config: ModelConfig
    public let trainable: Set<ModelPart>
    public let parameters: Parameters
    let vision: VisionTransformer
    let sampler: PerceiveSampler
    let decoder: TextDecoder

    /// The parameter registry (Hugging Face keys, shapes, parts) of `config`, without allocating anything.
    public static func registry(_ config: ModelConfig, trainable: Set<ModelPart> = Set(ModelPart.allCases), lora: LoRAConfig? = nil) -> [ParameterSpec] {
        let builder = ParameterBuilder(trainable: trainable)
        _ = Parts(config, lora, builder)
        return builder.specs
    }

    /// A model with zero parameters (load or initialise them next), gradients for the `trainable` parts,
    /// and LoRA adapters on the decoder when `lora` is given.
    public init(config: ModelConfig, trainable: Set<ModelPart>, lora: LoRAConfig? = nil) {
        let measuring = ParameterBuilder(trainable: trainable)
        _ = Parts(config, lora, measuring)
        let binding = measuring.bind()
        let parts = Parts(config, lora, binding)
        self.config = config
        self.trainable = trainable
        parameters = binding.allocated!
        (vision, sampler, decoder) = (parts.vision, parts.sampler, parts.decoder)
    }

    /// The decoder's LoRA config, if it has adapters.
    public var lora: LoRAConfig? { decoder.lora }

    /// The parts, built in registry order by one builder.
    struct Parts {
        let vision: VisionTransformer, sampler: PerceiveSampler, decoder: TextDecoder
        init(_ c: ModelConfig, _ lora: LoRAConfig?, _ b: ParameterBuilder) {
            vision = VisionTransformer(c.visionConfig, b)
            sampler = PerceiveSampler(c.qformerConfig, queries: c.numQueryTokens, textHidden: c.textConfig.hiddenSize, b)
            decoder = TextDecoder(c.textConfig, lora: lora, b)
        }
    }

    /// Gives the ViT MAE's fixed 2-D sine-cosine position embeddings (a random-init option).
    public func useSinCosVisionPositions() { vision.fillSinCosPositions() }

    /// Starts the sampler's queries on a grid over the image (`PerceiveSampler.useGridQueries`); meant
    /// for a random model whose ViT has sin-cos positions.
    public func useGridQueries(sharpness: Float, zOrder: Bool = false, rng: inout RNG) throws {
        try sampler.useGridQueries(imageGrid: config.visionConfig.patchesPerSide, sharpness: sharpness, zOrder: zOrder, rng: &rng)
    }

    /// The same model with every adapter folded into its weight (W + scale B A) and no adapters: what
    /// Hugging Face loads. Without adapters, a plain copy.
    public func merged() -> XComposer {
        let out = XComposer(config: config, trainable: [])
        for spec in out.parameters.specs { out.parameters.value(spec.name)!.copy(from: parameters.value(spec.name)!) }
        guard let lora else { return out }
        for spec in parameters.specs where spec.name.hasSuffix(LoRAConfig.aSuffix) {
            let module = String(spec.name.dropLast(LoRAConfig.aSuffix.count))
            mergeLoRA(into: out.parameters.value(module + ".weight")!, a: parameters.value(spec.name)!,
                      b: parameters.value(module + LoRAConfig.bSuffix)!, scale: lora.scale)
        }
        return out
    }

    /// Everything one forward pass keeps for its backward pass, allocated from the step's arena.
    public struct Activations {
        let vision: VisionTransformer.Activations?
        let sampler: PerceiveSampler.Activations?
        let decoder: TextDecoder.Activations
        /// Row of each projected query in the decoder's (B*T) positions.
        let imagePositions: [Int]
        let targets: [Int32]
        let lossWeights: [Float]?
        /// The mean loss over the batch's targets, weighted by the batch's `lossWeights`.
        public let loss: Float
        /// The targets' total weight (their number when unweighted).
        public let weight: Double
        public var logits: Tensor { decoder.logits }

        /// The targets' unweighted losses summed by source, sequence i being from `sources[i]`: 2 x `count`
        /// entries, source s's loss sum at 2s and its number of targets at 2s + 1.
        public func lossSums(bySource sources: [Int], count: Int) -> [Double] {
            let (b, t) = (decoder.logits.shape[0], decoder.logits.shape[1])
            precondition(sources.count == b, "lossSums: \(sources.count) sources for a batch of \(b)")
            var sums = [Double](repeating: 0, count: 2 * count)
            for (i, source) in sources.enumerated() {
                for p in i * t ..< (i + 1) * t where targets[p] != ignoreIndex {
                    sums[2 * source] += Double(decoder.losses.data[p])
                    sums[2 * source + 1] += 1
                }
            }
            return sums
        }
    }

    /// Checks the batch against the model and returns the placeholder positions in reading order.
    public func imagePositions(_ batch: Batch) throws -> [Int] {
        let (b, t) = (batch.batchSize, batch.sequenceLength)
        guard batch.tokens.count == b * t, batch.labels.count == b * t, batch.attentionMask.count == b * t else {
            throw ModelError("batch: tokens, labels and attention mask need \(b) x \(t) = \(b * t) entries, got \(batch.tokens.count), \(batch.labels.count), \(batch.attentionMask.count)")
        }
        guard t <= config.textConfig.maxPositionEmbeddings else {
            throw ModelError("batch: sequence length \(t) exceeds max_position_embeddings \(config.textConfig.maxPositionEmbeddings)")
        }
        let v = config.visionConfig
        if let images = batch.images, images.shape != [images.shape[0], 3, v.imageSize, v.imageSize] {
            throw ModelError("batch: images have shape \(images.shape), expected (n, 3, \(v.imageSize), \(v.imageSize))")
        }
        let placeholder = Int32(config.imageTokenIndex!)
        let positions = batch.tokens.indices.filter { batch.tokens[$0] == placeholder }
        guard positions.count == batch.imageCount * config.numQueryTokens else {
            throw ModelError("batch: \(positions.count) image placeholder tokens for \(batch.imageCount) images of \(config.numQueryTokens) queries each")
        }
        return positions
    }

    /// Runs the model on `batch`, keeping activations (allocated from `arena`) for `backward`. `dropout`
    /// is the step's random stream for LoRA dropout; nil means none (evaluation).
    public func forward(_ batch: Batch, arena: Arena, dropout: RandomStream? = nil) throws -> Activations {
        let positions = try imagePositions(batch)
        let n = batch.imageCount, width = config.textConfig.hiddenSize
        let d = TextDecoder.Activations(arena, batch: batch.batchSize, length: batch.sequenceLength, decoder, dropout: dropout, firstSample: batch.firstSample)
        batch.attentionMask.withUnsafeBufferPointer { d.keyMask.data.update(from: $0.baseAddress!, count: $0.count) }
        decoder.embed(d, tokens: batch.tokens)
        var v: VisionTransformer.Activations?, s: PerceiveSampler.Activations?
        if let images = batch.images, n > 0 {
            let va = VisionTransformer.Activations(arena, images: n, config.visionConfig)
            vision.forward(va, images: images)
            let sa = PerceiveSampler.Activations(arena, images: n, imageTokens: config.visionConfig.tokens, sampler)
            sampler.forward(sa, imageEmbeddings: va.post.out)
            for (row, position) in positions.enumerated() {
                (d.embeddings.data + position * width).update(from: sa.projected.data + row * width, count: width)
            }
            (v, s) = (va, sa)
        }
        let targets = batch.targets
        let (loss, weight) = decoder.forward(d, targets: targets, weights: batch.lossWeights)
        return Activations(vision: v, sampler: s, decoder: d, imagePositions: positions, targets: targets, lossWeights: batch.lossWeights,
                           loss: loss, weight: weight)
    }

    /// Accumulates the gradients of the trainable parts for `lossScale` times the forward pass's mean loss.
    public func backward(_ a: Activations, tokens: [Int32], arena: Arena, lossScale: Float = 1) {
        guard !trainable.isEmpty, a.weight > 0 else { return }
        let width = config.textConfig.hiddenSize
        let dembeddings = decoder.backward(a.decoder, targets: a.targets, weights: a.lossWeights, scale: Float(Double(lossScale) / a.weight), arena: arena)
        // Image positions took their embeddings from the projection: their gradient goes there, not to the
        // placeholder token's embedding row.
        var dprojected: Tensor?
        if let s = a.sampler, trainable.contains(.sampler) || trainable.contains(.vision) {
            let dp = arena.tensor(s.projected.shape)
            for (row, position) in a.imagePositions.enumerated() {
                (dp.data + row * width).update(from: dembeddings.data + position * width, count: width)
            }
            dprojected = dp
        }
        for position in a.imagePositions { (dembeddings.data + position * width).update(repeating: 0, count: width) }
        decoder.embedBackward(dembeddings: dembeddings, tokens: tokens)
        guard let dp = dprojected, let s = a.sampler, let v = a.vision else { return }
        let trainVision = trainable.contains(.vision)
        let dimage = trainVision ? arena.tensor(v.post.out.shape) : nil
        sampler.backward(s, dprojected: dp, imageEmbeddings: v.post.out, dimage: dimage, arena: arena)
        if let dimage { vision.backward(v, dout: dimage, arena: arena) }
    }
}

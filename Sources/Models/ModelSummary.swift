import Foundation
import Tensors

/// Parameter counts per part and the memory one training step needs, from a config alone: the parts
/// are built with a measuring builder and arena, so a 7B config allocates nothing.
public struct ModelSummary {
    public let config: ModelConfig
    public let trainable: Set<ModelPart>
    public let parameters: [ModelPart: Int]
    /// Elements of the step's activations and backward buffers (forward keeps, backward scratch).
    public let activationElements: Int
    public let batch: Int, length: Int, images: Int

    public init(config: ModelConfig, trainable: Set<ModelPart>, batch: Int, length: Int, images: Int, lora: LoRAConfig? = nil) {
        self.config = config
        self.trainable = trainable
        (self.batch, self.length, self.images) = (batch, length, images)
        let builder = ParameterBuilder(trainable: trainable)
        let parts = XComposer.Parts(config, lora, builder)
        parameters = Dictionary(grouping: builder.specs, by: \.part).mapValues { $0.reduce(0) { $0 + $1.count } }
        // The same buffers XComposer.forward and backward take from the step's arena.
        let arena = Arena(measuring: ())
        _ = TextDecoder.Activations(arena, batch: batch, length: length, parts.decoder, dropout: lora.map { _ in RandomStream(seed: 0, stream: 0) })
        if images > 0 {
            _ = VisionTransformer.Activations(arena, images: images, config.visionConfig)
            _ = PerceiveSampler.Activations(arena, images: images, imageTokens: config.visionConfig.tokens, parts.sampler)
        }
        if !trainable.isEmpty {
            _ = TextDecoder.Scratch(arena, batch: batch, length: length, parts.decoder)
            if images > 0, trainable.contains(.sampler) || trainable.contains(.vision) {
                _ = arena.tensor([images, config.numQueryTokens, config.textConfig.hiddenSize])
                if trainable.contains(.vision) { _ = arena.tensor([images, config.visionConfig.tokens, config.visionConfig.hiddenSize]) }
                _ = PerceiveSampler.Scratch(arena, images: images, imageTokens: config.visionConfig.tokens, parts.sampler)
                if trainable.contains(.vision) { _ = VisionTransformer.Scratch(arena, images: images, parts.vision) }
            }
        }
        activationElements = arena.peakElements
    }

    public var totalParameters: Int { parameters.values.reduce(0, +) }
    public var trainableParameters: Int { parameters.filter { trainable.contains($0.key) }.values.reduce(0, +) }

    /// Bytes of Float32 weights, gradients, AdamW's two moments, and activations.
    public var memory: (weights: Int, gradients: Int, optimizer: Int, activations: Int) {
        (4 * totalParameters, 4 * trainableParameters, 8 * trainableParameters, 4 * activationElements)
    }

    /// A human-readable report.
    public var report: String {
        func count(_ n: Int) -> String {
            n >= 1_000_000_000 ? String(format: "%.2fB", Double(n) / 1e9) : n >= 1_000_000 ? String(format: "%.2fM", Double(n) / 1e6) : String(format: "%.1fK", Double(n) / 1e3)
        }
        func bytes(_ n: Int) -> String {
            n >= 1 << 30 ? String(format: "%.2f GiB", Double(n) / Double(1 << 30)) : String(format: "%.1f MiB", Double(n) / Double(1 << 20))
        }
        let names: [ModelPart: String] = [.vision: "vision (ViT)", .sampler: "sampler (Q-Former + projection)", .decoder: "decoder (LLM)", .lora: "LoRA adapters"]
        func row(_ name: String, _ n: Int, _ note: String) -> String {
            "  " + name.padding(toLength: 34, withPad: " ", startingAt: 0) + String(repeating: " ", count: max(0, 9 - count(n).count)) + count(n) + "  (\(n))" + note
        }
        var lines = ["parameters:"]
        for part in ModelPart.allCases where part != .lora || parameters[.lora] != nil {
            lines.append(row(names[part]!, parameters[part] ?? 0, trainable.contains(part) ? "  trained" : "  frozen"))
        }
        lines.append(row("total", totalParameters, ""))
        let m = memory
        lines.append("memory of one training step (Float32; batch \(batch) x \(length) tokens, \(images) images):")
        lines.append("  weights      \(bytes(m.weights))")
        lines.append("  gradients    \(bytes(m.gradients))")
        lines.append("  AdamW m, v   \(bytes(m.optimizer))")
        lines.append("  activations  \(bytes(m.activations))")
        lines.append("  total        \(bytes(m.weights + m.gradients + m.optimizer + m.activations))")
        return lines.joined(separator: "\n")
    }
}

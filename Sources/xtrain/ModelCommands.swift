import ArgumentParser
import Foundation
import Models

struct Model: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect model configs.",
        subcommands: [ModelInfo.self]
    )
}

/// `xtrain model info CONFIG`: parameter counts per part and the memory of a training step.
struct ModelInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Print a model config's parameter count per part and the memory one training step needs."
    )

    @Argument(help: "A model config (Hugging Face Blip2Config JSON), e.g. Recipes/models/tiny.json, or a Hugging Face model directory.")
    var config: String

    @Option(help: "Sequences per batch.")
    var batch = 8

    @Option(help: "Tokens per sequence.")
    var length = 112

    @Option(help: "Images per batch.")
    var images = 8

    @Option(help: "Comma-separated frozen parts (vision, sampler, decoder); the paper's stage A freezes the ViT.")
    var frozen = "vision"

    func run() throws {
        var url = URL(fileURLWithPath: config)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
            url.appendPathComponent("config.json")
        }
        let modelConfig = try ModelConfig.load(url)
        var frozenParts = Set<ModelPart>()
        for name in frozen.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
            guard let part = ModelPart(rawValue: name) else {
                throw ValidationError("--frozen: unknown part '\(name)' (expected vision, sampler or decoder)")
            }
            frozenParts.insert(part)
        }
        guard batch > 0, length > 0, images >= 0 else { throw ValidationError("--batch and --length must be positive, --images not negative") }
        let summary = ModelSummary(config: modelConfig, trainable: Set(ModelPart.allCases).subtracting(frozenParts),
                                   batch: batch, length: length, images: images)
        print("\(url.path)")
        print(summary.report)
    }
}

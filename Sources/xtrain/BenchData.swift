import ArgumentParser
import Datasets
import Foundation
import Training

/// `xtrain bench data`: zstd decompression speed on one core, the loader's batch rate next to the
/// training step that consumes the batches, and how much of the batches is padding.
struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Measure shard decompression (one core) and the loader's speed against a recipe's training step."
    )

    @Argument(help: "A recipe: its training data, batch and sequence length are used.")
    var recipe: String

    @Option(help: "Batches to time through the loader.")
    var batches = 100

    @Option(help: "Training steps to time.")
    var steps = 10

    func run() throws {
        let loaded = try LoadedRecipe.load(URL(fileURLWithPath: recipe))
        let r = loaded.recipe
        let sources = try r.data.train.map { try Dataset(loaded.resolve($0.path)) }
        var bytes = 0
        var start = Date()
        for s in sources { bytes += try s.decompressAll() }
        var seconds = Date().timeIntervalSince(start)
        print(String(format: "decompression: %.0f MB in %.2f s = %.0f MB/s on one core", Double(bytes) / 1e6, seconds, Double(bytes) / 1e6 / seconds))

        let micro = r.data.batchSize / r.gradientAccumulation
        let loader = try r.trainLoader(sources)
        _ = try loader.next()
        start = Date()
        var padded = 0, real = 0
        for _ in 0 ..< batches {
            let batch = try loader.next()
            padded += batch.tokens.count
            real += batch.attentionMask.reduce(0) { $0 + Int($1) }
        }
        let perBatch = Date().timeIntervalSince(start) / Double(batches)
        print(String(format: "padding: %.2f batch tokens per sequence token over %d batches (data.length_window %d)",
                     Double(padded) / Double(real), batches, r.lengthWindow))

        let run = FileManager.default.temporaryDirectory.appendingPathComponent("xtrain-bench-\(getpid())")
        defer { try? FileManager.default.removeItem(at: run) }
        let timed = try LoadedRecipe.load(URL(fileURLWithPath: recipe), overrides: ["steps=\(steps + 1)", "checkpoint.dir=\(run.path)", "checkpoint.every=\(steps + 1)"])
        let trainer = try Trainer(recipe: timed, resume: .no, log: { _ in })
        let summary = try trainer.run(quiet: true)
        seconds = summary.stepSeconds.dropFirst().reduce(0, +) / Double(steps)
        let perStep = seconds / Double(r.gradientAccumulation)
        print(String(format: "loader: %.1f ms per micro-batch of %d x %d tokens (one thread, no prefetch); training step: %.1f ms per micro-batch; the loader is %.0fx faster",
                     1000 * perBatch, micro, r.data.sequenceLength, 1000 * perStep, perStep / perBatch))
    }
}

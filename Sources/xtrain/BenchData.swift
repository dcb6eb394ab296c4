import ArgumentParser
import Datasets
import Foundation

/// `xtrain bench data`: zstd decompression speed on one core and the loader's batch rate.
struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Measure shard decompression (one core) and loader throughput on datasets."
    )

    @Argument(help: "Dataset directories, mixed with equal weights.")
    var directories: [String]

    @Option(help: "Sequences per batch.")
    var batch = 8

    @Option(help: "Tokens per sequence.")
    var length = 256

    @Option(help: "Batches to time.")
    var batches = 200

    func run() throws {
        let sources = try directories.map { try Dataset(URL(fileURLWithPath: $0)) }
        var bytes = 0
        let start = Date()
        for s in sources { bytes += try s.decompressAll() }
        let seconds = Date().timeIntervalSince(start)
        print(String(format: "decompression: %.0f MB in %.2f s = %.0f MB/s on one core", Double(bytes) / 1e6, seconds, Double(bytes) / 1e6 / seconds))
        let loader = try Loader(sources: sources, weights: Array(repeating: 1, count: sources.count), globalBatch: batch, sequenceLength: length, seed: 1)
        _ = try loader.next()
        let t0 = Date()
        var images = 0
        for _ in 0 ..< batches { images += try loader.next().images?.shape[0] ?? 0 }
        let elapsed = Date().timeIntervalSince(t0)
        print(String(format: "loader: %d batches of %d x %d tokens (%.1f images each) in %.2f s = %.1f ms per batch, %.0f batches/s (one thread, no prefetch)",
                     batches, batch, length, Double(images) / Double(batches), elapsed, 1000 * elapsed / Double(batches), Double(batches) / elapsed))
    }
}

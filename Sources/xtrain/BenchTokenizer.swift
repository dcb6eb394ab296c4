import ArgumentParser
import Datasets
import Foundation

/// `xtrain bench tokenizer`: encoding speed of a tokenizer on one thread, line by line as `data prepare`
/// encodes records; optionally the ids of every line, for comparison with the reference library.
struct BenchTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Measure a tokenizer's encoding speed (MB/s of text on one thread) and optionally write its ids.",
        discussion: "Tools/reference/compare_tokenizer.py checks the written ids against sentencepiece or tokenizers. Example: xtrain bench tokenizer tokenizer.model --text english.txt"
    )

    @Argument(help: "A SentencePiece .model or Hugging Face tokenizer.json.")
    var tokenizer: String

    @Option(help: "A UTF-8 text file; each line is encoded on its own.")
    var text: String

    @Option(help: "Encode the text at least for this many seconds (repeating it).")
    var seconds = 2.0

    @Option(help: "Write the ids of each line to this file, one JSON array per line.")
    var ids: String?

    func run() throws {
        let url = URL(fileURLWithPath: tokenizer)
        var start = Date()
        // The template map plays no part in encoding: the model alone.
        let model = try Tokenizer.Model(try Data(contentsOf: url), place: url.path)
        let load = Date().timeIntervalSince(start)
        guard let content = FileManager.default.contents(atPath: text) else { throw ValidationError("\(text): cannot read") }
        let lines = String(decoding: content, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let bytes = lines.reduce(0) { $0 + $1.utf8.count }
        if let ids {
            let out = lines.map { "[" + model.encode($0).map(String.init).joined(separator: ", ") + "]" }.joined(separator: "\n") + "\n"
            try out.write(toFile: ids, atomically: true, encoding: .utf8)
        }
        var passes = 0, tokens = 0
        start = Date()
        repeat {
            for line in lines { tokens += model.encode(line).count }
            passes += 1
        } while Date().timeIntervalSince(start) < seconds
        let elapsed = Date().timeIntervalSince(start)
        let megabytes = Double(bytes * passes) / 1e6
        print(String(format: "%@: loaded in %.2f s; %.1f MB (%d lines x %d) in %.2f s = %.2f MB/s on one thread, %.2f bytes per token",
                     url.lastPathComponent, load, megabytes, lines.count, passes, elapsed, megabytes / elapsed, Double(bytes * passes) / Double(max(tokens, 1))))
    }
}

import Foundation
import Models

/// `metrics.jsonl` in the run directory: one JSON object per line (training steps and evaluations).
final class MetricsLog {
    private let handle: FileHandle

    /// Opens the log for appending; lines of steps after `keepingThrough` (left by a run that went on
    /// past the checkpoint being resumed) are dropped first.
    init(_ url: URL, keepingThrough step: Int) throws {
        if let data = FileManager.default.contents(atPath: url.path) {
            let kept = data.split(separator: UInt8(ascii: "\n")).filter { line in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], let s = object["step"] as? Int else { return false }
                return s <= step
            }
            var out = Data()
            for line in kept { out.append(contentsOf: line); out.append(UInt8(ascii: "\n")) }
            try out.write(to: url, options: .atomic)
        } else {
            _ = FileManager.default.createFile(atPath: url.path, contents: nil)   // a failure fails the open below
        }
        guard let handle = FileHandle(forWritingAtPath: url.path) else { throw TrainingError("\(url.path): cannot open for writing") }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    func append(_ object: [String: Any]) throws {
        var line = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        line.append(UInt8(ascii: "\n"))
        try handle.write(contentsOf: line)
    }
}

/// The progress line: rewritten in place on a terminal, a plain line every `every` steps otherwise.
final class ProgressLine {
    private let total: Int, every: Int, quiet: Bool
    private let terminal = isatty(STDOUT_FILENO) != 0
    private var recent: [Double] = []
    private var written = false

    init(total: Int, every: Int, quiet: Bool = false) {
        self.total = total
        self.every = every
        self.quiet = quiet
    }

    func record(step: Int, loss: Float, rates: [ModelPart: Double], tokens: Int, samples: Int, seconds: Double) {
        recent.append(seconds)
        if recent.count > 20 { recent.removeFirst() }
        guard !quiet, terminal || step % every == 0 || step == total else { return }
        let perStep = recent.reduce(0, +) / Double(recent.count)
        let eta = Int(perStep * Double(total - step))
        let lr = rates.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \(String(format: "%.2e", $0.value))" }.joined(separator: " ")
        let line = String(format: "step %d/%d | loss %.4f | lr %@ | %.0f tok/s | %.1f samples/s | %.0f ms/step | ETA %dm%02ds",
                          step, total, loss, lr, Double(tokens) / seconds, Double(samples) / seconds, 1000 * perStep, eta / 60, eta % 60)
        if terminal {
            FileHandle.standardOutput.write(("\r" + line + "\u{1B}[K").data(using: .utf8)!)
            written = true
        } else {
            print(line)
            fflush(stdout)
        }
    }

    /// A line of its own (checkpoints, evaluations), without breaking the progress line.
    func message(_ text: String) {
        guard !quiet else { return }
        if terminal && written { FileHandle.standardOutput.write("\n".data(using: .utf8)!) }
        print(text)
        fflush(stdout)
        written = false
    }

    func finish() {
        if terminal && written { FileHandle.standardOutput.write("\n".data(using: .utf8)!) }
    }
}

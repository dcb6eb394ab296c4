import ArgumentParser
import Datasets
import Foundation

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Make, check and look into datasets of sharded zstd token streams.",
        subcommands: [DataSynth.self, DataPrepare.self, DataVerify.self, DataInspect.self]
    )
}

/// A progress line on a terminal (rewritten in place), plain lines every few seconds otherwise.
final class Progress {
    private let label: String
    private let terminal = isatty(STDERR_FILENO) != 0
    private var last = Date.distantPast

    init(_ label: String) { self.label = label }

    func update(_ done: Int, _ total: Int, force: Bool = false) {
        let now = Date()
        guard force || now.timeIntervalSince(last) > (terminal ? 0.1 : 5) else { return }
        last = now
        let percent = total > 0 ? 100 * done / total : 100
        let width = 30, filled = total > 0 ? width * done / total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let line = "\(label) [\(bar)] \(done)/\(total) \(percent)%"
        FileHandle.standardError.write(((terminal ? "\r" : "") + line + (terminal ? "" : "\n")).data(using: .utf8)!)
    }

    func finish() {
        if terminal { FileHandle.standardError.write("\n".data(using: .utf8)!) }
    }
}

struct DataSynth: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate the synthetic 'shapes' dataset: captions, VQA, instructions, image selection and text, train and eval splits."
    )

    @Argument(help: "The synthetic dataset to make (only 'shapes').")
    var name: String

    @Option(help: "Output directory (one dataset per task and split below it).")
    var out: String

    @Option(help: "Image placeholder tokens per image: the model's num_query_tokens.")
    var queries = 64

    @Option(help: "Multiply every task's record count by this.")
    var scale = 1.0

    @Option(help: "Random seed of the train split (eval uses seed + 1000).")
    var seed: UInt64 = 1

    @Option(help: "Image side in pixels (224 for CLIP-sized models; smaller only for tests).")
    var imageSize = 224

    @Flag(help: "Only make the tasks whose train and eval datasets are not there yet with this tokenizer, the current format and size (the same records as a full run).")
    var ifMissing = false

    @Option(help: "'byte': one token per byte; 'bpe': a byte-level BPE trained on the shapes texts (a word is one token); or a Hugging Face tokenizer.json or SentencePiece .model.")
    var tokenizer = "byte"

    func run() throws {
        guard name == "shapes" else { throw ValidationError("unknown synthetic dataset '\(name)' (available: shapes)") }
        guard scale > 0, queries > 0 else { throw ValidationError("--scale and --queries must be positive") }
        let root = URL(fileURLWithPath: out)
        let chosen = switch tokenizer {
        case "bpe": ShapesDataset.tokenizer(seed: seed)
        case "byte": Tokenizer.byte
        default: try Tokenizer.load(URL(fileURLWithPath: tokenizer))
        }
        let complete = { (task: ShapesDataset.Task) in ["train", "eval"].allSatisfy {
            let index = root.appendingPathComponent("\(task.name)/\($0)/index.json")
            let made = try? JSONDecoder().decode(DatasetIndex.self, from: Data(contentsOf: index))
            return made?.tokenizer.identity == chosen.identity && made?.generator == task.generator && made?.records == task.records($0, scale: scale)
        } }
        let tasks = ifMissing ? ShapesDataset.tasks.filter { !complete($0) } : ShapesDataset.tasks
        if tasks.isEmpty {
            print("\(out): already there")
            return
        }
        for task in tasks where ifMissing {
            let directory = root.appendingPathComponent(task.name)
            guard FileManager.default.fileExists(atPath: directory.path) else { continue }
            print("\(directory.path): incomplete, or made with another tokenizer, format or size; made again")
            try FileManager.default.removeItem(at: directory)
        }
        var progress: (name: String, bar: Progress)?
        try ShapesDataset.generate(root: root, tasks: tasks, queries: queries, scale: scale, seed: seed, imageSide: imageSize,
                                   tokenizer: chosen) { dataset, done, total in
            if progress?.name != dataset {
                progress?.bar.finish()
                progress = (dataset, Progress("synth \(dataset)"))
            }
            progress!.bar.update(done, total, force: done == total)
        }
        progress?.bar.finish()
        print("wrote \(out)")
    }
}

struct DataVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every shard's hash, every zstd frame's checksum and every record of a dataset."
    )

    @Argument(help: "Dataset directories (each holds an index.json).")
    var directories: [String]

    func run() throws {
        for directory in directories {
            let dataset = try Dataset(URL(fileURLWithPath: directory))
            let bar = Progress("verify \(directory)")
            try dataset.verify { bar.update($0, dataset.count) }
            bar.update(dataset.count, dataset.count, force: true)
            bar.finish()
            print("\(directory): OK, \(dataset.count) records in \(dataset.index.shards.count) shards")
        }
    }
}

struct DataInspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print a dataset's counts, token and image statistics, and a decoded sample."
    )

    @Argument(help: "A dataset directory.")
    var directory: String

    @Option(help: "Which record to decode.")
    var sample = 0

    @Option(help: ArgumentHelp("Also write the sample's images as PNG files PREFIX-1.png, PREFIX-2.png, ... (e.g. for xtrain generate --image).", valueName: "prefix"))
    var saveImages: String?

    func run() throws {
        let dataset = try Dataset(URL(fileURLWithPath: directory))
        let index = dataset.index
        print("\(directory): \(index.records) records in \(index.shards.count) shards, \(index.shards.reduce(0) { $0 + $1.bytes }) bytes")
        print("tokenizer: \(index.tokenizer.kind) (\(index.tokenizer.identity)), vocabulary \(index.tokenizer.vocabSize), \(index.tokenWidth)-byte ids")
        print("template tokens: " + SpecialToken.allCases.map { "\($0.text) \(dataset.tokenizer.id($0))" }.joined(separator: ", "))
        print("images: \(index.imageSide)x\(index.imageSide) RGB, \(index.imageQueries) placeholder tokens each")
        print("kinds: " + index.kinds.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        var lengths: [Int] = [], labelled = 0, tokens = 0, images = 0, brightness = 0.0
        let stride = max(1, dataset.count / 2000)
        for i in Swift.stride(from: 0, to: dataset.count, by: stride) {
            let r = try dataset.record(i)
            lengths.append(r.tokens.count)
            tokens += r.tokens.count
            labelled += r.loss.filter { $0 }.count
            images += r.images.count
            for image in r.images { brightness += Double(image.pixels.reduce(0) { $0 + Int($1) }) / Double(image.pixels.count) }
        }
        lengths.sort()
        print("tokens per record (\(lengths.count) sampled): min \(lengths.first!), median \(lengths[lengths.count / 2]), max \(lengths.last!), mean \(String(format: "%.1f", Double(tokens) / Double(lengths.count)))")
        print("loss targets: \(String(format: "%.1f", 100 * Double(labelled) / Double(max(tokens, 1))))% of tokens; images per record: \(String(format: "%.2f", Double(images) / Double(lengths.count))), mean pixel value \(String(format: "%.1f", brightness / Double(max(images, 1))))")
        guard sample >= 0, sample < dataset.count else { throw ValidationError("--sample \(sample) outside 0..<\(dataset.count)") }
        let r = try dataset.record(sample)
        let text = dataset.tokenizer.render(r.tokens).replacingOccurrences(of: String(repeating: "<image>", count: index.imageQueries), with: "<image x\(index.imageQueries)>")
        print("record \(sample) (\(r.kind.name), \(r.tokens.count) tokens, \(r.images.count) images):")
        print(text)
        let targets = dataset.tokenizer.render(zip(r.tokens, r.loss).filter { $0.1 }.map(\.0))
        print("loss targets: \(targets)")
        if let prefix = saveImages {
            for (i, image) in r.images.enumerated() {
                let url = URL(fileURLWithPath: "\(prefix)-\(i + 1).png")
                try ImageProcessing.savePNG(image, to: url)
                print("wrote \(url.path)")
            }
        }
    }
}

struct DataPrepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Tokenize JSONL records (text, caption, conversation, interleaved) and their images into a dataset.",
        discussion: "The JSONL schema is documented in Data/README.md. Images (PNG or JPEG) are resized and centre-cropped to 224 as CLIP does. The dataset is written to OUT.partial-PID and renamed into place only when complete."
    )

    @Option(help: "The JSONL file of records.")
    var input: String

    @Option(help: "The dataset directory to create (must not exist).")
    var out: String

    @Option(help: "Image placeholder tokens per image: the model's num_query_tokens.")
    var queries = 64

    @Option(help: "A SentencePiece .model or Hugging Face tokenizer.json to tokenize with (default: the byte tokenizer of the bundled data).")
    var tokenizer: String?

    @Option(help: ArgumentHelp("Map a template token to a token of --tokenizer, by its text or id (repeatable).",
                               discussion: "NAME is one of pad, bos, eos, image, user, bot, eou, eob; e.g. --special eou=<TOKEN_103167> --special image=103166.",
                               valueName: "NAME=TOKEN"))
    var special: [String] = []

    func run() throws {
        var overrides: [String: String] = [:]
        for s in special {
            guard let eq = s.firstIndex(of: "=") else { throw ValidationError("--special \(s): expected NAME=TOKEN or NAME=ID") }
            overrides[String(s[..<eq])] = String(s[s.index(after: eq)...])
        }
        guard tokenizer != nil || overrides.isEmpty else { throw ValidationError("--special needs --tokenizer") }
        let chosen = try tokenizer.map { try Tokenizer.load(URL(fileURLWithPath: $0), overrides: overrides) } ?? .byte
        let bar = Progress("prepare \(input)")
        let index = try Prepare.run(input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: out), queries: queries, tokenizer: chosen) { bar.update($0, $1) }
        bar.finish()
        print("wrote \(out): \(index.records) records in \(index.shards.count) shards, tokenizer \(index.tokenizer.kind) (\(index.tokenizer.identity)), vocabulary \(index.tokenizer.vocabSize)")
        print("template tokens: " + SpecialToken.allCases.map { "\($0.text) \(chosen.id($0))" }.joined(separator: ", "))
    }
}

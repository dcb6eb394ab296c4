import ArgumentParser
import Datasets
import Foundation
import Models
import Tensors
import Training

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Held-out loss and task metrics (VQA exact match, caption attributes, image selection) of a checkpoint, beside chance and the commonest answer's score.",
        discussion: "Answers are generated greedily from each record's prompt; an answer in steps (\"red: at the top left a square, at the top right not red. no\") is scored by its final answer, after the last \". \", and also counted as a whole. Example: xtrain eval Checkpoints/instruct/step-0000150.h5 --data Data/shapes/vqa/eval --data Data/shapes/captions/eval"
    )

    @Argument(help: "A checkpoint.")
    var checkpoint: String

    @Option(help: "An evaluation dataset (repeatable).")
    var data: [String] = []

    @Option(help: "Records per dataset.")
    var limit = 200

    @Option(help: "Tokens per sequence for the held-out loss.")
    var length = 224

    @Option(help: "Also write the scores as JSON to this file.")
    var json: String?

    @Option(help: "Print up to this many wrong answers per dataset, each after its question.")
    var misses = 0

    @OptionGroup var threads: ThreadsOption

    func run() throws {
        _ = try threads.apply()
        guard !data.isEmpty else { throw ValidationError("give at least one --data directory") }
        let (header, model) = try Checkpoint.model(URL(fileURLWithPath: checkpoint))
        let datasets = try data.map { (name: $0, dataset: try Dataset(URL(fileURLWithPath: $0))) }
        for d in datasets {
            try header.expectTokenizer(d.dataset.tokenizer, of: d.name)
            try d.dataset.checkCompatible(vocabSize: model.config.textConfig.vocabSize, imageQueries: model.config.numQueryTokens, imageTokenIndex: model.config.imageTokenIndex!)
        }
        let scores = try Evaluation.run(model: model, datasets: datasets, limit: limit, sequenceLength: length, misses: misses)
        for s in scores {
            let value = s.value.isNaN ? "-" : String(format: "%.1f%%", 100 * s.value) + (s.standardError.isNaN ? "" : String(format: " ± %.1f", 196 * s.standardError))
            print("\(s.dataset): \(s.metric) \(value) (\(s.baselines)) over \(s.examples) records; held-out loss \(String(format: "%.4f", s.loss))"
                  + (s.wholeAnswers.map { String(format: "; answers in steps right as a whole %.1f%%", 100 * $0) } ?? ""))
            if !s.breakdown.isEmpty {
                print("  by " + (s.metric.hasSuffix("attribute accuracy") ? "attribute" : "question") + ": "
                      + s.breakdown.sorted { $0.key < $1.key }.map { String(format: "%@ %.1f%%", $0.key, 100 * $0.value) }.joined(separator: ", "))
            }
            for sample in s.samples { print("  " + sample.replacingOccurrences(of: "\n", with: "\\n")) }
            if !s.misses.isEmpty { print("  wrong answers:") }
            for miss in s.misses { print("    " + miss.replacingOccurrences(of: "\n", with: "\\n")) }
        }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            try encoder.encode(scores).write(to: URL(fileURLWithPath: json))
        }
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer a prompt about images in the conversation template, with a key/value cache.",
        discussion: "The prompt becomes <s>[image]<|User|>: PROMPT<eou>\\n<|Bot|>: with one image, <s>Image 1: [image]\\nImage 2: [image]\\n<|User|>: PROMPT<eou>\\n<|Bot|>: with several (the shapes data's layouts), without its last space, which the answer begins with; generation stops at <eob>. Example: xtrain generate Checkpoints/instruct/step-0000150.h5 --image cat.png --prompt 'What color is the circle?'"
    )

    @Argument(help: "A checkpoint.")
    var checkpoint: String

    @Option(help: "An image file, PNG or JPEG (repeatable; in order).")
    var image: [String] = []

    @Option(help: "The user's message.")
    var prompt: String

    @Flag(help: "Sample instead of greedy decoding.")
    var sample = false

    @Option(help: "Sampling temperature.")
    var temperature: Float = 0.8

    @Option(help: "Sample among the k most likely tokens.")
    var topK: Int?

    @Option(help: "Sampling seed.")
    var seed: UInt64 = 1

    @Option(help: "At most this many new tokens.")
    var maxTokens = 128

    @Flag(help: "Recompute the whole sequence for every token (no key/value cache).")
    var noCache = false

    @Option(help: "A dataset directory whose tokenizer (and template token ids) to use; default: the one the checkpoint records, else the byte tokenizer.")
    var data: String?

    @OptionGroup var threads: ThreadsOption

    func run() throws {
        _ = try threads.apply()
        let (header, model) = try Checkpoint.model(URL(fileURLWithPath: checkpoint))
        let side = model.config.visionConfig.imageSize
        let images = try image.map { ImageProcessing.clipResizeAndCrop(try ImageProcessing.load(URL(fileURLWithPath: $0)), side: side) }
        let tokenizer = try data.map { try Dataset(URL(fileURLWithPath: $0)).tokenizer } ?? header.tokenizer ?? .byte
        let ids = conversationPrompt(prompt, images: images, tokenizer: tokenizer, queries: model.config.numQueryTokens)
        let sampling: Sampling = sample ? .sample(temperature: temperature, topK: topK, seed: seed) : .greedy
        let start = Date()
        let tokens = try Generator(model: model).generate(prompt: ids, images: images.isEmpty ? nil : Loader.normalize(images, side: side),
                                                          maxTokens: maxTokens, stop: [tokenizer.id(.endOfBot), tokenizer.id(.eos)],
                                                          sampling: sampling, cached: !noCache)
        let seconds = Date().timeIntervalSince(start)
        print(tokenizer.render(tokens.filter { $0 != tokenizer.id(.endOfBot) && $0 != tokenizer.id(.eos) }).trimmingCharacters(in: .whitespaces))
        FileHandle.standardError.write(String(format: "%d tokens in %.2f s (%.1f tokens/s, %@)\n", tokens.count, seconds, Double(tokens.count) / seconds,
                                              noCache ? "no cache" : "key/value cache").data(using: .utf8)!)
    }
}

/// The ids of the conversation template's prompt for `message` about `images`, laid out as the shapes data
/// lays them out: one image before the turn, `<s>[image]<|User|>: MESSAGE<eou>\n<|Bot|>:`; several numbered,
/// `<s>Image 1: [image]\nImage 2: [image]\n<|User|>: MESSAGE<eou>\n<|Bot|>:`. The answer follows with its
/// leading space.
func conversationPrompt(_ message: String, images: [RGBImage], tokenizer: Tokenizer, queries: Int) -> [Int32] {
    var builder = RecordBuilder(kind: .conversation, tokenizer: tokenizer, queries: queries)
    builder.special(.bos, loss: false)
    if images.count == 1 { builder.image(images[0]) } else { builder.numberedImages(images) }
    builder.prompt(user: message)
    return builder.record.tokens
}

struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Draw a run's metrics.jsonl (losses, learning rates, task metrics) as an SVG file."
    )

    @Argument(help: "A run directory (holding metrics.jsonl).")
    var directory: String

    @Option(help: "The SVG file to write (default: RUN/metrics.svg).")
    var out: String?

    func run() throws {
        let folder = URL(fileURLWithPath: directory)
        let svg = try Plot.svg(metrics: folder.appendingPathComponent("metrics.jsonl"), title: folder.lastPathComponent)
        let target = out ?? folder.appendingPathComponent("metrics.svg").path
        try svg.write(toFile: target, atomically: true, encoding: .utf8)
        print("wrote \(target)")
    }
}

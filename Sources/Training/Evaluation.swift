import Datasets
import Foundation
import Models
import Tensors

/// Token-mean next-token losses: over all counted targets, and over each data source's (nil for a source
/// none of whose targets were seen).
public struct LossesBySource {
    public let mean: Double
    public let bySource: [Double?]

    /// From `XComposer.Activations.lossSums` added up: each source's loss sum and target count.
    init(sums: [Double]) {
        var sum = 0.0, targets = 0.0
        for s in stride(from: 0, to: sums.count, by: 2) {
            sum += sums[s]
            targets += sums[s + 1]
        }
        mean = targets > 0 ? sum / targets : 0
        bySource = stride(from: 0, to: sums.count, by: 2).map { sums[$0 + 1] > 0 ? sums[$0] / sums[$0 + 1] : nil }
    }
}

/// Held-out loss and task metrics on evaluation datasets. The metric follows the records' kind:
/// captions, and conversations whose first answer is a description ("Describe the image."), are scored by
/// attribute (the shapes world's colour, shape, size, position and count words), other conversations by
/// exact match of the first answer (VQA), interleaved documents by exact match of the answer (image
/// selection). An answer given in steps ("red: at the top left a square, at the top right not red. no") is
/// scored by its final answer, the text after its last ". ", and also counted as a whole. Answers are
/// generated greedily from the prompt: the record up to its first loss target. Chance levels are those of
/// guessing uniformly among the shapes world's final answers.
public enum Evaluation {
    public struct Score: Codable, Sendable {
        public let dataset: String
        public let metric: String
        public let value: Double
        /// The standard error of `value` over the records (Agresti-Coull: their scores' standard deviation
        /// with two pseudo-records scoring 1 and two scoring 0, over sqrt(n + 4)): `value` +- 1.96 of it is
        /// the 95% interval. nan when there is no metric.
        public let standardError: Double
        public let chance: Double?
        /// What always giving each question kind's commonest reference answer (among these records) would
        /// score: a baseline that needs no image, above `chance` when the answers are unbalanced. nil
        /// unless every record is scored by exact match.
        public let commonest: Double?
        public let examples: Int
        public let loss: Double
        /// Of the records whose reference answers in steps, the fraction answered right as a whole (every
        /// step and the final answer); nil when no reference does.
        public let wholeAnswers: Double?
        /// The first few generated answers beside their references.
        public let samples: [String]
        /// The first wrong answers (as many as asked for), each after its question.
        public let misses: [String]
        /// Accuracy by caption attribute (count, size, color, shape, position) or by question kind.
        public let breakdown: [String: Double]

        /// What the value is read against: "chance 49.0%", with ", commonest answer 54.4%" when known.
        public var baselines: String {
            "chance " + (chance.map { String(format: "%.1f%%", 100 * $0) } ?? "-")
                + (commonest.map { String(format: ", commonest answer %.1f%%", 100 * $0) } ?? "")
        }
    }

    public static func run(model: XComposer, datasets: [(name: String, dataset: Dataset)], limit: Int, sequenceLength: Int, batchSize: Int = 8,
                           misses missLimit: Int = 0) throws -> [Score] {
        let merging = Generator(model: model)   // merges any adapters, once; the others share its weights
        let generators = [merging] + (1 ..< Parallel.threads).map { _ in Generator(model: merging.model) }
        var scores: [Score] = []
        for (name, dataset) in datasets {
            let n = min(limit, dataset.count)
            let loss = try heldOutLoss(model: model, dataset: dataset, records: n, sequenceLength: sequenceLength, batchSize: batchSize)
            let first = try dataset.record(0)
            guard first.kind != .text else {
                scores.append(Score(dataset: name, metric: "loss only", value: .nan, standardError: .nan, chance: nil, commonest: nil, examples: n, loss: loss,
                                    wholeAnswers: nil, samples: [], misses: [], breakdown: [:]))
                continue
            }
            var total = 0.0, squares = 0.0, chance = 0.0, samples: [String] = [], misses: [String] = [], described = false
            var partRight: [String: Double] = [:], partScored: [String: Double] = [:], references: [(kind: String, answer: String)] = []
            var stepped = 0, steppedRight = 0
            let tokenizer = dataset.tokenizer
            for case let (kind, prompt, said, truth)? in try answers(generators, dataset: dataset, records: n) {
                let answered = "generated \"\(said)\" for \"\(truth)\""
                if samples.count < 3 { samples.append(answered) }
                if kind == .caption || !objects(truth).isEmpty {
                    described = true
                    let score = captionAttributes(said: said, truth: truth)
                    let fraction = score.right.values.reduce(0, +) / score.scored.values.reduce(0, +)
                    if fraction < 1, misses.count < missLimit { misses.append(answered) }
                    total += fraction
                    squares += fraction * fraction
                    chance += score.chance
                    partRight.merge(score.right, uniquingKeysWith: +)
                    partScored.merge(score.scored, uniquingKeysWith: +)
                } else {
                    let reference = truth.trimmingCharacters(in: .whitespaces), answer = said.trimmingCharacters(in: .whitespaces)
                    let final = finalAnswer(reference), right = finalAnswer(answer) == final ? 1.0 : 0
                    if final != reference {
                        stepped += 1
                        if answer == reference { steppedRight += 1 }
                    }
                    let question = asked(tokenizer.render(prompt)), questionKind = questionKind(question), kindName = questionKind?.kind ?? "other"
                    if right == 0, misses.count < missLimit { misses.append("\"\(question)\": " + answered) }
                    total += right
                    squares += right * right
                    chance += questionKind?.chance ?? 0
                    partRight[kindName, default: 0] += right
                    partScored[kindName, default: 0] += 1
                    references.append((kindName, final))
                }
            }
            let metric = first.kind == .caption ? "caption attribute accuracy" : first.kind == .interleaved ? "selection accuracy"
                : described ? "description attribute accuracy" : "VQA exact match"
            // Agresti-Coull: two pseudo-records scoring 1 and two scoring 0, so that all right or all wrong
            // still has an interval; for right-or-wrong scores, sqrt(p~ (1 - p~) / (n + 4)).
            let padded = Double(n + 4), paddedMean = (total + 2) / padded
            let standardError = ((squares + 2) / padded - paddedMean * paddedMean).squareRoot() / padded.squareRoot()
            scores.append(Score(dataset: name, metric: metric, value: total / Double(n), standardError: standardError, chance: chance / Double(n),
                                commonest: described ? nil : commonestAnswerRate(references), examples: n, loss: loss,
                                wholeAnswers: stepped > 0 ? Double(steppedRight) / Double(stepped) : nil, samples: samples,
                                misses: misses, breakdown: partRight.reduce(into: [:]) { $0[$1.key] = $1.value / partScored[$1.key]! }))
        }
        return scores
    }

    /// Each of the first `records` records' kind, prompt, greedy answer and reference (rendered, without
    /// the stop token); nil for a record without a loss target. The records are split into contiguous runs
    /// (`Parallel.partition`), one per generator, generated side by side with single-threaded kernels, so
    /// the answers are the same whatever the thread count.
    static func answers(_ generators: [Generator], dataset: Dataset, records n: Int) throws
        -> [(kind: RecordKind, prompt: [Int32], said: String, truth: String)?] {
        let tokenizer = dataset.tokenizer, stop: Set<Int32> = [tokenizer.id(.eos), tokenizer.id(.endOfBot)]
        let threads = Parallel.threads, runs = Parallel.partition(n)
        Parallel.setThreads(1)
        defer { Parallel.setThreads(threads) }
        // A dataset reads through its own cache, so each generator reads its own.
        let readers = try [dataset] + runs.dropFirst().map { _ in try Dataset(dataset.directory) }
        var results = [(kind: RecordKind, prompt: [Int32], said: String, truth: String)?](repeating: nil, count: n)
        var failures = [Error?](repeating: nil, count: runs.count)
        results.withUnsafeMutableBufferPointer { out in
            failures.withUnsafeMutableBufferPointer { failed in
                DispatchQueue.concurrentPerform(iterations: runs.count) { g in
                    do {
                        for i in runs[g] {
                            let record = try readers[g].record(i)
                            guard let (prompt, images, reference) = split(record, queries: dataset.index.imageQueries, side: dataset.index.imageSide,
                                                                          stop: stop) else { continue }
                            // Room past the reference for an answer in steps that lists more objects than the scene
                            // has (three more entries of up to 32 bytes), so that its final answer is read.
                            let answer = try generators[g].generate(prompt: prompt, images: images, maxTokens: reference.count + 96, stop: stop)
                            out[i] = (record.kind, prompt, tokenizer.render(answer.filter { !stop.contains($0) }), tokenizer.render(reference))
                        }
                    } catch {
                        failed[g] = error
                    }
                }
            }
        }
        if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
        return results
    }

    /// The final answer of an answer given in steps: the text after its last ". " (all of it when there is none).
    static func finalAnswer(_ answer: String) -> String {
        answer.components(separatedBy: ". ").last!
    }

    /// The fraction of `references` that are the commonest answer of their question kind; nil for none.
    static func commonestAnswerRate(_ references: [(kind: String, answer: String)]) -> Double? {
        guard !references.isEmpty else { return nil }
        let counts = references.reduce(into: [String: [String: Int]]()) { $0[$1.kind, default: [:]][$1.answer, default: 0] += 1 }
        return Double(counts.values.reduce(0) { $0 + ($1.values.max() ?? 0) }) / Double(references.count)
    }

    /// Mean next-token loss over the first `records` records, in order.
    static func heldOutLoss(model: XComposer, dataset: Dataset, records: Int, sequenceLength: Int, batchSize: Int) throws -> Double {
        let loader = try Loader(sources: [dataset], weights: [1], globalBatch: batchSize, sequenceLength: sequenceLength, seed: 0, shuffle: false)
        return try meanLoss(model: model, loader: loader, batches: max(1, records / batchSize)).mean
    }

    /// Mean next-token loss (over counted targets) of the next `batches` batches of `loader`, no dropout,
    /// overall and by source.
    static func meanLoss(model: XComposer, loader: Loader, batches: Int) throws -> LossesBySource {
        let arena = Arena(), count = loader.sources.count
        var sums = [Double](repeating: 0, count: 2 * count)
        for _ in 0 ..< batches {
            arena.reset()
            let batch = Trainer.modelBatch(try loader.next())
            let a = try model.forward(batch, arena: arena)
            for (i, sum) in a.lossSums(bySource: batch.sources!, count: count).enumerated() { sums[i] += sum }
        }
        return LossesBySource(sums: sums)
    }

    /// The prompt (up to the first loss target), its images, and the reference answer (loss targets up to
    /// the first `stop` token, exclusive).
    static func split(_ r: Record, queries: Int, side: Int, stop: Set<Int32>) -> ([Int32], Tensor?, [Int32])? {
        guard let start = r.loss.firstIndex(of: true) else { return nil }
        var reference: [Int32] = []
        for t in r.tokens[start...] {
            if stop.contains(t) { break }
            reference.append(t)
        }
        let images = zip(r.imagePositions, r.images).filter { $0.0 + queries <= start }.map(\.1)
        return (Array(r.tokens[..<start]), images.isEmpty ? nil : Loader.normalize(images, side: side), reference)
    }

    /// An object of a shapes caption in either order: "at the top left a large red circle" (groups 1-4) or
    /// "a large red circle at the top left" (groups 5-8).
    static let objectPattern = try! NSRegularExpression(pattern: "at the (top left|top right|bottom left|bottom right) a (small|large) (red|green|blue|yellow) (circle|square|triangle)"
        + "|(small|large) (red|green|blue|yellow) (circle|square|triangle) at the (top left|top right|bottom left|bottom right)")

    /// The objects a caption names, each as [size, colour, shape, position].
    static func objects(_ text: String) -> [[String]] {
        objectPattern.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { m in
            let groups = m.range(at: 1).location != NSNotFound ? [2, 3, 4, 1] : [5, 6, 7, 8]
            return groups.map { String(text[Range(m.range(at: $0), in: text)!]) }
        }
    }

    static let attributes = ["size", "color", "shape", "position"]

    /// Attribute words right and scored, by attribute (the object count, and the size, colour, shape and
    /// position of each object in order), and the fraction uniform guessing gets right on average.
    static func captionAttributes(said: String, truth: String) -> (right: [String: Double], scored: [String: Double], chance: Double) {
        let expected = objects(truth), got = objects(said)
        var right = ["count": got.count == expected.count ? 1.0 : 0.0], scored = ["count": 1.0]
        for (a, attribute) in attributes.enumerated() {
            scored[attribute] = Double(expected.count)
            right[attribute] = Double(expected.indices.filter { $0 < got.count && got[$0][a] == expected[$0][a] }.count)
        }
        let chance = (1.0 / 3 + Double(expected.count) * (1.0 / 2 + 1.0 / 4 + 1.0 / 3 + 1.0 / 4)) / (1 + 4 * Double(expected.count))
        return (right, scored, chance)
    }

    /// The last user turn of a rendered prompt, without its end token ("" when there is none).
    static func asked(_ prompt: String) -> String {
        let parts = prompt.components(separatedBy: "<|User|>: ")
        return parts.count > 1 ? parts.last!.components(separatedBy: "<eou>")[0] : ""
    }

    /// The kind of a shapes-world question and the chance of guessing its answer uniformly among the
    /// possible ones; nil for anything else.
    static func questionKind(_ q: String) -> (kind: String, chance: Double)? {
        let kinds: [(String, Double)] = [("What color", 1.0 / 4), ("How many", 1.0 / 3), ("Is there", 1.0 / 2), ("Where is", 1.0 / 4),
                                         ("What is at", 1.0 / 13), ("Which image", 1.0 / 2)]
        return kinds.first { q.hasPrefix($0.0) }.map { (kind: $0.0, chance: $0.1) }
    }
}

import Datasets
import Foundation
import Models
import Tensors

/// Held-out loss and task metrics on evaluation datasets. The metric follows the records' kind:
/// captions are scored by attribute (the shapes world's colour, shape, size, position and count words),
/// conversations by exact match of the first answer (VQA), interleaved documents by exact match of the
/// answer (image selection). Answers are generated greedily from the prompt: the record up to its first
/// loss target. Chance levels are those of guessing uniformly among the shapes world's answers.
public enum Evaluation {
    public struct Score: Codable, Sendable {
        public let dataset: String
        public let metric: String
        public let value: Double
        public let chance: Double?
        public let examples: Int
        public let loss: Double
        /// The first few generated answers beside their references.
        public let samples: [String]
    }

    public static func run(model: XComposer, datasets: [(name: String, dataset: Dataset)], limit: Int, sequenceLength: Int, batchSize: Int = 8) throws -> [Score] {
        let generator = Generator(model: model)
        var scores: [Score] = []
        for (name, dataset) in datasets {
            let n = min(limit, dataset.count)
            let loss = try heldOutLoss(model: model, dataset: dataset, records: n, sequenceLength: sequenceLength, batchSize: batchSize)
            let first = try dataset.record(0)
            guard first.kind != .text else {
                scores.append(Score(dataset: name, metric: "loss only", value: .nan, chance: nil, examples: n, loss: loss, samples: []))
                continue
            }
            var total = 0.0, chance = 0.0, samples: [String] = []
            let tokenizer = dataset.tokenizer, stop: Set<Int32> = [tokenizer.id(.eos), tokenizer.id(.endOfBot)]
            for i in 0 ..< n {
                let record = try dataset.record(i)
                guard let (prompt, images, reference) = split(record, queries: dataset.index.imageQueries, side: dataset.index.imageSide, stop: stop) else { continue }
                let answer = try generator.generate(prompt: prompt, images: images, maxTokens: reference.count + 16, stop: stop)
                let said = tokenizer.render(answer.filter { !stop.contains($0) })
                let truth = tokenizer.render(reference)
                if samples.count < 3 { samples.append("generated \"\(said)\" for \"\(truth)\"") }
                if record.kind == .caption {
                    let (right, chanceRight, count) = captionAttributes(said: said, truth: truth)
                    total += right / count
                    chance += chanceRight / count
                } else {
                    total += said.trimmingCharacters(in: .whitespaces) == truth.trimmingCharacters(in: .whitespaces) ? 1 : 0
                    chance += answerChance(question: tokenizer.render(prompt))
                }
            }
            let metric = first.kind == .caption ? "caption attribute accuracy" : first.kind == .interleaved ? "selection accuracy" : "VQA exact match"
            scores.append(Score(dataset: name, metric: metric, value: total / Double(n), chance: chance / Double(n), examples: n, loss: loss, samples: samples))
        }
        return scores
    }

    /// Mean next-token loss over the first `records` records, in order.
    static func heldOutLoss(model: XComposer, dataset: Dataset, records: Int, sequenceLength: Int, batchSize: Int) throws -> Double {
        let loader = try Loader(sources: [dataset], weights: [1], globalBatch: batchSize, sequenceLength: sequenceLength, seed: 0, shuffle: false)
        return try meanLoss(model: model, loader: loader, batches: max(1, records / batchSize))
    }

    /// Mean next-token loss (over counted targets) of the next `batches` batches of `loader`, no dropout.
    static func meanLoss(model: XComposer, loader: Loader, batches: Int) throws -> Double {
        let arena = Arena()
        var sum = 0.0, counted = 0
        for _ in 0 ..< batches {
            arena.reset()
            let a = try model.forward(Trainer.modelBatch(try loader.next()), arena: arena)
            sum += Double(a.loss) * Double(a.counted)
            counted += a.counted
        }
        return counted > 0 ? sum / Double(counted) : 0
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

    static let objectPattern = try! NSRegularExpression(pattern: "(small|large) (red|green|blue|yellow) (circle|square|triangle) at the (top left|top right|bottom left|bottom right)")

    static func objects(_ text: String) -> [[String]] {
        objectPattern.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { m in
            (1 ... 4).map { String(text[Range(m.range(at: $0), in: text)!]) }
        }
    }

    /// Attribute words right (the object count, and size, colour, shape, position of each object in
    /// order), what uniform guessing gets right on average, and how many were scored.
    static func captionAttributes(said: String, truth: String) -> (Double, Double, Double) {
        let expected = objects(truth), got = objects(said)
        var right = got.count == expected.count ? 1.0 : 0.0
        for (i, object) in expected.enumerated() where i < got.count {
            right += Double(zip(object, got[i]).filter { $0 == $1 }.count)
        }
        let chance = 1.0 / 3 + Double(expected.count) * (1.0 / 2 + 1.0 / 4 + 1.0 / 3 + 1.0 / 4)
        return (right, chance, 1 + 4 * Double(expected.count))
    }

    /// The chance of guessing the answer to a shapes-world question uniformly among its possible answers.
    static func answerChance(question: String) -> Double {
        let q = question.components(separatedBy: "<|User|>: ").last ?? question
        if q.hasPrefix("What color") { return 1.0 / 4 }
        if q.hasPrefix("How many") { return 1.0 / 3 }
        if q.hasPrefix("Is there") { return 1.0 / 2 }
        if q.hasPrefix("Where is") { return 1.0 / 4 }
        if q.hasPrefix("What is at") { return 1.0 / 13 }
        if q.hasPrefix("Which image") { return 1.0 / 2 }
        return 0
    }
}

import Foundation
import Tensors

/// The synthetic "shapes" world: 224x224 images with one to three coloured shapes in the quadrants, and
/// the texts about them (captions, questions, instructions, image selection, passages). Everything is a
/// function of (seed, index), so the data is the same on every machine.
public struct ShapesScene: Equatable, Sendable {
    public enum Shape: String, CaseIterable, Sendable { case circle, square, triangle }
    public enum Color: String, CaseIterable, Sendable { case red, green, blue, yellow }
    public enum Size: String, CaseIterable, Sendable { case small, large }
    public static let positions = ["top left", "top right", "bottom left", "bottom right"]

    public struct Object: Equatable, Sendable {
        public let shape: Shape
        public let color: Color
        public let size: Size
        /// Quadrant 0...3 in reading order.
        public let position: Int
        let dx: Int, dy: Int   // jitter of the centre within the quadrant
    }

    public let objects: [Object]   // in quadrant order
    let background: UInt8

    /// A random scene drawn from `stream` at block `index` (uses indices index*64 ..< index*64 + 32).
    public init(_ stream: RandomStream, _ index: Int) {
        var draw = ShapesDraw(stream: stream, index: index * 64)
        let count = 1 + draw.int(3)
        var quadrants = Array(0 ..< 4)
        for i in 0 ..< 3 { quadrants.swapAt(i, i + draw.int(4 - i)) }
        objects = quadrants.prefix(count).sorted().map { q in
            Object(shape: Shape.allCases[draw.int(3)], color: Color.allCases[draw.int(4)], size: Size.allCases[draw.int(2)],
                   position: q, dx: draw.int(17) - 8, dy: draw.int(17) - 8)
        }
        background = UInt8(225 + draw.int(30))
    }

    public static let side = 224

    /// The scene drawn at `side` x `side` pixels: drawn at 224, then sampled by nearest neighbour.
    public func render(side: Int) -> RGBImage {
        let full = render()
        guard side != ShapesScene.side else { return full }
        var pixels = [UInt8](repeating: 0, count: side * side * 3)
        for y in 0 ..< side {
            for x in 0 ..< side {
                let src = ((y * ShapesScene.side / side) * ShapesScene.side + x * ShapesScene.side / side) * 3
                for c in 0 ..< 3 { pixels[(y * side + x) * 3 + c] = full.pixels[src + c] }
            }
        }
        return RGBImage(width: side, height: side, pixels: pixels)
    }

    /// The scene drawn as a 224x224 RGB image.
    public func render() -> RGBImage {
        let side = ShapesScene.side
        var pixels = [UInt8](repeating: background, count: side * side * 3)
        let rgb: [Color: (UInt8, UInt8, UInt8)] = [.red: (220, 40, 40), .green: (40, 170, 60), .blue: (40, 80, 220), .yellow: (230, 200, 30)]
        for o in objects {
            let cx = (o.position % 2) * 112 + 56 + o.dx, cy = (o.position / 2) * 112 + 56 + o.dy
            let r = o.size == .large ? 42 : 22
            let (red, green, blue) = rgb[o.color]!
            for y in max(0, cy - r) ... min(side - 1, cy + r) {
                for x in max(0, cx - r) ... min(side - 1, cx + r) {
                    let (u, v) = (x - cx, y - cy)
                    let inside: Bool
                    switch o.shape {
                    case .circle: inside = u * u + v * v <= r * r
                    case .square: inside = true
                    case .triangle: inside = 2 * abs(u) <= v + r   // apex up, base at the bottom
                    }
                    if inside {
                        let p = (y * side + x) * 3
                        (pixels[p], pixels[p + 1], pixels[p + 2]) = (red, green, blue)
                    }
                }
            }
        }
        return RGBImage(width: side, height: side, pixels: pixels)
    }

    static let numbers = ["zero", "one", "two", "three"]

    /// "at the top left a large red circle and at the bottom right a small blue square.": each place named
    /// before what is there, so that captioning trains the decoder to read the image at a named place.
    public var caption: String {
        objects.map { "at the \(ShapesScene.positions[$0.position]) a \($0.size.rawValue) \($0.color.rawValue) \($0.shape.rawValue)" }
            .joined(separator: " and ") + "."
    }

    /// "red: at the top left a square, at the bottom right not red.": each of the scene's objects in reading
    /// order, by its place, then its shape if it has `color` or "not red" if not. The first step of a
    /// reasoned answer: every object is read at a named place, as captions read them, instead of found by
    /// a search for the colour (Recipes/EXPERIMENTS.md).
    func objects(checkedFor color: Color) -> String {
        let checked = objects.map { o in
            "at the \(ShapesScene.positions[o.position]) " + (o.color == color ? "a \(o.shape.rawValue)" : "not \(color.rawValue)")
        }
        return "\(color.rawValue): \(checked.joined(separator: ", "))."
    }

    /// "Is there a red circle?" and its reasoned answer, "red: at the top left a square, at the bottom right
    /// not red. no": each object checked for the colour asked (`objects(checkedFor:)`), then "yes" or "no".
    /// For `variant` 0-2 the object asked is `o` itself, for 3-5 a near miss: a colour the scene lacks,
    /// `o`'s colour with another shape, or `o`'s shape in another colour, the one of those `choice` picks.
    /// The words asked then say nothing of the answer; only the image does. The first step reads the image
    /// place by place; answering "yes" or "no" at once needs colour and shape bound in one search, which the
    /// bundled pipeline does not learn (Recipes/EXPERIMENTS.md).
    func presenceQuestion(about o: Object, variant: Int, choice: Int) -> (question: String, answer: String) {
        var (color, shape) = (o.color, o.shape)
        let missingColors = Color.allCases.filter { c in !objects.contains { $0.color == c } }
        let otherShapes = Shape.allCases.filter { s in !objects.contains { $0.color == o.color && $0.shape == s } }
        let otherColors = Color.allCases.filter { c in !objects.contains { $0.color == c && $0.shape == o.shape } }
        switch variant {
        case 3: color = missingColors[choice % missingColors.count]
        case 4 where !otherShapes.isEmpty: shape = otherShapes[choice % otherShapes.count]
        case 4, 5: color = otherColors[choice % otherColors.count]
        default: break
        }
        let present = objects.contains { $0.color == color && $0.shape == shape }
        return ("Is there a \(color.rawValue) \(shape.rawValue)?", "\(objects(checkedFor: color)) \(present ? "yes" : "no")")
    }

    /// A question about the scene and its answer, chosen by `pick`: one or two words, except that "Is
    /// there" and "Where is" are answered in two steps, the objects of the colour asked and then the final
    /// answer after the last ". ", which is what evaluation scores.
    public func question(_ pick: Int) -> (question: String, answer: String) {
        let o = objects[pick % objects.count]
        switch (pick / objects.count) % 5 {
        case 0:
            return ("What color is the \(o.shape.rawValue) at the \(ShapesScene.positions[o.position])?", o.color.rawValue)
        case 1:
            return ("How many shapes are there?", ShapesScene.numbers[objects.count])
        case 2:
            return presenceQuestion(about: o, variant: (pick / 7) % 6, choice: pick / 42)
        case 3:
            return ("Where is the \(o.color.rawValue) \(o.shape.rawValue)?", "\(objects(checkedFor: o.color)) \(ShapesScene.positions[o.position])")
        default:
            let q = (pick / 13) % 4
            let there = objects.first { $0.position == q }
            return ("What is at the \(ShapesScene.positions[q])?", there.map { "a \($0.color.rawValue) \($0.shape.rawValue)" } ?? "nothing")
        }
    }
}

/// Sequential draws from one Philox stream.
struct ShapesDraw {
    let stream: RandomStream
    var index: Int

    mutating func int(_ bound: Int) -> Int {
        defer { index += 1 }
        return min(bound - 1, Int(stream.uniform(index) * Float(bound)))
    }
}

/// Writes the bundled synthetic dataset: one dataset directory per task and split under `root`.
public enum ShapesDataset {
    public struct Task: Sendable {
        public let name: String
        public let train: Int
        public let eval: Int
        /// The records' format, raised whenever what `record` makes for this task changes.
        public var format = 1

        /// The datasets' `generator`.
        public var generator: String { "shapes \(name) \(format)" }

        /// The number of records in `split` ("train" or "eval") at `scale`.
        public func records(_ split: String, scale: Double) -> Int { max(1, Int(Double(split == "train" ? train : eval) * scale)) }
    }

    /// The tasks, their sizes (records in train and eval) and formats.
    public static let tasks = [
        Task(name: "captions", train: 12000, eval: 400, format: 2),
        Task(name: "vqa", train: 12000, eval: 2000, format: 4),
        Task(name: "instruct", train: 4000, eval: 200, format: 5),
        Task(name: "selection", train: 6000, eval: 1500),
        Task(name: "text", train: 6000, eval: 200, format: 5),
    ]

    /// The shapes world's BPE tokenizer (`data synth shapes --tokenizer bpe`; the byte tokenizer is the
    /// default): a byte-level BPE (`BytePairTrainer`) of at most `vocabSize` tokens trained
    /// on the texts of the first `records` train records of every task (train seed `seed`), so that the
    /// words of the shapes world are one token each.
    public static func tokenizer(seed: UInt64 = 1, records: Int = 1000, vocabSize: Int = 512) -> Tokenizer {
        var texts: [String] = []
        for (t, task) in tasks.enumerated() {
            let stream = RandomStream(seed: seed, stream: UInt64(t))
            for i in 0 ..< min(records, task.train) {
                texts += textRuns(record(task.name, index: i, stream: stream, tokenizer: .byte, queries: 1, side: 8))
            }
        }
        return try! Tokenizer.load(BytePairTrainer.train(texts, vocabSize: vocabSize), place: "the shapes tokenizer")
    }

    /// The texts a byte-tokenized record was built from: its runs of bytes between template tokens and
    /// changes of the loss mask, each of which `RecordBuilder.text` encoded on its own.
    static func textRuns(_ record: Record) -> [String] {
        var runs: [String] = [], run: [UInt8] = [], loss = false
        for (token, target) in zip(record.tokens, record.loss) {
            let isByte = token >= ByteTokenizer.byteOffset
            if !run.isEmpty, !isByte || target != loss {
                runs.append(String(decoding: run, as: UTF8.self))
                run.removeAll()
            }
            if isByte {
                run.append(UInt8(token - ByteTokenizer.byteOffset))
                loss = target
            }
        }
        if !run.isEmpty { runs.append(String(decoding: run, as: UTF8.self)) }
        return runs
    }

    /// Generates the `chosen` tasks' train and eval splits (different seeds; a task's records do not depend
    /// on which others are chosen) for `queries` placeholders per image; `scale` multiplies the sizes (tests
    /// use small ones). `progress` gets (dataset, records done). `imageSide` other than 224 is for tests
    /// with small models.
    public static func generate(root: URL, tasks chosen: [Task] = tasks, queries: Int, scale: Double = 1, seed: UInt64 = 1,
                                imageSide: Int = ShapesScene.side, tokenizer: Tokenizer = .byte,
                                progress: (String, Int, Int) -> Void = { _, _, _ in }) throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        for (t, task) in tasks.enumerated() where chosen.contains(where: { $0.name == task.name }) {
            for (split, splitSeed) in [("train", seed), ("eval", seed + 1000)] {
                let n = task.records(split, scale: scale)
                let name = "\(task.name)/\(split)"
                let directory = root.appendingPathComponent(task.name).appendingPathComponent(split)
                try FileManager.default.createDirectory(at: directory.deletingLastPathComponent(), withIntermediateDirectories: true)
                let writer = try DatasetWriter(directory: directory, tokenizer: tokenizer, imageSide: imageSide, imageQueries: queries,
                                               generator: task.generator)
                let stream = RandomStream(seed: splitSeed, stream: UInt64(t))
                // Records are made in parallel chunks and written in order, so the output is deterministic.
                let chunk = 256
                for start in stride(from: 0, to: n, by: chunk) {
                    let end = min(n, start + chunk)
                    var made = [Record?](repeating: nil, count: end - start)
                    made.withUnsafeMutableBufferPointer { out in
                        Parallel.chunks(end - start) { range in
                            for i in range { out[i] = record(task.name, index: start + i, stream: stream, tokenizer: tokenizer, queries: queries, side: imageSide) }
                        }
                    }
                    for r in made { try writer.add(r!) }
                    progress(name, end, n)
                }
                try writer.finish()
            }
        }
    }

    /// Record `index` of task `name`.
    static func record(_ name: String, index: Int, stream: RandomStream, tokenizer: Tokenizer, queries: Int, side: Int) -> Record {
        let scene = ShapesScene(stream, index)
        var draw = ShapesDraw(stream: stream, index: index * 64 + 32)
        switch name {
        case "captions":
            var b = RecordBuilder(kind: .caption, tokenizer: tokenizer, queries: queries)
            b.special(.bos, loss: false)
            b.image(scene.render(side: side))
            b.text(scene.caption, loss: true)
            b.special(.eos, loss: true)
            return b.record
        case "vqa":
            var b = RecordBuilder(kind: .conversation, tokenizer: tokenizer, queries: queries)
            b.special(.bos, loss: false)
            b.image(scene.render(side: side))
            let (q, a) = scene.question(draw.int(1000))
            b.turn(user: q, bot: a)
            return b.record
        case "instruct":
            var b = RecordBuilder(kind: .conversation, tokenizer: tokenizer, queries: queries)
            b.special(.bos, loss: false)
            b.image(scene.render(side: side))
            b.turn(user: "Describe the image.", bot: scene.caption)
            for _ in 0 ..< 2 {
                let (q, a) = scene.question(draw.int(1000))
                b.turn(user: q, bot: a)
            }
            return b.record
        case "selection":
            // Two candidate images; the question names an object only the chosen one has.
            let other = ShapesScene(stream, index + 1_000_000)
            let chosen = draw.int(2)
            let scenes = chosen == 0 ? [scene, other] : [other, scene]
            let target = scene.objects.first { o in !other.objects.contains { $0.color == o.color && $0.shape == o.shape } }
            var b = RecordBuilder(kind: .interleaved, tokenizer: tokenizer, queries: queries)
            b.special(.bos, loss: false)
            b.numberedImages(scenes.map { $0.render(side: side) })
            if let target {
                b.turn(user: "Which image shows a \(target.color.rawValue) \(target.shape.rawValue)?", bot: "image \(chosen + 1)")
            } else {
                b.turn(user: "How many shapes are in image \(chosen + 1)?", bot: ShapesScene.numbers[scene.objects.count])
            }
            return b.record
        default:
            var b = RecordBuilder(kind: .text, tokenizer: tokenizer, queries: queries)
            b.special(.bos, loss: false)
            let facts = ["A circle is round.", "A square has four equal sides.", "A triangle has three sides.",
                         "Red, green, blue and yellow are colors.", "Large shapes are bigger than small shapes."]
            // A described scene and a question answered from the description: the language data's stand-in
            // for what a pretrained LLM brings, the words of the questions and answers among it.
            let fact = facts[draw.int(facts.count)], (question, answer) = scene.question(draw.int(1000))
            b.text("\(fact) In one picture: \(scene.caption) \(question) \(answer).", loss: true)
            b.special(.eos, loss: true)
            return b.record
        }
    }
}

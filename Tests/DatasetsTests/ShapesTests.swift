@testable import Datasets
import Foundation
import Tensors
import XCTest

final class ShapesTests: XCTestCase {
    /// Making only some tasks writes the same records as making all of them, so `--if-missing` can complete a dataset
    /// root that lacks some tasks.
    func testOneTaskAloneMatchesTheFullRun() throws {
        let temporary = FileManager.default.temporaryDirectory
        let all = temporary.appendingPathComponent("xtrain-shapes-all-\(UUID())"), one = temporary.appendingPathComponent("xtrain-shapes-one-\(UUID())")
        defer { for url in [all, one] { try? FileManager.default.removeItem(at: url) } }
        try ShapesDataset.generate(root: all, queries: 8, scale: 0.01, imageSide: 28)
        let selection = ShapesDataset.tasks.filter { $0.name == "selection" }
        try ShapesDataset.generate(root: one, tasks: selection, queries: 8, scale: 0.01, imageSide: 28)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: one.path), ["selection"])
        for split in ["train", "eval"] {
            let (a, b) = (try Dataset(all.appendingPathComponent("selection/\(split)")), try Dataset(one.appendingPathComponent("selection/\(split)")))
            XCTAssertEqual(a.index.shards.map(\.xxh64), b.index.shards.map(\.xxh64))
        }
    }

    /// A selection record shows two numbered images, then asks which one shows an object; the answer names
    /// the one image that has it.
    func testSelectionAnswerNamesTheImageWithTheObject() throws {
        let stream = RandomStream(seed: 9, stream: 3)
        var asked = 0
        for i in 0 ..< 40 {
            let record = ShapesDataset.record("selection", index: i, stream: stream, tokenizer: .byte, queries: 1, side: 8)
            let text = ByteTokenizer().decode(record.tokens.filter { $0 != SpecialToken.image.rawValue })
            let prefix = "<s>Image 1: \nImage 2: \n<|User|>: Which image shows a "
            guard text.hasPrefix(prefix) else {
                XCTAssertTrue(text.hasPrefix("<s>Image 1: \nImage 2: \n<|User|>: How many shapes are in image "), text)
                continue
            }
            let words = text.dropFirst(prefix.count).prefix { $0 != "?" }.split(separator: " ").map(String.init)
            let rest = text.drop { $0 != "?" }
            XCTAssertTrue(rest.hasPrefix("?<eou>\n<|Bot|>: image "), text)
            let answer = try XCTUnwrap(Int(String(rest.dropFirst("?<eou>\n<|Bot|>: image ".count).prefix(1))))
            let scenes = [ShapesScene(stream, i), ShapesScene(stream, i + 1_000_000)]
            let has = scenes.map { s in s.objects.contains { $0.color.rawValue == words[0] && $0.shape.rawValue == words[1] } }
            XCTAssertEqual(has.filter { $0 }.count, 1, text)
            XCTAssertEqual(record.images[answer - 1], scenes[has.firstIndex(of: true)!].render(side: 8), text)
            asked += 1
        }
        XCTAssertGreaterThan(asked, 20)
    }

    /// A VQA presence question ("Is there a red circle?") is answered by its scene in two steps, each object
    /// checked for the colour asked and then "yes" for about half, so that the words asked do not tell the
    /// answer; most "no"s are near misses of an object there.
    func testPresenceQuestionsAreAnsweredByTheScene() throws {
        let stream = RandomStream(seed: 9, stream: 5)
        var asked = 0, yes = 0, nearMisses = 0
        for i in 0 ..< 1500 {
            let record = ShapesDataset.record("vqa", index: i, stream: stream, tokenizer: .byte, queries: 1, side: 8)
            let text = ByteTokenizer().decode(record.tokens.filter { $0 != SpecialToken.image.rawValue })
            let prefix = "<s><|User|>: Is there a "
            guard text.hasPrefix(prefix) else { continue }
            let words = text.dropFirst(prefix.count).prefix { $0 != "?" }.split(separator: " ").map(String.init)
            let answer = String(text.drop { $0 != "?" }.dropFirst("?<eou>\n<|Bot|>: ".count).prefix { $0 != "<" })
            let scene = ShapesScene(stream, i)
            let present = scene.objects.contains { $0.color.rawValue == words[0] && $0.shape.rawValue == words[1] }
            XCTAssertEqual(answer, "\(words[0]): \(checked(scene, words[0])). \(present ? "yes" : "no")", text)
            asked += 1
            if present { yes += 1 } else if scene.objects.contains(where: { $0.color.rawValue == words[0] || $0.shape.rawValue == words[1] }) { nearMisses += 1 }
        }
        XCTAssertGreaterThan(asked, 200)
        XCTAssertEqual(Double(yes) / Double(asked), 0.5, accuracy: 0.05)
        XCTAssertGreaterThan(Double(nearMisses) / Double(asked - yes), 0.5)
    }

    /// The first step of an answer about `color`, spelled out here: each object of `scene` at its place,
    /// then its shape if it has the colour or "not <color>".
    private func checked(_ scene: ShapesScene, _ color: String) -> String {
        scene.objects.map { "at the \(ShapesScene.positions[$0.position]) " + ($0.color.rawValue == color ? "a \($0.shape.rawValue)" : "not \(color)") }
            .joined(separator: ", ")
    }

    /// "Where is the red circle?" is answered in two steps: each object in reading order checked for red,
    /// then the place of the one asked.
    func testWhereQuestionsCheckEachObjectThenNameThePlace() throws {
        let scene = ShapesScene(RandomStream(seed: 9, stream: 5), 3)
        var asked = 0
        for pick in 0 ..< 200 {
            let (question, answer) = scene.question(pick)
            guard question.hasPrefix("Where is the ") else { continue }
            let words = question.dropFirst("Where is the ".count).dropLast().split(separator: " ").map(String.init)
            let place = ShapesScene.positions[scene.objects.first { $0.color.rawValue == words[0] && $0.shape.rawValue == words[1] }!.position]
            XCTAssertEqual(answer, "\(words[0]): \(checked(scene, words[0])). \(place)")
            asked += 1
        }
        XCTAssertGreaterThan(asked, 20)
    }

    /// The shapes tokenizer spells each word of the shapes world as one token, keeps every text it was
    /// trained on when decoding, and is the same file on every run.
    func testShapesTokenizerHasWholeWords() throws {
        let tokenizer = ShapesDataset.tokenizer(records: 200)
        XCTAssertEqual(tokenizer.identity, ShapesDataset.tokenizer(records: 200).identity)
        XCTAssertLessThanOrEqual(tokenizer.vocabSize, 512)
        XCTAssertEqual(tokenizer.id(.image), SpecialToken.image.rawValue)
        let caption = "at the top left a large red circle and at the bottom right a small yellow triangle."
        XCTAssertEqual(tokenizer.encode(caption).count, 18)
        XCTAssertEqual(tokenizer.encode(": What is at the top right?").count, 8)
        for answer in [" yellow", " nothing", " three", " yes"] { XCTAssertEqual(tokenizer.encode(answer).count, 1, answer) }
        let stream = RandomStream(seed: 9, stream: 1)
        for i in 0 ..< 50 {
            let record = ShapesDataset.record("vqa", index: i, stream: stream, tokenizer: .byte, queries: 1, side: 8)
            for text in ShapesDataset.textRuns(record) { XCTAssertEqual(tokenizer.decode(tokenizer.encode(text)), text) }
        }
    }

    /// A text no merge was trained on still encodes, byte by byte, and decodes to itself.
    func testBytePairTrainerKeepsUnseenText() throws {
        let tokenizer = try Tokenizer.load(BytePairTrainer.train(["low lower lowest", "low low"], vocabSize: 300), place: "test")
        XCTAssertEqual(tokenizer.encode(" low").count, 1)
        for text in ["lowest", "zebra ünïcode 🦓", ""] { XCTAssertEqual(tokenizer.decode(tokenizer.encode(text)), text) }
    }
}

import Datasets
import Foundation
import Tensors
import XCTest

final class FormatTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("xtrain-data-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: scratch) }

    func testXXHash64KnownAnswers() {
        // Values from the reference implementation (Python xxhash).
        XCTAssertEqual(XXHash64.hex([UInt8]()), "ef46db3751d8e999")
        XCTAssertEqual(XXHash64.hex(Array("a".utf8)), "d24ec4f1a98c6e5b")
        XCTAssertEqual(XXHash64.hex(Array("abc".utf8)), "44bc2cf5ad770999")
        XCTAssertEqual(XXHash64.hex(Array(String(repeating: "xtrain", count: 20).utf8)), "03139932feca5da5")
        var streamed = XXHash64()
        for piece in ["xtrai", "nxtrainxtrain", String(repeating: "xtrain", count: 17)] { streamed.update(Array(piece.utf8)) }
        XCTAssertEqual(streamed.hexDigest, "03139932feca5da5", "streaming in pieces gives the same hash")
    }

    /// One record of each kind, with images.
    static func sampleRecords() -> [Record] {
        let tokenizer = Tokenizer.byte
        let image = RGBImage(width: 224, height: 224, pixels: (0 ..< 224 * 224 * 3).map { UInt8($0 % 251) })
        var text = RecordBuilder(kind: .text, tokenizer: tokenizer, queries: 4)
        text.special(.bos, loss: false)
        text.text("héllo wörld", loss: true)
        text.special(.eos, loss: true)
        var caption = RecordBuilder(kind: .caption, tokenizer: tokenizer, queries: 4)
        caption.image(image)
        caption.text("a cat", loss: true)
        var conversation = RecordBuilder(kind: .conversation, tokenizer: tokenizer, queries: 4)
        conversation.image(image)
        conversation.turn(user: "What is it?", bot: "a cat")
        conversation.turn(user: "Sure?", bot: "yes")
        var interleaved = RecordBuilder(kind: .interleaved, tokenizer: tokenizer, queries: 4)
        interleaved.text("first ", loss: true)
        interleaved.image(image)
        interleaved.text(" second ", loss: false)
        interleaved.image(RGBImage(width: 224, height: 224, pixels: [UInt8](repeating: 9, count: 224 * 224 * 3)))
        return [text.record, caption.record, conversation.record, interleaved.record]
    }

    func testEveryRecordKindRoundTripsThroughADataset() throws {
        let records = FormatTests.sampleRecords()
        let directory = scratch.appendingPathComponent("set")
        let writer = try DatasetWriter(directory: directory, tokenizer: .byte, imageQueries: 4, shardBytes: 1000, blockBytes: 1)
        for _ in 0 ..< 5 { for r in records { try writer.add(r) } }
        let index = try writer.finish()
        XCTAssertGreaterThan(index.shards.count, 1, "small shards force several")
        XCTAssertEqual(index.kinds, ["text": 5, "caption": 5, "conversation": 5, "interleaved": 5])
        let dataset = try Dataset(directory)
        XCTAssertEqual(dataset.count, 20)
        for i in stride(from: 19, through: 0, by: -1) { XCTAssertEqual(try dataset.record(i), records[i % 4], "record \(i)") }
        try dataset.verify()
        XCTAssertEqual(ByteTokenizer().decode(records[2].tokens.filter { $0 != 3 }),
                       "<|User|>: What is it?<eou>\n<|Bot|>: a cat<eob>\n<|User|>: Sure?<eou>\n<|Bot|>: yes<eob>\n")
        let targets = ByteTokenizer().decode(zip(records[2].tokens, records[2].loss).filter(\.1).map(\.0))
        XCTAssertEqual(targets, " a cat<eob> yes<eob>", "the loss covers the Bot's answers and their end tokens only")
    }

    func testShardsAreStandardZstd() throws {
        let directory = scratch.appendingPathComponent("set")
        let writer = try DatasetWriter(directory: directory, tokenizer: .byte, imageQueries: 4, blockBytes: 50_000)
        for r in FormatTests.sampleRecords() { try writer.add(r) }
        let index = try writer.finish()
        for shard in index.shards {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/zstd")
            process.arguments = ["-t", "-q", directory.appendingPathComponent(shard.file).path]
            try process.run()
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0, "zstd -t accepts \(shard.file)")
        }
    }

    private func writeSmallDataset(_ name: String) throws -> URL {
        let directory = scratch.appendingPathComponent(name)
        let writer = try DatasetWriter(directory: directory, tokenizer: .byte, imageQueries: 4, blockBytes: 50_000)
        for _ in 0 ..< 3 { for r in FormatTests.sampleRecords() { try writer.add(r) } }
        try writer.finish()
        return directory
    }

    private func assertError(_ expected: [String], _ body: () throws -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            let message = "\(error)"
            XCTAssertFalse(message.contains("\n"), "one line: \(message)", line: line)
            for part in expected { XCTAssert(message.contains(part), "'\(message)' should mention '\(part)'", line: line) }
        }
    }

    func testTruncatedShard() throws {
        let directory = try writeSmallDataset("set")
        let shard = directory.appendingPathComponent("shard-00000.zst")
        let bytes = try Data(contentsOf: shard)
        try bytes.prefix(bytes.count - 100).write(to: shard)
        assertError(["shard-00000.zst", "index says"]) { _ = try Dataset(directory) }
    }

    func testBitFlipIsCaughtWithItsFrame() throws {
        let directory = try writeSmallDataset("set")
        let shard = directory.appendingPathComponent("shard-00000.zst")
        var bytes = try Data(contentsOf: shard)
        bytes[200] ^= 0x10
        try bytes.write(to: shard)
        let dataset = try Dataset(directory)
        assertError(["shard-00000.zst", "content hash"]) { try dataset.verify() }
        assertError(["shard-00000.zst", "frame 0"]) { _ = try dataset.record(0) }
    }

    func testWrongHashInIndex() throws {
        let directory = try writeSmallDataset("set")
        let url = directory.appendingPathComponent("index.json")
        let text = try String(contentsOf: url, encoding: .utf8)
        let hash = try Dataset(directory).index.shards[0].xxh64
        try text.replacingOccurrences(of: hash, with: "0123456789abcdef").write(to: url, atomically: true, encoding: .utf8)
        assertError(["shard-00000.zst", "content hash", "0123456789abcdef"]) { try Dataset(directory).verify() }
    }

    func testVocabularyAndQueryMismatch() throws {
        let dataset = try Dataset(try writeSmallDataset("set"))
        assertError(["index.json", "272 tokens", "vocab_size 200"]) { try dataset.checkCompatible(vocabSize: 200, imageQueries: 4, imageTokenIndex: 3) }
        assertError(["index.json", "num_query_tokens 64"]) { try dataset.checkCompatible(vocabSize: 512, imageQueries: 64, imageTokenIndex: 3) }
        XCTAssertNoThrow(try dataset.checkCompatible(vocabSize: 512, imageQueries: 4, imageTokenIndex: 3))
    }

    func testExistingOutputIsNeverTouched() throws {
        let directory = try writeSmallDataset("set")
        let before = try Data(contentsOf: directory.appendingPathComponent("index.json"))
        assertError(["already exists"]) { _ = try DatasetWriter(directory: directory, tokenizer: .byte, imageQueries: 4) }
        XCTAssertEqual(try Data(contentsOf: directory.appendingPathComponent("index.json")), before)
    }
}

final class PrepareTests: XCTestCase {
    var scratch: URL!
    let images = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/images")

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("xtrain-prepare-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: scratch) }

    func testPreprocessingMatchesPillow() throws {
        for name in ["photo.jpg", "tall.png", "gray.png", "palette.png", "alpha.png", "progressive.jpg"] {
            let ours = ImageProcessing.clipResizeAndCrop(try ImageProcessing.load(images.appendingPathComponent(name)))
            let stem = (name as NSString).deletingPathExtension
            let pillow = try ImageProcessing.load(images.appendingPathComponent("expected-\(stem).png"))
            XCTAssertEqual([ours.width, ours.height], [224, 224])
            let worst = zip(ours.pixels, pillow.pixels).map { abs(Int($0) - Int($1)) }.max()!
            XCTAssertLessThanOrEqual(worst, 1, "\(name): differs from Pillow by up to \(worst) levels")
        }
    }

    func testSavedPNGReadsBackExactly() throws {
        let image = ShapesScene(RandomStream(seed: 3, stream: 1), 5).render(side: 56)
        let url = scratch.appendingPathComponent("scene.png")
        try ImageProcessing.savePNG(image, to: url)
        XCTAssertEqual(try ImageProcessing.load(url), image)
        XCTAssertThrowsError(try ImageProcessing.savePNG(image, to: scratch.appendingPathComponent("missing/scene.png")))
    }

    private func writeJSONL(_ lines: [String]) throws -> URL {
        for name in ["photo.jpg", "tall.png"] {
            try FileManager.default.copyItem(at: images.appendingPathComponent(name), to: scratch.appendingPathComponent(name))
        }
        let url = scratch.appendingPathComponent("records.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func testPrepareEveryKindFromRealFiles() throws {
        let input = try writeJSONL([
            #"{"kind": "text", "text": "Plain text."}"#,
            #"{"kind": "caption", "image": "photo.jpg", "caption": "a photo"}"#,
            #"{"kind": "conversation", "images": ["tall.png"], "turns": [{"user": "What?", "bot": "A picture."}]}"#,
            #"{"kind": "interleaved", "segments": [{"text": "Look: ", "loss": false}, {"image": "photo.jpg"}, {"text": "nice."}]}"#,
        ])
        let out = scratch.appendingPathComponent("out")
        let index = try Prepare.run(input: input, output: out, queries: 8)
        XCTAssertEqual(index.records, 4)
        let dataset = try Dataset(out)
        try dataset.verify()
        let caption = try dataset.record(1)
        let expected = try ImageProcessing.load(images.appendingPathComponent("expected-photo.png"))
        XCTAssert(zip(caption.images[0].pixels, expected.pixels).allSatisfy { abs(Int($0) - Int($1)) <= 1 })
        XCTAssertEqual(caption.imagePositions, [1])
        XCTAssertEqual(try dataset.record(3).imagePositions, [7])
    }

    func testBadLinesNameTheFileAndLine() throws {
        let cases: [(String, [String])] = [
            (#"{"kind": "caption", "image": "missing.png", "caption": "x"}"#, ["records.jsonl:2", "missing.png", "cannot open"]),
            (#"{"kind": "caption", "caption": "x"}"#, ["records.jsonl:2", "'image'"]),
            (#"{"kind": "text", "text": "unterminated"#, ["records.jsonl:2", "not a JSON object"]),
            (#"{"kind": "poem", "text": "x"}"#, ["records.jsonl:2", "unknown kind 'poem'"]),
            (#"{"kind": "conversation", "turns": [{"user": "a"}]}"#, ["records.jsonl:2", "turns[0].bot"]),
        ]
        for (bad, expected) in cases {
            try? FileManager.default.removeItem(at: scratch)
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            let input = try writeJSONL([#"{"kind": "text", "text": "fine"}"#, bad])
            let out = scratch.appendingPathComponent("out")
            XCTAssertThrowsError(try Prepare.run(input: input, output: out, queries: 8)) { error in
                for part in expected { XCTAssert("\(error)".contains(part), "'\(error)' should mention '\(part)'") }
            }
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { $0.hasPrefix("out") }
            XCTAssertEqual(leftovers, [], "a failed prepare leaves no dataset behind")
        }
    }
}

import Datasets
import Foundation
import XCTest

/// `xtrain data ...` through the command line: bad data exits non-zero with one line naming the place.
final class DataCLITests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws { root = try Micro.workspace() }

    override func tearDown() { try? FileManager.default.removeItem(at: root) }

    func testVerifyCatchesACorruptShard() throws {
        let dataset = root.appendingPathComponent("data/captions/train")
        XCTAssertEqual(try CLI.run(["data", "verify", dataset.path]).status, 0)
        let shard = dataset.appendingPathComponent("shard-00000.zst")
        var bytes = try Data(contentsOf: shard)
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: shard)
        let run = try CLI.run(["data", "verify", dataset.path])
        XCTAssertNotEqual(run.status, 0)
        let lines = run.error.split(separator: "\n").filter { !$0.hasPrefix("verify") && !$0.contains("[") }
        XCTAssertEqual(lines.count, 1, run.error)
        XCTAssert(lines[0].contains("shard-00000.zst"), run.error)
    }

    /// `synth --if-missing` leaves complete tasks alone and makes again a task written in an older format or
    /// with another number of records.
    func testSynthIfMissingRemakesAnOlderFormatOrSize() throws {
        let data = root.appendingPathComponent("data")
        let synth = ["data", "synth", "shapes", "--out", data.path, "--queries", "4", "--scale", "0.01", "--image-size", "28", "--if-missing"]
        XCTAssert(try CLI.run(synth).output.contains("already there"))
        func fields(_ index: URL) throws -> [String: Any] {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: index)) as? [String: Any])
        }
        let index = data.appendingPathComponent("selection/eval/index.json")
        var selectionFields = try fields(index)
        let generator = try XCTUnwrap(ShapesDataset.tasks.first { $0.name == "selection" }).generator
        XCTAssertEqual(selectionFields["generator"] as? String, generator)
        selectionFields["generator"] = nil
        try JSONSerialization.data(withJSONObject: selectionFields).write(to: index)
        let vqaIndex = data.appendingPathComponent("vqa/eval/index.json")
        var vqaFields = try fields(vqaIndex)
        let vqaRecords = try XCTUnwrap(vqaFields["records"] as? Int)
        vqaFields["records"] = vqaRecords - 1
        try JSONSerialization.data(withJSONObject: vqaFields).write(to: vqaIndex)
        let run = try CLI.run(synth)
        XCTAssertEqual(run.status, 0, run.error)
        XCTAssert(run.output.contains("selection: incomplete, or made with another tokenizer, format or size; made again"), run.output)
        XCTAssert(run.output.contains("vqa: incomplete, or made with another tokenizer, format or size; made again"), run.output)
        XCTAssertFalse(run.output.contains("captions:"), run.output)
        XCTAssertEqual(try fields(vqaIndex)["records"] as? Int, vqaRecords)
        let remade = try fields(index)
        XCTAssertEqual(remade["generator"] as? String, generator)
    }

    func testPrepareReportsTheLineOfAMissingImage() throws {
        let input = root.appendingPathComponent("records.jsonl")
        try "{\"kind\": \"text\", \"text\": \"ok\"}\n{\"kind\": \"caption\", \"image\": \"nowhere.png\", \"caption\": \"x\"}\n"
            .write(to: input, atomically: true, encoding: .utf8)
        let run = try CLI.run(["data", "prepare", "--input", input.path, "--out", root.appendingPathComponent("prepared").path])
        XCTAssertNotEqual(run.status, 0)
        XCTAssert(run.error.contains("records.jsonl:2: image 'nowhere.png'"), run.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent("prepared").path))
    }

    func testPrepareWithASentencePieceModel() throws {
        let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/tokenizers/sp-bpe.model")
        let input = root.appendingPathComponent("records.jsonl")
        try "{\"kind\": \"conversation\", \"turns\": [{\"user\": \"Hi?\", \"bot\": \"Hello 你好\"}]}\n".write(to: input, atomically: true, encoding: .utf8)
        let out = root.appendingPathComponent("prepared").path
        let run = try CLI.run(["data", "prepare", "--input", input.path, "--out", out, "--queries", "4", "--tokenizer", model.path, "--special", "pad=<unk>"])
        XCTAssertEqual(run.status, 0, run.error)
        XCTAssert(run.output.contains("tokenizer sentencepiece (sentencepiece-"), run.output)
        XCTAssert(run.output.contains("<pad> 0, <s> 1, </s> 2, <image> 7, <|User|> 3, <|Bot|> 4, <eou> 5, <eob> 6"), run.output)
        let inspect = try CLI.run(["data", "inspect", out])
        XCTAssertEqual(inspect.status, 0, inspect.error)
        XCTAssert(inspect.output.contains("tokenizer: sentencepiece"), inspect.output)
        XCTAssert(inspect.output.contains("loss targets: Hello 你好<eob>"), inspect.output)

        let bad = try CLI.run(["data", "prepare", "--input", input.path, "--out", out + "2", "--tokenizer", model.path, "--special", "eou=<nope>"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssert(bad.error.contains("sp-bpe.model: --special eou=<nope>: no such token or id"), bad.error)
    }

    func testInspectPrintsASample() throws {
        let run = try CLI.run(["data", "inspect", root.appendingPathComponent("data/vqa/train").path])
        XCTAssertEqual(run.status, 0, run.error)
        XCTAssert(run.output.contains("<|Bot|>: "), run.output)
        XCTAssert(run.output.contains("<image x4>"), run.output)
    }
}

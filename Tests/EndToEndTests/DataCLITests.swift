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

    func testPrepareReportsTheLineOfAMissingImage() throws {
        let input = root.appendingPathComponent("records.jsonl")
        try "{\"kind\": \"text\", \"text\": \"ok\"}\n{\"kind\": \"caption\", \"image\": \"nowhere.png\", \"caption\": \"x\"}\n"
            .write(to: input, atomically: true, encoding: .utf8)
        let run = try CLI.run(["data", "prepare", "--input", input.path, "--out", root.appendingPathComponent("prepared").path])
        XCTAssertNotEqual(run.status, 0)
        XCTAssert(run.error.contains("records.jsonl:2: image 'nowhere.png'"), run.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent("prepared").path))
    }

    func testInspectPrintsASample() throws {
        let run = try CLI.run(["data", "inspect", root.appendingPathComponent("data/vqa/train").path])
        XCTAssertEqual(run.status, 0, run.error)
        XCTAssert(run.output.contains("<|Bot|>: "), run.output)
        XCTAssert(run.output.contains("<image x4>"), run.output)
    }
}

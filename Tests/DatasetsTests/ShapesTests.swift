@testable import Datasets
import Foundation
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
}

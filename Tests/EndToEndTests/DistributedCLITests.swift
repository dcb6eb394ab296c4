import Foundation
import Models
import Training
import XCTest

/// Data-parallel runs under `mpirun` on this machine: 2 ranks of batch b against 1 rank of batch 2b,
/// resume across rank counts, and a rank that dies.
final class DistributedCLITests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws { root = try Micro.workspace(steps: 20, every: 10) }

    override func tearDown() { try? FileManager.default.removeItem(at: root) }

    private var recipe: String { root.appendingPathComponent("recipe.json").path }

    private func losses(_ run: String) throws -> [Int: Double] { try trainingLosses(root.appendingPathComponent(run)) }

    private func assertSameLosses(_ a: [Int: Double], _ b: [Int: Double], steps: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, steps, file: file, line: line)
        XCTAssertEqual(Set(a.keys), Set(b.keys), file: file, line: line)
        for (step, loss) in a {
            XCTAssertEqual(b[step] ?? .nan, loss, accuracy: 1e-5 * abs(loss), "step \(step)", file: file, line: line)
        }
    }

    /// Each step's `source_loss` in a run's metrics.jsonl.
    private func sourceLosses(_ run: String) throws -> [Int: [String: Double]] { try stepValues(root.appendingPathComponent(run), "source_loss") }

    /// Largest difference between two checkpoints' weights, relative to the largest weight.
    private func weightDifference(_ a: String, _ b: String) throws -> Float {
        let x = try Checkpoint.model(root.appendingPathComponent(a)).model.parameters.values
        let y = try Checkpoint.model(root.appendingPathComponent(b)).model.parameters.values
        XCTAssertEqual(x.count, y.count)
        var difference: Float = 0, largest: Float = 0
        for i in 0 ..< x.count {
            difference = max(difference, abs(x.base[i] - y.base[i]))
            largest = max(largest, abs(x.base[i]))
        }
        return difference / largest
    }

    private func train(ranks: Int, _ arguments: [String], environment: [String: String] = [:]) throws -> CLI.Result {
        let (result, timedOut) = try CLI.mpirun(ranks: ranks, arguments, environment: environment)
        XCTAssertFalse(timedOut, "mpirun hung: \(result.error)")
        return result
    }

    func testTwoRanksReproduceOneRankWithTheWholeBatch() throws {
        let one = try CLI.run(["pretrain", recipe, "--set", "checkpoint.dir=one"])
        XCTAssertEqual(one.status, 0, one.error)
        let two = try train(ranks: 2, ["pretrain", recipe, "--set", "checkpoint.dir=two"])
        XCTAssertEqual(two.status, 0, two.error)
        XCTAssert(two.output.contains("over 2 ranks"), two.output)
        XCTAssertEqual(two.output.components(separatedBy: "done in").count, 2, "rank 0 alone reports")
        assertSameLosses(try losses("one"), try losses("two"), steps: 20)
        // The losses by dataset are summed over ranks in the step's reduction.
        let (oneBySource, twoBySource) = (try sourceLosses("one"), try sourceLosses("two"))
        XCTAssertEqual(oneBySource.count, 20)
        for (step, bySource) in oneBySource {
            XCTAssertEqual(Set(bySource.keys), Set(twoBySource[step]?.keys.map { $0 } ?? []), "step \(step)")
            for (name, loss) in bySource { XCTAssertEqual(twoBySource[step]?[name] ?? .nan, loss, accuracy: 1e-5 * abs(loss), "step \(step) \(name)") }
        }
        // So are the loss targets cut by the sequence length (the micro recipe's 48 tokens cut captions).
        let oneCut: [Int: Int] = try stepValues(root.appendingPathComponent("one"), "cut_targets")
        XCTAssertFalse(oneCut.isEmpty)
        XCTAssertEqual(oneCut, try stepValues(root.appendingPathComponent("two"), "cut_targets"))
        XCTAssertLessThan(try weightDifference("one/step-0000020.h5", "two/step-0000020.h5"), 1e-5)

        // LoRA with dropout: each sequence's mask follows its global position, so the split changes nothing;
        // nor does it change the sample average, whose total weight is summed over micro-batches and ranks.
        let lora = Micro.loraRecipe(base: "one/step-0000020.h5")
            .replacingOccurrences(of: "\"batch_size\": 4", with: "\"batch_size\": 4, \"gradient_accumulation\": 2")
            .replacingOccurrences(of: "\"seed\":", with: "\"loss_average\": \"sample\", \"seed\":")
        try lora.write(to: root.appendingPathComponent("lora.json"), atomically: true, encoding: .utf8)
        let loraOne = try CLI.run(["lora", root.appendingPathComponent("lora.json").path, "--set", "checkpoint.dir=lora-one"])
        XCTAssertEqual(loraOne.status, 0, loraOne.error)
        let loraTwo = try train(ranks: 2, ["lora", root.appendingPathComponent("lora.json").path, "--set", "checkpoint.dir=lora-two"])
        XCTAssertEqual(loraTwo.status, 0, loraTwo.error)
        assertSameLosses(try losses("lora-one"), try losses("lora-two"), steps: 6)
    }

    func testCheckpointsResumeAcrossRankCounts() throws {
        let straight = try CLI.run(["pretrain", recipe, "--set", "checkpoint.dir=straight"])
        XCTAssertEqual(straight.status, 0, straight.error)

        // 2 ranks, rank 0 killed right after its step-10 checkpoint: the job ends (no hang), 1 rank resumes.
        let killed = try train(ranks: 2, ["pretrain", recipe, "--set", "checkpoint.dir=from-two"], environment: ["XTRAIN_FAULT": "checkpoint-done"])
        XCTAssertNotEqual(killed.status, 0, "a dead rank ends the job")
        XCTAssertEqual(Checkpoint.list(root.appendingPathComponent("from-two")).map(\.lastPathComponent), ["step-0000010.h5"])
        let onOne = try CLI.run(["pretrain", recipe, "--set", "checkpoint.dir=from-two", "--resume"])
        XCTAssertEqual(onOne.status, 0, onOne.error)
        assertSameLosses(try losses("straight"), try losses("from-two"), steps: 20)

        // 1 rank stopped at step 10, 2 ranks resume.
        let stopped = try CLI.run(["pretrain", recipe, "--set", "checkpoint.dir=from-one"], environment: ["XTRAIN_FAULT": "checkpoint-done"])
        XCTAssertNotEqual(stopped.status, 0)
        let onTwo = try train(ranks: 2, ["pretrain", recipe, "--set", "checkpoint.dir=from-one", "--resume"])
        XCTAssertEqual(onTwo.status, 0, onTwo.error)
        XCTAssert(onTwo.output.contains("resumed from"), onTwo.output)
        assertSameLosses(try losses("straight"), try losses("from-one"), steps: 20)
        XCTAssertLessThan(try weightDifference("straight/step-0000020.h5", "from-one/step-0000020.h5"), 1e-5)
    }

    func testADeadRankEndsTheJob() throws {
        // Rank 1 dies after its third step while rank 0 waits for its gradients.
        let result = try train(ranks: 2, ["pretrain", recipe, "--set", "checkpoint.dir=dead"], environment: ["XTRAIN_FAULT": "step:3", "XTRAIN_FAULT_RANK": "1"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssert(result.error.contains("xtrain rank 0: stopped by mpirun"), result.error)
    }

    func testAFailingRankReportsItsErrorAndEndsTheJob() throws {
        // Micro-batches of 2 sequences cannot be split over 3 ranks: the first rank to find out logs it
        // with its rank and aborts the job (the others may be stopped before they log theirs).
        let result = try train(ranks: 3, ["pretrain", recipe, "--set", "checkpoint.dir=bad"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssert(result.error.range(of: "xtrain rank [0-2] of 3: error: .*do not split over 3 ranks", options: .regularExpression) != nil, result.error)
    }
}

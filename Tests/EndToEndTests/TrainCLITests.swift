import Foundation
import Models
import Training
import XCTest

/// `xtrain pretrain` through the command line: resume, crashes, bad recipes, divergence.
final class TrainCLITests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws { root = try Micro.workspace() }

    override func tearDown() { try? FileManager.default.removeItem(at: root) }

    private var recipe: String { root.appendingPathComponent("recipe.json").path }

    private func losses(_ run: String) throws -> [Int: Double] { try trainingLosses(root.appendingPathComponent(run)) }

    private func parameters(_ checkpoint: URL) throws -> [UInt32] {
        let model = try Checkpoint.model(checkpoint).model
        return UnsafeBufferPointer(start: model.parameters.values.base, count: model.parameters.values.count).map(\.bitPattern)
    }

    func testStopAndResumeIsBitIdentical() throws {
        let straight = try CLI.run(["pretrain", recipe, "--set", "checkpoint.dir=straight"])
        XCTAssertEqual(straight.status, 0, straight.error)
        XCTAssert(straight.output.contains("step 6/6 | loss"), straight.output)
        // The same run, stopped dead right after its first checkpoint (step 3), then resumed.
        let stopped = try CLI.run(["pretrain", recipe, "--set", "checkpoint.dir=resumed"], environment: ["XTRAIN_FAULT": "checkpoint-done"])
        XCTAssertNotEqual(stopped.status, 0, "killed")
        XCTAssertEqual(Checkpoint.list(root.appendingPathComponent("resumed")).map(\.lastPathComponent), ["step-0000003.h5"])
        // A changed mix would draw other samples from the same position: refused, naming the checkpoint.
        let remixed = try CLI.run(["pretrain", recipe, "--set", "checkpoint.dir=resumed", "--set", "data.train.0.weight=3", "--resume"])
        XCTAssertNotEqual(remixed.status, 0)
        XCTAssert(remixed.error.contains("step-0000003.h5") && remixed.error.contains("mix"), remixed.error)
        let resumed = try CLI.run(["pretrain", recipe, "--set", "checkpoint.dir=resumed", "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.error)
        XCTAssert(resumed.output.contains("resumed from"), resumed.output)
        let a = try losses("straight"), b = try losses("resumed")
        XCTAssertEqual(a.count, 6)
        XCTAssertEqual(a, b, "the losses of every step, bit for bit")
        assertSameBits(try parameters(root.appendingPathComponent("straight/step-0000006.h5")),
                       try parameters(root.appendingPathComponent("resumed/step-0000006.h5")), "the final weights")
    }

    func testKillWhileWritingACheckpointKeepsThePreviousOne() throws {
        let straight = try CLI.run(["pretrain", recipe, "--set", "checkpoint.dir=straight"])
        XCTAssertEqual(straight.status, 0, straight.error)
        // The micro model has ~80 tensors: the 120th dataset written is in the middle of the second checkpoint.
        let killed = try CLI.run(["pretrain", recipe, "--set", "checkpoint.dir=crash"], environment: ["XTRAIN_FAULT": "checkpoint-write:120"])
        XCTAssertNotEqual(killed.status, 0)
        let crash = root.appendingPathComponent("crash")
        XCTAssertEqual(Checkpoint.list(crash).map(\.lastPathComponent), ["step-0000003.h5"])
        XCTAssert(try FileManager.default.contentsOfDirectory(atPath: crash.path).contains { $0.contains(".tmp-") }, "a half-written temporary is left")
        XCTAssertNoThrow(try Checkpoint.header(Checkpoint.list(crash)[0]))
        let resumed = try CLI.run(["pretrain", recipe, "--set", "checkpoint.dir=crash", "--resume", Checkpoint.list(crash)[0].path])
        XCTAssertEqual(resumed.status, 0, resumed.error)
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: crash.path).contains { $0.contains(".tmp-") }, "the stale temporary is removed")
        assertSameBits(try parameters(crash.appendingPathComponent("step-0000006.h5")), try parameters(root.appendingPathComponent("straight/step-0000006.h5")), "weights after the crash and resume")
    }

    func testRecipeTypoFailsWithItsPath() throws {
        let bad = try CLI.run(["pretrain", recipe, "--set", "optimizer.wieght_decay=0.1"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssert(bad.error.contains("recipe.json: optimizer.wieght_decay: unknown field"), bad.error)
        XCTAssertEqual(bad.error.split(separator: "\n").count, 1, "one line: \(bad.error)")
    }

    func testDivergenceStopsNamingTheStep() throws {
        let run = try CLI.run(["pretrain", recipe, "--set", "optimizer.lr.decoder=1e9", "--set", "optimizer.grad_clip=1e30", "--set", "steps=12", "--set", "checkpoint.every=1"])
        XCTAssertNotEqual(run.status, 0)
        XCTAssert(run.error.range(of: #"step \d+: the (loss|gradient norm) is (nan|inf|-inf); stopping before the update \(the last good checkpoint is "#, options: .regularExpression) != nil, run.error)
        let kept = Checkpoint.list(root.appendingPathComponent("run"))
        XCTAssertFalse(kept.isEmpty)
        XCTAssertNoThrow(try Checkpoint.header(kept.last!))
    }

    func testCheckpointOfAnotherModelIsRefused() throws {
        XCTAssertEqual(try CLI.run(["pretrain", recipe, "--set", "steps=3"]).status, 0)
        let other = Micro.config.replacingOccurrences(of: "\"hidden_size\": 32", with: "\"hidden_size\": 40")
        try other.write(to: root.appendingPathComponent("other.json"), atomically: true, encoding: .utf8)
        let run = try CLI.run(["pretrain", recipe, "--set", "model=other.json", "--set", "steps=6", "--resume"])
        XCTAssertNotEqual(run.status, 0)
        XCTAssert(run.error.contains("step-0000003.h5: the checkpoint's model config differs from other.json; it is of another model"), run.error)
        let missing = try CLI.run(["eval", root.appendingPathComponent("nowhere.h5").path, "--data", root.path])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssert(missing.error.contains("nowhere.h5: no such file"), missing.error)
    }

    func testCutTargetsAreReported() throws {
        // The micro recipe's 48 tokens cut the captions' and passages' tails, loss targets with them.
        let run = try CLI.run(["pretrain", recipe])
        XCTAssertEqual(run.status, 0, run.error)
        let warnings = run.output.components(separatedBy: "\n").filter { $0.hasPrefix("warning: step ") }
        XCTAssertEqual(warnings.count, 1, "warned once: \(run.output)")
        XCTAssert(warnings[0].range(of: #"^warning: step \d+: \d+ loss targets were past data.sequence_length 48 and were cut off with their records' tails \((captions|text)/train record \d+ lost \d+\); metrics.jsonl counts them per step as cut_targets$"#,
                                    options: .regularExpression) != nil, warnings[0])
        let cut: [Int: Int] = try stepValues(root.appendingPathComponent("run"), "cut_targets")
        XCTAssertFalse(cut.isEmpty)
        XCTAssert(cut.values.allSatisfy { $0 > 0 })
    }

    func testHeldOutLossFalls() throws {
        let run = try CLI.run(["pretrain", recipe, "--set", "steps=80", "--set", "checkpoint.every=40", "--set", "eval.every=40", "--set", "eval.batches=4"])
        XCTAssertEqual(run.status, 0, run.error)
        let evals = try metricsLines(root.appendingPathComponent("run")).compactMap { $0["eval_loss"] as? Double }
        XCTAssertEqual(evals.count, 2)
        let first = try losses("run")[1]!
        XCTAssertLessThan(evals[1], first * 0.8, "held-out loss \(evals) well below the first training loss \(first)")
    }
}

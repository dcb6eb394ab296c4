import Foundation
import Models
import Tensors
import Training
import XCTest

/// `xtrain lora` and `xtrain export|import` through the command line.
final class LoRACLITests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = try Micro.workspace()
        let stageA = try CLI.run(["pretrain", root.appendingPathComponent("recipe.json").path])
        XCTAssertEqual(stageA.status, 0, stageA.error)
        try Micro.loraRecipe(base: "run/step-0000006.h5").write(to: root.appendingPathComponent("lora.json"), atomically: true, encoding: .utf8)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: root) }

    private var loraRecipe: String { root.appendingPathComponent("lora.json").path }

    private func restored(_ path: URL) throws -> XComposer { try Checkpoint.model(path).model }

    private func bits(_ model: XComposer) -> [UInt32] {
        UnsafeBufferPointer(start: model.parameters.values.base, count: model.parameters.values.count).map(\.bitPattern)
    }

    func testLoRARunStoresAdaptersAndResumesBitExactly() throws {
        let straight = try CLI.run(["lora", loraRecipe, "--set", "checkpoint.dir=straight"])
        XCTAssertEqual(straight.status, 0, straight.error)
        let last = root.appendingPathComponent("straight/step-0000006.h5")
        let header = try Checkpoint.header(last)
        XCTAssertEqual(header.lora?.rank, 4)
        XCTAssertEqual(header.base?.path, root.appendingPathComponent("run/step-0000006.h5").standardizedFileURL.path)
        let stored = header.storedShape("language_model.model.layers.0.self_attn.q_proj.lora_A.weight")
        XCTAssertEqual(stored, [4, 32])
        XCTAssertNil(header.storedShape("language_model.model.layers.0.self_attn.q_proj.weight"), "frozen tensors live in the base")
        let stopped = try CLI.run(["lora", loraRecipe, "--set", "checkpoint.dir=resumed"], environment: ["XTRAIN_FAULT": "checkpoint-done"])
        XCTAssertNotEqual(stopped.status, 0)
        let resumed = try CLI.run(["lora", loraRecipe, "--set", "checkpoint.dir=resumed", "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.error)
        assertSameBits(bits(try restored(last)), bits(try restored(root.appendingPathComponent("resumed/step-0000006.h5"))), "resumed LoRA weights")
    }

    func testExportMergesAndImportRoundTrips() throws {
        XCTAssertEqual(try CLI.run(["lora", loraRecipe]).status, 0)
        let checkpoint = root.appendingPathComponent("lora/step-0000006.h5")
        let model = try restored(checkpoint)
        XCTAssert(model.parameters.specs.filter { $0.name.hasSuffix("lora_B.weight") }.contains { spec in
            model.parameters.value(spec.name)!.array.contains { $0 != 0 }
        }, "training moved B away from zero")
        let hf = root.appendingPathComponent("export")
        let export = try CLI.run(["export", checkpoint.path, "--out", hf.path])
        XCTAssertEqual(export.status, 0, export.error)
        let loaded = try XComposer.load(directory: hf, trainable: [])
        // The merge is a GEMM: the same up to rounding in another process (its BLAS kernels may differ).
        let merged = model.merged()
        for i in 0 ..< merged.parameters.values.count {
            XCTAssertEqual(loaded.parameters.values.base[i], merged.parameters.values.base[i], accuracy: 1e-5 * max(1, abs(merged.parameters.values.base[i])))
        }
        let imported = root.appendingPathComponent("imported.h5")
        XCTAssertEqual(try CLI.run(["import", hf.path, "--out", imported.path]).status, 0)
        assertSameBits(bits(try restored(imported)), bits(loaded), "export -> import")
        // Merged and adapted models agree on the logits.
        let fixtureBatch = Batch(batchSize: 1, sequenceLength: 8, tokens: [1, 20, 21, 22, 23, 24, 25, 2], labels: [1, 20, 21, 22, 23, 24, 25, 2])
        let a = try model.forward(fixtureBatch, arena: Arena()).logits, b = try loaded.forward(fixtureBatch, arena: Arena()).logits
        for i in 0 ..< a.count { XCTAssertEqual(a[flat: i], b[flat: i], accuracy: 1e-4 * max(1, abs(b[flat: i]))) }
        // The adapter export: the unmerged base and the PEFT files.
        XCTAssertEqual(try CLI.run(["export", checkpoint.path, "--out", root.appendingPathComponent("peft").path, "--adapter"]).status, 0)
        XCTAssert(FileManager.default.fileExists(atPath: root.appendingPathComponent("peft/adapter/adapter_model.safetensors").path))
        XCTAssert(FileManager.default.fileExists(atPath: root.appendingPathComponent("peft/adapter/adapter_config.json").path))
        let h5 = try CLI.run(["export", checkpoint.path, "--out", root.appendingPathComponent("h5").path, "--format", "hdf5"])
        XCTAssertEqual(h5.status, 0, h5.error)
        assertSameBits(bits(try restored(root.appendingPathComponent("h5/model.h5"))), bits(loaded), "HDF5 export vs Hugging Face export")
    }

    func testMissingOrChangedBaseIsRefused() throws {
        XCTAssertEqual(try CLI.run(["lora", loraRecipe, "--set", "steps=3"]).status, 0)
        let checkpoint = root.appendingPathComponent("lora/step-0000003.h5").path
        let base = root.appendingPathComponent("run/step-0000006.h5")
        try FileManager.default.moveItem(at: base, to: root.appendingPathComponent("moved.h5"))
        let missing = try CLI.run(["export", checkpoint, "--out", root.appendingPathComponent("x").path])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssert(missing.error.contains("its base checkpoint \(base.standardizedFileURL.path) is missing"), missing.error)
        // A different file under the base's name: the hash gives it away.
        try FileManager.default.copyItem(at: root.appendingPathComponent("run/step-0000003.h5"), to: base)
        let changed = try CLI.run(["export", checkpoint, "--out", root.appendingPathComponent("y").path])
        XCTAssertNotEqual(changed.status, 0)
        XCTAssert(changed.error.contains("has changed (weights hash"), changed.error)
    }

    /// The checkpoint records its data's tokenizer: fine-tuning or evaluating it on data of another
    /// tokenizer is refused, and export writes a tokenizer file beside the weights.
    func testDataOfAnotherTokenizerIsRefused() throws {
        let bpe = root.appendingPathComponent("bpe")
        let synth = try CLI.run(["data", "synth", "shapes", "--out", bpe.path, "--queries", "4", "--scale", "0.01", "--image-size", "28", "--tokenizer", "bpe"])
        XCTAssertEqual(synth.status, 0, synth.error)
        let loraOnBPE = root.appendingPathComponent("lora-bpe.json")
        try Micro.loraRecipe(base: "run/step-0000006.h5").replacingOccurrences(of: "\"data/", with: "\"bpe/").write(to: loraOnBPE, atomically: true, encoding: .utf8)
        let lora = try CLI.run(["lora", loraOnBPE.path])
        XCTAssertNotEqual(lora.status, 0)
        XCTAssert(lora.error.contains("run/step-0000006.h5: trained on data tokenized by byte-"), lora.error)
        let eval = try CLI.run(["eval", root.appendingPathComponent("run/step-0000006.h5").path, "--data", bpe.appendingPathComponent("vqa/eval").path])
        XCTAssertNotEqual(eval.status, 0)
        XCTAssert(eval.error.contains("tokenized by hf-json-"), eval.error)

        let pretrainOnBPE = root.appendingPathComponent("pretrain-bpe.json")
        try Micro.recipe(steps: 2, every: 2).replacingOccurrences(of: "\"data/", with: "\"bpe/").replacingOccurrences(of: "\"run\"", with: "\"bperun\"")
            .write(to: pretrainOnBPE, atomically: true, encoding: .utf8)
        XCTAssertEqual(try CLI.run(["pretrain", pretrainOnBPE.path]).status, 0)
        let export = try CLI.run(["export", root.appendingPathComponent("bperun/step-0000002.h5").path, "--out", root.appendingPathComponent("hf").path])
        XCTAssertEqual(export.status, 0, export.error)
        XCTAssertEqual(try Data(contentsOf: root.appendingPathComponent("hf/tokenizer.json")), try Data(contentsOf: bpe.appendingPathComponent("vqa/train/tokenizer.json")))
    }

    func testRankMismatchIsRefused() throws {
        XCTAssertEqual(try CLI.run(["lora", loraRecipe, "--set", "steps=3"]).status, 0)
        let run = try CLI.run(["lora", loraRecipe, "--set", "lora.rank=8", "--resume"])
        XCTAssertNotEqual(run.status, 0)
        XCTAssert(run.error.contains("the checkpoint's LoRA (rank 4) differs from the recipe's (rank 8)"), run.error)
    }
}

/// `xtrain eval`, `generate` and `plot` through the command line.
final class EvalCLITests: XCTestCase {
    func testEvalGenerateAndPlot() throws {
        let root = try Micro.workspace()
        defer { try? FileManager.default.removeItem(at: root) }
        XCTAssertEqual(try CLI.run(["pretrain", root.appendingPathComponent("recipe.json").path]).status, 0)
        let checkpoint = root.appendingPathComponent("run/step-0000006.h5").path
        let json = root.appendingPathComponent("scores.json").path
        let evalArguments = ["eval", checkpoint, "--data", root.appendingPathComponent("data/vqa/eval").path,
                             "--data", root.appendingPathComponent("data/captions/eval").path, "--data", root.appendingPathComponent("data/instruct/eval").path,
                             "--limit", "4", "--length", "48", "--misses", "2"]
        let eval = try CLI.run(evalArguments + ["--json", json, "--threads", "1"])
        XCTAssertEqual(eval.status, 0, eval.error)
        XCTAssert(eval.output.contains("VQA exact match"), eval.output)
        XCTAssert(eval.output.contains("caption attribute accuracy"), eval.output)
        XCTAssert(eval.output.contains("instruct/eval: description attribute accuracy"), eval.output)
        let scores = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as! [[String: Any]]
        XCTAssertEqual(scores.count, 3)
        XCTAssertEqual(scores[0]["chance"] as? Double ?? 0, 0.2, accuracy: 0.2)
        for score in scores {   // the first wrong answers, at most 2; a question's comes first
            let misses = score["misses"] as? [String] ?? [], value = score["value"] as? Double ?? 0
            XCTAssertEqual(misses.isEmpty, value == 1, "\(score)")
            if score["metric"] as? String == "VQA exact match" {
                XCTAssertEqual(misses.count, min(2, Int((4 * (1 - value)).rounded())), "\(score)")
                // Right or wrong per record: Agresti-Coull's standard error of a proportion over 4 records.
                let adjusted = (4 * value + 2) / 8
                XCTAssertEqual(score["standardError"] as? Double ?? -1, (adjusted * (1 - adjusted) / 8).squareRoot(), accuracy: 1e-9, "\(score)")
                XCTAssert(misses.allSatisfy { $0.hasPrefix("\"") && $0.contains("?\": generated") }, "\(misses)")
            } else {
                XCTAssertLessThanOrEqual(misses.count, 2, "\(score)")
            }
        }
        XCTAssertEqual(eval.output.components(separatedBy: "wrong answers:").count - 1, scores.filter { !($0["misses"] as? [String] ?? []).isEmpty }.count)
        // Generated on two cores side by side, the answers and scores are those of one core.
        let json2 = root.appendingPathComponent("scores-2.json").path
        let eval2 = try CLI.run(evalArguments + ["--json", json2, "--threads", "2"])
        XCTAssertEqual(eval2.status, 0, eval2.error)
        let scores2 = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json2))) as! [[String: Any]]
        XCTAssertEqual(scores2.count, scores.count)
        for (one, two) in zip(scores, scores2) {
            XCTAssertEqual(NSDictionary(dictionary: one.filter { $0.key != "loss" }), NSDictionary(dictionary: two.filter { $0.key != "loss" }))
        }
        let image = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/images/photo.jpg").path
        let cached = try CLI.run(["generate", checkpoint, "--image", image, "--prompt", "What color is the circle?", "--max-tokens", "12"])
        XCTAssertEqual(cached.status, 0, cached.error)
        XCTAssert(cached.error.contains("key/value cache"), cached.error)
        let uncached = try CLI.run(["generate", checkpoint, "--image", image, "--prompt", "What color is the circle?", "--max-tokens", "12", "--no-cache"])
        XCTAssertEqual(uncached.output, cached.output, "the same answer with and without the cache")
        let noThreads = try CLI.run(["generate", checkpoint, "--image", image, "--prompt", "What color?", "--threads", "0"])
        XCTAssertNotEqual(noThreads.status, 0)
        XCTAssert(noThreads.error.contains("--threads must be positive"), noThreads.error)
        let pair = ["generate", checkpoint, "--image", image, "--image", image, "--prompt", "Which image shows a circle?", "--max-tokens", "6"]
        let pairCached = try CLI.run(pair)
        XCTAssertEqual(pairCached.status, 0, pairCached.error)
        XCTAssertEqual(try CLI.run(pair + ["--no-cache"]).output, pairCached.output, "two images, numbered before the question")
        let plot = try CLI.run(["plot", root.appendingPathComponent("run").path])
        XCTAssertEqual(plot.status, 0, plot.error)
        let svg = try String(contentsOf: root.appendingPathComponent("run/metrics.svg"), encoding: .utf8)
        XCTAssert(svg.hasPrefix("<svg") && svg.contains("held-out loss") && svg.contains("polyline"))
    }

    /// `eval.tasks` scores held-out answers at each evaluation: the progress line and metrics.jsonl give
    /// each metric beside its chance (and, for exact-match data, the commonest answer's score), and the
    /// plot draws the chance as a dashed line.
    func testInTrainingEvalScoresTasksBesideTheirBaselines() throws {
        let root = try Micro.workspace(steps: 2, every: 2)
        defer { try? FileManager.default.removeItem(at: root) }
        let url = root.appendingPathComponent("recipe.json")
        try String(contentsOf: url, encoding: .utf8)
            .replacingOccurrences(of: #""eval": [{"path": "data/captions/eval"}]"#, with: #""eval": [{"path": "data/captions/eval"}, {"path": "data/vqa/eval"}]"#)
            .write(to: url, atomically: true, encoding: .utf8)
        let run = try CLI.run(["pretrain", url.path, "--set", "eval.tasks=3"])
        XCTAssertEqual(run.status, 0, run.error)
        XCTAssert(run.output.range(of: #"; captions/eval caption attribute accuracy \d+\.\d% \(chance 3\d\.\d%\); vqa/eval VQA exact match \d+\.\d% \(chance \d+\.\d%, commonest answer \d+\.\d%\)"#,
                                   options: .regularExpression) != nil, run.output)
        let eval = try XCTUnwrap(try metricsLines(root.appendingPathComponent("run")).first { $0["eval_metrics"] != nil })
        let (captions, vqa) = ("captions/eval caption attribute accuracy", "vqa/eval VQA exact match")
        let metrics = try XCTUnwrap(eval["eval_metrics"] as? [String: Double]), chance = try XCTUnwrap(eval["eval_chance"] as? [String: Double])
        XCTAssertEqual(Set(metrics.keys), [captions, vqa])
        XCTAssertEqual(Set(chance.keys), [captions, vqa])
        XCTAssert(metrics.values.allSatisfy { (0 ... 1).contains($0) } && chance.values.allSatisfy { $0 > 0 && $0 < 1 }, "\(eval)")
        // Caption attributes are not exact matches: no commonest answer for them.
        XCTAssertEqual(Set((eval["eval_commonest"] as? [String: Double] ?? [:]).keys), [vqa])
        let plot = try CLI.run(["plot", root.appendingPathComponent("run").path, "--out", root.appendingPathComponent("plot.svg").path])
        XCTAssertEqual(plot.status, 0, plot.error)
        let svg = try String(contentsOf: root.appendingPathComponent("plot.svg"), encoding: .utf8)
        XCTAssertEqual(svg.components(separatedBy: "stroke-dasharray").count - 1, 2, "a chance line per task metric")
        XCTAssert(svg.contains("vqa/eval VQA exact match (dashed: chance)"), "the legend")
    }
}

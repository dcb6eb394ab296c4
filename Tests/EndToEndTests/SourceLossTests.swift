import Datasets
import Foundation
import Models
import Tensors
@testable import Training
import XCTest

/// Losses by data source: each training step's and each evaluation's loss per dataset, in metrics.jsonl
/// and the plot.
final class SourceLossTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = try Micro.workspace(steps: 4, every: 2)
        // Two eval datasets, so that the held-out loss has parts.
        let url = root.appendingPathComponent("recipe.json")
        let recipe = try String(contentsOf: url, encoding: .utf8)
            .replacingOccurrences(of: #""eval": [{"path": "data/captions/eval"}]"#, with: #""eval": [{"path": "data/captions/eval"}, {"path": "data/text/eval"}]"#)
        try recipe.write(to: url, atomically: true, encoding: .utf8)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: root) }

    /// Every sequence of `batches` forwarded on its own, its targets' losses summed by its source:
    /// (loss sum, targets) per source.
    private func bySequence(_ model: XComposer, _ batches: [Batch], sources count: Int) throws -> [(sum: Double, targets: Double)] {
        var out = [(sum: Double, targets: Double)](repeating: (0, 0), count: count)
        let arena = Arena(), placeholder = Int32(model.config.imageTokenIndex!), queries = model.config.numQueryTokens
        for batch in batches {
            let t = batch.sequenceLength
            var firstImage = 0
            for i in 0 ..< batch.batchSize {
                let row = i * t ..< (i + 1) * t, tokens = Array(batch.tokens[row])
                let n = tokens.filter { $0 == placeholder }.count / queries
                var images: Tensor?
                if n > 0, let all = batch.images {
                    let size = all.count / all.shape[0]
                    images = Tensor(shape: [n] + all.shape.dropFirst(), values: Array(UnsafeBufferPointer(start: all.data + firstImage * size, count: n * size)))
                }
                firstImage += n
                let one = Batch(batchSize: 1, sequenceLength: t, tokens: tokens, labels: Array(batch.labels[row]), attentionMask: Array(batch.attentionMask[row]), images: images)
                arena.reset()
                let a = try model.forward(one, arena: arena)
                out[batch.sources![i]].sum += Double(a.loss) * a.weight
                out[batch.sources![i]].targets += a.weight
            }
        }
        return out
    }

    private func assertMatches(_ losses: LossesBySource, _ reference: [(sum: Double, targets: Double)], _ what: String) {
        XCTAssert(reference.allSatisfy { $0.targets > 0 }, "\(what): every source drawn")
        for (s, r) in reference.enumerated() {
            XCTAssertEqual(losses.bySource[s] ?? .nan, r.sum / r.targets, accuracy: 1e-5 * r.sum / r.targets, "\(what): source \(s)")
        }
        let total = reference.reduce(0) { $0 + $1.sum } / reference.reduce(0) { $0 + $1.targets }
        XCTAssertEqual(losses.mean, total, accuracy: 1e-5 * total, "\(what): the mean over all targets")
    }

    func testLossesBySourceAreEachSequencesLossesGrouped() throws {
        let loaded = try LoadedRecipe.load(root.appendingPathComponent("recipe.json"))
        let trainer = try Trainer(recipe: loaded, resume: .no, log: { _ in })
        let r = loaded.recipe
        // The held-out loss: the eval loader's first two batches, as `evaluate` draws them.
        let evalLoader = try trainer.evalLoader()
        let evalBatches = try (0 ..< 2).map { _ in Trainer.modelBatch(try evalLoader.next()) }
        assertMatches(try trainer.evaluate(batches: 2), try bySequence(trainer.model, evalBatches, sources: 2), "held-out")
        // A step's training loss by source, over both micro-batches (gradient accumulation 2), before its update.
        let train = try r.data.train.map { try Dataset(loaded.resolve($0.path)) }
        let loader = try r.trainLoader(train)
        let micro = try (0 ..< 2).map { _ in Trainer.modelBatch(try loader.next()) }
        let reference = try bySequence(trainer.model, micro, sources: 2)
        let rates = Dictionary(uniqueKeysWithValues: trainer.model.trainable.map { ($0, 1e-3) })
        assertMatches(try trainer.step(micro, rates: rates).sourceLosses, reference, "training step")
    }

    func testMetricsAndPlotHaveTheLossesBySource() throws {
        let run = try CLI.run(["pretrain", root.appendingPathComponent("recipe.json").path])
        XCTAssertEqual(run.status, 0, run.error)
        XCTAssert(run.output.range(of: #"step 2: held-out loss \d\.\d{4} \(captions/eval \d\.\d{4}, text/eval \d\.\d{4}\)"#, options: .regularExpression) != nil, run.output)
        let lines = try metricsLines(root.appendingPathComponent("run"))
        let steps = lines.filter { $0["loss"] != nil }, evals = lines.filter { $0["eval_loss"] != nil }
        XCTAssertEqual(steps.count, 4)
        XCTAssertEqual(evals.count, 2)
        for line in steps {
            let bySource = try XCTUnwrap(line["source_loss"] as? [String: Double], "\(line)")
            XCTAssertFalse(bySource.isEmpty)
            XCTAssert(Set(bySource.keys).isSubset(of: ["captions/train", "text/train"]), "\(bySource)")
        }
        for line in evals {
            XCTAssertEqual(Set((line["eval_source_loss"] as? [String: Double] ?? [:]).keys), ["captions/eval", "text/eval"], "\(line)")
        }
        let plot = try CLI.run(["plot", root.appendingPathComponent("run").path, "--out", root.appendingPathComponent("plot.svg").path])
        XCTAssertEqual(plot.status, 0, plot.error)
        let svg = try String(contentsOf: root.appendingPathComponent("plot.svg"), encoding: .utf8)
        XCTAssert(svg.contains("held-out loss by dataset") && svg.contains("text/eval"), "the plot's panel")
    }
}

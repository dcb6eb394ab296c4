import Foundation
import Models
import Tensors
import XCTest

/// The model against golden outputs of Hugging Face transformers (Tools/reference/make_model_fixtures.py):
/// same weights, same batch, logits and loss within 1e-4 and every parameter gradient within 1e-3
/// (relative, max-norm). The batch has right padding, a sample with two images and a text-only sample;
/// the ViT, Q-Former and LLM widths all differ.
final class ReferenceTests: XCTestCase {
    func testCrossAttentionEveryOtherLayerAllPartsTrained() throws {
        try check("blip2-crossfreq2", trainable: Set(ModelPart.allCases))
    }

    func testCrossAttentionEveryLayerAllPartsTrained() throws {
        try check("blip2-crossfreq1", trainable: Set(ModelPart.allCases))
    }

    func testFrozenViT() throws {
        let model = try check("blip2-crossfreq1", trainable: [.sampler, .decoder])
        let vision = model.parameters.specs.filter { $0.part == .vision }
        XCTAssertFalse(vision.isEmpty)
        XCTAssert(vision.allSatisfy { $0.gradOffset == nil && model.parameters.grad($0.name) == nil }, "a frozen part has no gradients")
    }

    func testFrozenDecoderStillTrainsTheSampler() throws {
        try check("blip2-crossfreq2", trainable: [.sampler])
    }

    /// Runs forward and backward on a fixture and compares with the reference; returns the model.
    @discardableResult
    private func check(_ name: String, trainable: Set<ModelPart>, file: StaticString = #filePath, line: UInt = #line) throws -> XComposer {
        let fixture = try Fixture(name, trainable: trainable)
        let model = fixture.model, arena = Arena()
        let activations = try model.forward(fixture.batch, arena: arena)
        assertClose(activations.logits, try fixture.io.tensor("logits"), tolerance: 1e-4, "logits", file: file, line: line)
        let loss = try fixture.io.tensor("loss")[flat: 0]
        XCTAssertEqual(activations.loss, loss, accuracy: 1e-4 * abs(loss), "loss", file: file, line: line)
        model.parameters.zeroGrads()
        model.backward(activations, tokens: fixture.batch.tokens, arena: arena)
        var compared = 0
        for spec in model.parameters.specs where trainable.contains(spec.part) {
            assertClose(model.parameters.grad(spec.name)!, try fixture.io.tensor("grad." + spec.name), tolerance: 1e-3, "gradient of \(spec.name)", file: file, line: line)
            compared += 1
        }
        XCTAssertEqual(compared, model.parameters.specs.filter { trainable.contains($0.part) }.count, file: file, line: line)
        return model
    }

    func testTextOnlyBatchSkipsTheVisionPath() throws {
        // The fixture's third sample alone, without images: its logits must match its row of the mixed batch.
        let fixture = try Fixture("blip2-crossfreq2", trainable: Set(ModelPart.allCases))
        let t = fixture.batch.sequenceLength, row = 2
        let length = fixture.batch.attentionMask[row * t ..< (row + 1) * t].filter { $0 != 0 }.count
        let tokens = Array(fixture.batch.tokens[row * t ..< row * t + length]), labels = Array(fixture.batch.labels[row * t ..< row * t + length])
        let arena = Arena()
        let activations = try fixture.model.forward(Batch(batchSize: 1, sequenceLength: length, tokens: tokens, labels: labels), arena: arena)
        let reference = try fixture.io.tensor("logits").row(row).slice(0 ..< length)
        assertClose(activations.logits.row(0), reference, tolerance: 1e-4, "text-only logits")
        fixture.model.parameters.zeroGrads()
        fixture.model.backward(activations, tokens: tokens, arena: arena)
        let visionGrad = fixture.model.parameters.grad("vision_model.post_layernorm.weight")!
        XCTAssertEqual(visionGrad.array, Array(repeating: 0, count: visionGrad.count), "no image, no vision gradient")
    }

    func testSampleAndSquareAveragesWeighEachSequence() throws {
        // Each row's own token mean (weights 1 on that row only), then the sample and square averages of
        // the whole batch: their losses and gradients must be the rows' combined by 1 and by sqrt(targets).
        let fixture = try Fixture("blip2-crossfreq2", trainable: Set(ModelPart.allCases))
        let model = fixture.model, batch = fixture.batch, t = batch.sequenceLength, arena = Arena()
        let targets = batch.targets
        func run(_ weights: [Float]?) throws -> (loss: Double, grads: [Float]) {
            var weighted = batch
            weighted.lossWeights = weights
            arena.reset()
            let a = try model.forward(weighted, arena: arena)
            model.parameters.zeroGrads()
            model.backward(a, tokens: batch.tokens, arena: arena)
            let g = model.parameters.grads
            return (Double(a.loss), Array(UnsafeBufferPointer(start: g.base, count: g.count)))
        }
        var rows: [(loss: Double, grads: [Float], count: Double)] = []
        for row in 0 ..< batch.batchSize {
            let mask = targets.indices.map { Float($0 / t == row && targets[$0] != ignoreIndex ? 1 : 0) }
            let (loss, grads) = try run(mask)
            rows.append((loss, grads, Double(mask.reduce(0, +))))
        }
        XCTAssert(Set(rows.map(\.count)).count > 1, "the rows' target counts differ, so the averages differ")
        for (average, share) in [(LossAverage.sample, { (n: Double) in 1.0 }), (.square, { (n: Double) in n.squareRoot() })] {
            let (loss, grads) = try run(average.weights(batch))
            let total = rows.reduce(0) { $0 + share($1.count) }
            let expected = rows.reduce(0) { $0 + share($1.count) * $1.loss } / total
            XCTAssertEqual(loss, expected, accuracy: 1e-5 * expected, "\(average) loss")
            var worst = 0.0, largest = 0.0
            for i in grads.indices {
                let g = rows.reduce(0) { $0 + share($1.count) * Double($1.grads[i]) } / total
                worst = max(worst, abs(Double(grads[i]) - g))
                largest = max(largest, abs(g))
            }
            XCTAssertLessThan(worst, 1e-4 * largest, "\(average) gradients")
        }
        XCTAssertNil(LossAverage.token.weights(batch), "the token average needs no weights")
    }

    func testSavedDirectoryRoundTripsBitExactly() throws {
        let model = try Fixture("blip2-crossfreq2", trainable: []).model
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("xtrain-save-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        try model.save(directory: directory)
        let again = try XComposer.load(directory: directory, trainable: [])
        XCTAssertEqual(again.config, model.config)
        XCTAssertEqual(again.parameters.specs, model.parameters.specs)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: again.parameters.values.base, count: again.parameters.values.count)).map(\.bitPattern),
                       Array(UnsafeBufferPointer(start: model.parameters.values.base, count: model.parameters.values.count)).map(\.bitPattern))
    }
}

/// A fixture directory: the model as transformers saved it and the batch, outputs and gradients.
struct Fixture {
    let model: XComposer
    let io: SafetensorsFile
    let batch: Batch

    static func directory(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures").appendingPathComponent(name)
    }

    init(_ name: String, trainable: Set<ModelPart>) throws {
        let directory = Fixture.directory(name)
        model = try XComposer.load(directory: directory, trainable: trainable)
        io = try SafetensorsFile(directory.appendingPathComponent("io.safetensors"))
        let shape = io.entries["input_ids"]!.shape
        batch = Batch(batchSize: shape[0], sequenceLength: shape[1],
                      tokens: try io.integers("input_ids").map { Int32($0) }, labels: try io.integers("labels").map { Int32($0) },
                      attentionMask: try io.integers("attention_mask").map { Float($0) }, images: try io.tensor("pixel_values"))
    }
}

/// max |a - b| <= tolerance * max(max |b|, floor), with the worst element named on failure. The floor
/// (1e-4 by default) keeps gradients that are zero in exact arithmetic honest: the Q-Former's key biases
/// shift every score of a query equally, which softmax ignores, so both sides hold only ~1e-9 rounding.
func assertClose(_ a: Tensor, _ b: Tensor, tolerance: Double, floor: Double = 1e-4, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, b.shape, "\(what): shapes", file: file, line: line)
    guard a.shape == b.shape else { return }
    var worst = 0.0, at = 0, scale = 0.0
    for i in 0 ..< a.count {
        let error = abs(Double(a.data[i]) - Double(b.data[i]))
        if error > worst { (worst, at) = (error, i) }
        scale = max(scale, abs(Double(b.data[i])))
    }
    XCTAssertLessThanOrEqual(worst, tolerance * max(scale, floor), "\(what): worst difference \(worst) at element \(at) (\(a.data[at]) vs \(b.data[at])), max-norm \(scale)", file: file, line: line)
}

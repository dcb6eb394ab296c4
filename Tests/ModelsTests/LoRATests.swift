import Foundation
@testable import Models
import Tensors
import XCTest

final class LoRATests: XCTestCase {
    /// The fixture model with adapters whose A and B are both random (as after training). Rank 4 runs
    /// through the factors; rank 32, wider than the fixture's layers (40 and 56), through their product.
    private func adaptedModel(rank: Int = 4, dropout: Double = 0) throws -> (XComposer, Batch) {
        let fixture = try Fixture("blip2-crossfreq2", trainable: [])
        let lora = LoRAConfig(rank: rank, alpha: 2 * Double(rank), dropout: dropout)
        let model = XComposer(config: fixture.model.config, trainable: [.lora, .sampler], lora: lora)
        try model.loadWeights(directory: Fixture.directory("blip2-crossfreq2"))
        var rng = RNG(seed: 11)
        for spec in model.parameters.specs where spec.part == .lora { rng.fillNormal(model.parameters.value(spec.name)!, std: 0.3) }
        return (model, fixture.batch)
    }

    func testMergedModelGivesTheSameLogits() throws {
        try checkMergedLogits(rank: 4)
    }

    func testMergedModelGivesTheSameLogitsAsDenseAdapters() throws {
        try checkMergedLogits(rank: 32)
    }

    private func checkMergedLogits(rank: Int) throws {
        let (model, batch) = try adaptedModel(rank: rank)
        XCTAssertEqual(model.decoder.layers[0].qProj.lora!.isDense, rank == 32)
        let arena = Arena()
        let adapted = try model.forward(batch, arena: arena)
        let merged = try model.merged().forward(batch, arena: Arena())
        let plain = try Fixture("blip2-crossfreq2", trainable: []).model.forward(batch, arena: Arena())
        assertClose(merged.logits, adapted.logits, tolerance: 1e-4, "merged vs adapted logits")
        var differs = false
        for i in 0 ..< plain.logits.count where abs(plain.logits[flat: i] - adapted.logits[flat: i]) > 1e-3 { differs = true }
        XCTAssert(differs, "the adapters change the output")
    }

    func testAdapterGradientsMatchFiniteDifferences() throws {
        try checkAdapterGradients(dropout: 0)
    }

    func testAdapterGradientsWithDropoutMatchFiniteDifferences() throws {
        try checkAdapterGradients(dropout: 0.2)
    }

    func testDenseAdapterGradientsMatchFiniteDifferences() throws {
        try checkAdapterGradients(rank: 32, dropout: 0)
        try checkAdapterGradients(rank: 32, dropout: 0.2)
    }

    private func checkAdapterGradients(rank: Int = 4, dropout: Double) throws {
        let (model, batch) = try adaptedModel(rank: rank, dropout: dropout)
        let stream: RandomStream? = dropout > 0 ? RandomStream(seed: 2, stream: 4) : nil
        let arena = Arena()
        let activations = try model.forward(batch, arena: arena, dropout: stream)
        model.parameters.zeroGrads()
        model.backward(activations, tokens: batch.tokens, arena: arena)
        let names = ["language_model.model.layers.0.self_attn.q_proj", "language_model.model.layers.1.mlp.down_proj", "language_model.model.layers.1.mlp.gate_proj"]
        for module in names {
            for suffix in [LoRAConfig.aSuffix, LoRAConfig.bSuffix] {
                let value = model.parameters.value(module + suffix)!, grad = model.parameters.grad(module + suffix)!
                var worst = 0.0, scale = 0.0
                for i in stride(from: 0, to: value.count, by: max(1, value.count / 6)) {
                    let saved = value[flat: i]
                    value[flat: i] = saved + 1e-3
                    let plus = Double(try model.forward(batch, arena: Arena(), dropout: stream).loss)
                    value[flat: i] = saved - 1e-3
                    let minus = Double(try model.forward(batch, arena: Arena(), dropout: stream).loss)
                    value[flat: i] = saved
                    worst = max(worst, abs((plus - minus) / 2e-3 - Double(grad[flat: i])))
                    scale = max(scale, abs(Double(grad[flat: i])))
                }
                XCTAssertGreaterThan(scale, 0, module + suffix)
                // eps = 1e-3 keeps the curvature of the attention softmax out; Float32 losses (~5) leave ~3e-4 of noise.
                XCTAssertLessThanOrEqual(worst, 2e-2 * scale + 5e-4, "\(module + suffix): worst difference \(worst), scale \(scale)")
            }
        }
        for spec in model.parameters.specs where spec.part == .decoder { XCTAssertNil(model.parameters.grad(spec.name), "the decoder is frozen") }
    }

    func testDropoutIsReproducibleFromItsStream() throws {
        let (model, batch) = try adaptedModel(dropout: 0.3)
        let stream = RandomStream(seed: 5, stream: 9)
        let a = try model.forward(batch, arena: Arena(), dropout: stream).logits.array
        let b = try model.forward(batch, arena: Arena(), dropout: stream).logits.array
        let c = try model.forward(batch, arena: Arena()).logits.array
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c, "dropout acts in training")
    }

    func testAdapterRoundTripsThroughPEFTFiles() throws {
        let (model, _) = try adaptedModel()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("xtrain-adapter-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        try model.saveAdapter(directory: directory)
        let file = try SafetensorsFile(directory.appendingPathComponent("adapter_model.safetensors"))
        XCTAssertEqual(file.entries["base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight"]?.shape, [4, 40])
        XCTAssertEqual(file.entries["base_model.model.language_model.model.layers.0.mlp.down_proj.lora_B.weight"]?.shape, [40, 4])
        let again = XComposer(config: model.config, trainable: [], lora: model.lora)
        try again.loadAdapter(directory: directory)
        for spec in model.parameters.specs where spec.part == .lora {
            XCTAssertEqual(again.parameters.value(spec.name)!.array, model.parameters.value(spec.name)!.array)
        }
    }
}

import Foundation
import Models
import Tensors
import XCTest

final class GenerationTests: XCTestCase {
    /// The fixture's first sample (one image) cut after its placeholders and two text tokens.
    private func prompt() throws -> (XComposer, [Int32], Tensor) {
        let fixture = try Fixture("blip2-crossfreq2", trainable: [])
        let images = try fixture.io.tensor("pixel_values").slice(0 ..< 1)
        return (fixture.model, Array(fixture.batch.tokens[0 ..< 7]), images)
    }

    func testCachedAndUncachedGreedyDecodingAgree() throws {
        let (model, tokens, images) = try prompt()
        let generator = Generator(model: model)
        var seen: [Int32] = []
        let cached = try generator.generate(prompt: tokens, images: images, maxTokens: 12, stop: []) { seen.append($0) }
        let uncached = try generator.generate(prompt: tokens, images: images, maxTokens: 12, stop: [], cached: false)
        XCTAssertEqual(cached.count, 12)
        XCTAssertEqual(cached, uncached)
        XCTAssertEqual(seen, cached, "onToken sees every token in order")
    }

    func testCachedAndUncachedSamplingAgreeAndStop() throws {
        let (model, tokens, images) = try prompt()
        let generator = Generator(model: model)
        let sampling = Sampling.sample(temperature: 1.5, topK: 20, seed: 3)
        let cached = try generator.generate(prompt: tokens, images: images, maxTokens: 16, stop: [], sampling: sampling)
        XCTAssertEqual(cached, try generator.generate(prompt: tokens, images: images, maxTokens: 16, stop: [], sampling: sampling, cached: false))
        XCTAssertNotEqual(cached, try generator.generate(prompt: tokens, images: images, maxTokens: 16, stop: []), "sampling differs from greedy")
        let stop = cached[3]
        let stopped = try generator.generate(prompt: tokens, images: images, maxTokens: 16, stop: [stop], sampling: sampling)
        XCTAssertEqual(stopped.last, stop)
        XCTAssertEqual(stopped, Array(cached.prefix(stopped.count)))
    }

    func testGenerationWithAdaptersUsesTheMergedModel() throws {
        let (base, tokens, images) = try prompt()
        let model = XComposer(config: base.config, trainable: [], lora: LoRAConfig(rank: 2, alpha: 4))
        try model.loadWeights(directory: Fixture.directory("blip2-crossfreq2"))
        var rng = RNG(seed: 1)
        for spec in model.parameters.specs where spec.part == .lora { rng.fillNormal(model.parameters.value(spec.name)!, std: 0.5) }
        let generator = Generator(model: model)
        XCTAssertEqual(try generator.generate(prompt: tokens, images: images, maxTokens: 8, stop: []),
                       try generator.generate(prompt: tokens, images: images, maxTokens: 8, stop: [], cached: false))
    }
}

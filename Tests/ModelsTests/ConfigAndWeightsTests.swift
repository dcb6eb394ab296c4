import Foundation
import Models
import Tensors
import XCTest

final class ConfigAndWeightsTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("xtrain-models-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: scratch) }

    private var recipes: URL { Fixture.directory("").deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Recipes/models") }

    /// The fixture's config.json with `edit` applied to its JSON object, written to a scratch file.
    private func editedConfig(_ edit: (inout [String: Any]) -> Void) throws -> URL {
        let data = try Data(contentsOf: Fixture.directory("blip2-crossfreq2").appendingPathComponent("config.json"))
        var json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        edit(&json)
        let url = scratch.appendingPathComponent("config.json")
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        return url
    }

    private func assertConfigError(_ expected: [String], _ edit: (inout [String: Any]) -> Void, line: UInt = #line) throws {
        let url = try editedConfig(edit)
        XCTAssertThrowsError(try ModelConfig.load(url), line: line) { error in
            let message = "\(error)"
            XCTAssert(message.hasPrefix(url.path), "names the file: \(message)", line: line)
            for part in expected { XCTAssert(message.contains(part), "'\(message)' should mention '\(part)'", line: line) }
        }
    }

    func testConfigErrorsNameTheField() throws {
        try assertConfigError(["model_type", "'t5'"]) { $0["model_type"] = "t5" }
        try assertConfigError(["text_config.model_type", "'gpt2'"]) { json in
            var text = json["text_config"] as! [String: Any]
            text["model_type"] = "gpt2"
            json["text_config"] = text
        }
        try assertConfigError(["qformer_config.encoder_hidden_size", "33", "32"]) { json in
            var q = json["qformer_config"] as! [String: Any]
            q["encoder_hidden_size"] = 33
            json["qformer_config"] = q
        }
        try assertConfigError(["vision_config.hidden_size", "num_attention_heads"]) { json in
            var v = json["vision_config"] as! [String: Any]
            v["num_attention_heads"] = 5
            json["vision_config"] = v
        }
        try assertConfigError(["text_config.num_key_value_heads", "grouped-query"]) { json in
            var text = json["text_config"] as! [String: Any]
            text["num_key_value_heads"] = 1
            json["text_config"] = text
        }
        try assertConfigError(["image_token_index", "missing"]) { $0["image_token_index"] = nil }
        try assertConfigError(["text_config.hidden_size", "expected Int"]) { json in
            var text = json["text_config"] as! [String: Any]
            text["hidden_size"] = "forty"
            json["text_config"] = text
        }
    }

    func testConfigRoundTripsThroughJSON() throws {
        for name in ["tiny", "small", "xcomposer-7b"] {
            let config = try ModelConfig.load(recipes.appendingPathComponent("\(name).json"))
            let url = scratch.appendingPathComponent("\(name).json")
            try config.jsonData().write(to: url)
            XCTAssertEqual(try ModelConfig.load(url), config, name)
        }
    }

    func testBundledConfigs() throws {
        let tiny = try ModelConfig.load(recipes.appendingPathComponent("tiny.json"))
        XCTAssertEqual(tiny.visionConfig.imageSize, 224)
        XCTAssertEqual(tiny.visionConfig.patchSize, 14)
        XCTAssertEqual(tiny.visionConfig.tokens, 257)
        XCTAssertEqual(tiny.numQueryTokens, 64)
        // The 7B config has the real model's sizes: ViT-g ~1.0B, Q-Former ~0.1B, InternLM-7B ~7.3B.
        let big = ModelSummary(config: try ModelConfig.load(recipes.appendingPathComponent("xcomposer-7b.json")),
                               trainable: [.sampler, .decoder], batch: 1, length: 16, images: 1)
        XCTAssertEqual(Double(big.parameters[.vision]!) / 1e9, 0.986, accuracy: 0.01)
        XCTAssertEqual(Double(big.parameters[.sampler]!) / 1e9, 0.108, accuracy: 0.005)
        XCTAssertEqual(Double(big.parameters[.decoder]!) / 1e9, 7.32, accuracy: 0.01)
    }

    /// MAE's table: the class row is zero, patch (y, x) holds sin/cos of x then of y at 10000^(-i/(D/4)).
    func testSinCosVisionPositions() throws {
        let model = XComposer(config: try ModelConfig.load(recipes.appendingPathComponent("tiny.json")), trainable: [])
        model.useSinCosVisionPositions()
        let table = model.parameters.value("vision_model.embeddings.position_embedding")!
        let d = 192, quarter = 48, side = 16
        XCTAssertEqual(Array(table.array[..<d]), [Float](repeating: 0, count: d))
        let (y, x) = (3, 5), row = Array(table.array[(1 + y * side + x) * d ..< (2 + y * side + x) * d])
        for i in [0, 7, 47] {
            let w = pow(10000, -Double(i) / Double(quarter))
            XCTAssertEqual(row[i], Float(sin(Double(x) * w)), accuracy: 1e-6)
            XCTAssertEqual(row[quarter + i], Float(cos(Double(x) * w)), accuracy: 1e-6)
            XCTAssertEqual(row[2 * quarter + i], Float(sin(Double(y) * w)), accuracy: 1e-6)
            XCTAssertEqual(row[3 * quarter + i], Float(cos(Double(y) * w)), accuracy: 1e-6)
        }
    }

    func testRegistryNamesAreTheHuggingFaceKeys() throws {
        let directory = Fixture.directory("blip2-crossfreq2")
        let config = try ModelConfig.load(directory.appendingPathComponent("config.json"))
        let keys = try SafetensorsFile(directory.appendingPathComponent("model.safetensors")).entries
        let registry = XComposer.registry(config)
        XCTAssertEqual(Set(registry.map(\.name)), Set(keys.keys))
        for spec in registry { XCTAssertEqual(spec.shape, keys[spec.name]!.shape, spec.name) }
        XCTAssertEqual(registry.filter { $0.name.hasSuffix("bias") }.filter(\.decays), [], "biases do not decay")
    }

    func testShardedDirectoryLoadsTheSameWeights() throws {
        let single = try XComposer.load(directory: Fixture.directory("blip2-crossfreq2"), trainable: [])
        let sharded = try XComposer.load(directory: Fixture.directory("blip2-crossfreq2-sharded"), trainable: [])
        let a = UnsafeBufferPointer(start: single.parameters.values.base, count: single.parameters.values.count)
        let b = UnsafeBufferPointer(start: sharded.parameters.values.base, count: sharded.parameters.values.count)
        XCTAssertEqual(Array(a).map(\.bitPattern), Array(b).map(\.bitPattern))
    }

    func testHalfAndBrainFloatAreWidenedExactly() throws {
        let file = try SafetensorsFile(Fixture.directory("").appendingPathComponent("dtypes.safetensors"))
        for (stored, widened) in [("f16", "f16_as_f32"), ("bf16", "bf16_as_f32")] {
            XCTAssertEqual(try file.tensor(stored).array.map(\.bitPattern), try file.tensor(widened).array.map(\.bitPattern), stored)
        }
    }

    /// Copies the fixture directory with its weights rewritten by `edit` (name -> tensor).
    private func directoryWithWeights(_ edit: (inout [(name: String, tensor: Tensor)]) -> Void) throws -> URL {
        let source = Fixture.directory("blip2-crossfreq2")
        let file = try SafetensorsFile(source.appendingPathComponent("model.safetensors"))
        var tensors = try file.names.map { (name: $0, tensor: try file.tensor($0)) }
        edit(&tensors)
        try FileManager.default.copyItem(at: source.appendingPathComponent("config.json"), to: scratch.appendingPathComponent("config.json"))
        try SafetensorsFile.write(tensors, to: scratch.appendingPathComponent("model.safetensors"))
        return scratch
    }

    func testMissingTensorIsNamed() throws {
        let directory = try directoryWithWeights { $0.removeAll { $0.name == "qformer.layernorm.bias" } }
        XCTAssertThrowsError(try XComposer.load(directory: directory, trainable: [])) { error in
            XCTAssert("\(error)".contains("'qformer.layernorm.bias' [24] is missing"), "\(error)")
        }
    }

    func testWronglyShapedTensorNamesBothShapes() throws {
        let directory = try directoryWithWeights { tensors in
            let i = tensors.firstIndex { $0.name == "language_projection.weight" }!
            tensors[i].tensor = Tensor(zeros: [24, 40])
        }
        XCTAssertThrowsError(try XComposer.load(directory: directory, trainable: [])) { error in
            XCTAssert("\(error)".contains("'language_projection.weight' has shape [24, 40], expected [40, 24]"), "\(error)")
        }
    }

    func testUnexpectedTensorIsNamed() throws {
        let directory = try directoryWithWeights { $0.append((name: "flag_image_start", tensor: Tensor(zeros: [1, 1, 40]))) }
        XCTAssertThrowsError(try XComposer.load(directory: directory, trainable: [])) { error in
            XCTAssert("\(error)".contains("unexpected tensor 'flag_image_start'"), "\(error)")
        }
    }

    func testCorruptHeaderIsReported() throws {
        let url = scratch.appendingPathComponent("bad.safetensors")
        try Data([200, 0, 0, 0, 0, 0, 0, 0, 123]).write(to: url)
        XCTAssertThrowsError(try SafetensorsFile(url)) { error in
            XCTAssert("\(error)".contains("header length 200 exceeds the file size"), "\(error)")
        }
    }
}

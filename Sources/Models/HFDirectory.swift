import Foundation
import Tensors

/// Reading and writing Hugging Face model directories: `config.json` plus `model.safetensors`, or shards
/// listed in `model.safetensors.index.json`.
extension XComposer {
    /// Loads a model from a Hugging Face directory. Every registry key must be present with its exact
    /// shape, and no other tensor may be; errors name the file, the key and both shapes.
    public static func load(directory: URL, trainable: Set<ModelPart>) throws -> XComposer {
        let config = try ModelConfig.load(directory.appendingPathComponent("config.json"))
        let model = XComposer(config: config, trainable: trainable)
        try model.loadWeights(directory: directory)
        return model
    }

    /// Reads every parameter from the safetensors file(s) in `directory`; LoRA adapters, which a
    /// Hugging Face model does not have, are left as they are.
    public func loadWeights(directory: URL) throws {
        let files = try XComposer.weightFiles(directory)
        var owner: [String: SafetensorsFile] = [:]
        for file in files {
            for name in file.entries.keys { owner[name] = file }
        }
        for spec in parameters.specs where spec.part != .lora {
            guard let file = owner.removeValue(forKey: spec.name) else {
                throw ModelError("\(directory.path): tensor '\(spec.name)' \(spec.shape) is missing from \(files.map(\.url.lastPathComponent).joined(separator: ", "))")
            }
            try file.read(spec.name, into: parameters.value(spec.name)!)
        }
        if let (name, file) = owner.min(by: { $0.key < $1.key }) {
            throw ModelError("\(file.url.path): unexpected tensor '\(name)' (and \(owner.count - 1) more): not part of this model's config")
        }
    }

    static func weightFiles(_ directory: URL) throws -> [SafetensorsFile] {
        let single = directory.appendingPathComponent("model.safetensors")
        if FileManager.default.fileExists(atPath: single.path) { return [try SafetensorsFile(single)] }
        let indexURL = directory.appendingPathComponent("model.safetensors.index.json")
        guard let data = FileManager.default.contents(atPath: indexURL.path) else {
            throw ModelError("\(directory.path): neither model.safetensors nor model.safetensors.index.json is there")
        }
        guard let index = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let map = index["weight_map"] as? [String: String] else {
            throw ModelError("\(indexURL.path): weight_map: expected an object of tensor name -> shard file")
        }
        return try Set(map.values).sorted().map { try SafetensorsFile(directory.appendingPathComponent($0)) }
    }

    /// Writes `config.json` and `model.safetensors` (Float32) that `Blip2ForConditionalGeneration.from_pretrained`
    /// loads: the base weights, without LoRA adapters (see `merged()` and `saveAdapter`).
    public func save(directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try writeAtomically(config.jsonData(), to: directory.appendingPathComponent("config.json"))
        let tensors = parameters.specs.filter { $0.part != .lora }.map { ($0.name, parameters.value($0.name)!) }
        try SafetensorsFile.write(tensors, to: directory.appendingPathComponent("model.safetensors"))
    }
}

/// PEFT adapters: `adapter_model.safetensors` (keys `base_model.model.<module>.lora_A.weight` [r, in] and
/// `...lora_B.weight` [out, r]) and `adapter_config.json`, which `PeftModel.from_pretrained` loads onto
/// the base model.
extension XComposer {
    public static let peftPrefix = "base_model.model."

    public func saveAdapter(directory: URL) throws {
        guard let lora else { throw ModelError("the model has no LoRA adapters to save") }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let tensors = parameters.specs.filter { $0.part == .lora }.map { (XComposer.peftPrefix + $0.name, parameters.value($0.name)!) }
        try SafetensorsFile.write(tensors, to: directory.appendingPathComponent("adapter_model.safetensors"))
        let config: [String: Any] = [
            "peft_type": "LORA", "r": lora.rank, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
            "target_modules": lora.targets, "bias": "none", "fan_in_fan_out": false, "inference_mode": true,
            "init_lora_weights": true, "modules_to_save": NSNull(), "base_model_name_or_path": NSNull(), "task_type": NSNull(),
        ]
        try writeAtomically(JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]),
                            to: directory.appendingPathComponent("adapter_config.json"))
    }

    /// Reads a PEFT adapter's tensors into this model's adapters (same rank and targets).
    public func loadAdapter(directory: URL) throws {
        let file = try SafetensorsFile(directory.appendingPathComponent("adapter_model.safetensors"))
        for spec in parameters.specs where spec.part == .lora {
            try file.read(XComposer.peftPrefix + spec.name, into: parameters.value(spec.name)!)
        }
    }
}

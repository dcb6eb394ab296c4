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

    /// Reads every parameter from the safetensors file(s) in `directory`.
    public func loadWeights(directory: URL) throws {
        let files = try XComposer.weightFiles(directory)
        var owner: [String: SafetensorsFile] = [:]
        for file in files {
            for name in file.entries.keys { owner[name] = file }
        }
        for spec in parameters.specs {
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

    /// Writes `config.json` and `model.safetensors` (Float32) that `Blip2ForConditionalGeneration.from_pretrained` loads.
    public func save(directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try writeAtomically(config.jsonData(), to: directory.appendingPathComponent("config.json"))
        let tensors = parameters.specs.map { ($0.name, parameters.value($0.name)!) }
        try SafetensorsFile.write(tensors, to: directory.appendingPathComponent("model.safetensors"))
    }
}

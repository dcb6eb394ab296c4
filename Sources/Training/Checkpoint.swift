import Datasets
import Foundation
import Models
import Tensors

/// What a checkpoint of a fine-tuning run applies to: it stores only the trained tensors, and names the
/// checkpoint or Hugging Face directory it started from with the hash of that model's weights.
public struct BaseReference: Codable, Equatable, Sendable {
    /// "checkpoint" or "huggingface".
    public var kind: String
    /// Absolute path of the base checkpoint file or Hugging Face directory.
    public var path: String
    /// XXH64 of the base model's parameters (adapters excluded).
    public var xxh64: String
}

/// Everything besides tensors that a resumed run needs.
public struct TrainingState: Codable, Equatable, Sendable {
    /// Optimizer steps completed.
    public var step: Int
    public var rng: RNG.State
    public var loader: LoaderState

    public init(step: Int, rng: RNG.State, loader: LoaderState) {
        self.step = step
        self.rng = rng
        self.loader = loader
    }
}

/// Checkpoints in HDF5 (readable with h5py):
///
///     /params/<hf key>       every parameter, Float32, fletcher32-checksummed
///     /adam/m/<hf key>, /adam/v/<hf key>   AdamW moments of the trained parameters
///     attributes: format, state (JSON: step, RNG, loader), recipe (JSON), model_config (config.json),
///                 trainable (JSON list of parts), params_xxh64 (hash of all parameter bytes),
///                 tokenizer (JSON: kind, identity, template ids, the file in base64) of the data trained on
///
/// A checkpoint is written to a temporary name in the run directory, flushed to disk, then renamed to
/// `step-NNNNNNN.h5`; a crash while writing leaves the previous checkpoints as they were.
public enum Checkpoint {
    public static let format = "xtrain-checkpoint-1"

    public static func fileName(step: Int) -> String { String(format: "step-%07d.h5", step) }

    /// The checkpoints in `directory`, oldest first.
    public static func list(_ directory: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".h5") }.sorted().map { directory.appendingPathComponent($0) }
    }

    /// Removes temporary files that a run killed while writing a checkpoint left behind.
    public static func removeStaleTemporaries(_ directory: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in names where name.hasPrefix(".step-") && name.contains(".h5.tmp-") {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
        }
    }

    /// XXH64 of the parameters other than LoRA adapters, in registry order: the same for a model and for
    /// that model with adapters added, so it identifies the base a fine-tuning checkpoint applies to.
    public static func parameterHash(_ parameters: Parameters) -> String {
        var hasher = XXHash64()
        for spec in parameters.specs where spec.part != .lora {
            hasher.update(UnsafeRawBufferPointer(start: parameters.values.base + spec.offset, count: spec.count * 4))
        }
        return hasher.hexDigest
    }

    /// Writes a checkpoint of `model` (and `optimizer`) after `state.step` steps; keeps the newest `keep`.
    /// With a `base`, only the trained tensors are stored.
    @discardableResult
    public static func save(directory: URL, model: XComposer, optimizer: AdamW?, state: TrainingState, recipe: String, tokenizer: Tokenizer?,
                            keep: Int, base: BaseReference? = nil, name: String? = nil) throws -> URL {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let final = directory.appendingPathComponent(name ?? fileName(step: state.step))
        let temporary = directory.appendingPathComponent(".\(final.lastPathComponent).tmp-\(getpid())")
        try? FileManager.default.removeItem(at: temporary)
        do {
            let file = try H5File.create(temporary.path)
            let p = model.parameters
            for spec in p.specs where base == nil || spec.gradOffset != nil {
                try file.write("params/" + spec.name, p.value(spec.name)!)
                faultPoint("checkpoint-write")
            }
            if let optimizer {
                for spec in p.specs {
                    guard let g = spec.gradOffset else { continue }
                    try file.write("adam/m/" + spec.name, optimizer.m.base + g, shape: spec.shape)
                    try file.write("adam/v/" + spec.name, optimizer.v.base + g, shape: spec.shape)
                }
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            try file.setString("format", format)
            try file.setString("state", String(decoding: try encoder.encode(state), as: UTF8.self))
            try file.setString("recipe", recipe)
            try file.setString("model_config", String(decoding: try model.config.jsonData(), as: UTF8.self))
            try file.setString("trainable", String(decoding: try encoder.encode(model.trainable.map(\.rawValue).sorted()), as: UTF8.self))
            try file.setString("params_xxh64", parameterHash(p))
            if let lora = model.lora { try file.setString("lora", String(decoding: try encoder.encode(lora), as: UTF8.self)) }
            if let base { try file.setString("base", String(decoding: try encoder.encode(base), as: UTF8.self)) }
            if let tokenizer { try file.setString("tokenizer", String(decoding: try encoder.encode(tokenizer.stored), as: UTF8.self)) }
            try file.flush()
        }
        try syncToDisk(temporary)
        guard rename(temporary.path, final.path) == 0 else {
            throw TrainingError("\(final.path): cannot rename the checkpoint into place (\(String(cString: strerror(errno))))")
        }
        try syncToDisk(directory)
        if name == nil { for old in list(directory).dropLast(keep) { try? FileManager.default.removeItem(at: old) } }
        faultPoint("checkpoint-done")
        return final
    }

    /// What a checkpoint says about itself, read without loading tensors.
    public struct Header {
        public let url: URL
        public let state: TrainingState
        public let recipe: String
        public let config: ModelConfig
        public let trainable: Set<ModelPart>
        public let parameterHash: String
        public let lora: LoRAConfig?
        public let base: BaseReference?
        /// The tokenizer of the data it was trained on (nil in checkpoints that do not record one).
        public let tokenizer: Tokenizer?
        let file: H5File

        /// Refuses data tokenized otherwise than the data this checkpoint was trained on (`data` names it).
        public func expectTokenizer(_ dataTokenizer: Tokenizer, of data: String) throws {
            guard let tokenizer, tokenizer.identity != dataTokenizer.identity else { return }
            throw TrainingError("\(url.path): trained on data tokenized by \(tokenizer.identity); \(data) is tokenized by \(dataTokenizer.identity)")
        }

        /// The shape of parameter `name` as stored in this file (nil when it is not stored here).
        public func storedShape(_ name: String) -> [Int]? { file.shape("params/" + name) }
    }

    /// Opens a checkpoint and reads its attributes; errors name the file and what is wrong.
    public static func header(_ url: URL) throws -> Header {
        let file = try H5File.open(url.path)
        guard file.string("format") == format else {
            throw TrainingError("\(url.path): not an xtrain checkpoint (format '\(file.string("format") ?? "none")', expected \(format))")
        }
        guard let stateJSON = file.string("state"), let state = try? JSONDecoder().decode(TrainingState.self, from: Data(stateJSON.utf8)),
              let configJSON = file.string("model_config"), let config = try? JSONDecoder().decode(ModelConfig.self, from: Data(configJSON.utf8)),
              let trainableJSON = file.string("trainable"), let parts = try? JSONDecoder().decode([String].self, from: Data(trainableJSON.utf8)),
              let hash = file.string("params_xxh64") else {
            throw TrainingError("\(url.path): the checkpoint's attributes are missing or corrupt")
        }
        let lora = try file.string("lora").map { try JSONDecoder().decode(LoRAConfig.self, from: Data($0.utf8)) }
        let base = try file.string("base").map { try JSONDecoder().decode(BaseReference.self, from: Data($0.utf8)) }
        let tokenizer = try file.string("tokenizer").map {
            guard let stored = try? JSONDecoder().decode(Tokenizer.Stored.self, from: Data($0.utf8)) else {
                throw TrainingError("\(url.path): the checkpoint's tokenizer attribute is corrupt")
            }
            return try Tokenizer(stored, place: "\(url.path): tokenizer")
        }
        return Header(url: url, state: state, recipe: file.string("recipe") ?? "", config: config,
                      trainable: Set(parts.compactMap(ModelPart.init(rawValue:))), parameterHash: hash, lora: lora, base: base,
                      tokenizer: tokenizer, file: file)
    }

    /// The model a checkpoint holds (its adapters too), nothing trainable, its base chain restored.
    public static func model(_ url: URL) throws -> (header: Header, model: XComposer) {
        let header = try Checkpoint.header(url)
        let model = XComposer(config: header.config, trainable: [], lora: header.lora)
        try restore(header, into: model)
        return (header, model)
    }

    /// Restores the weights a checkpoint records into `model`: its base first (recursively, hash
    /// verified), then its own tensors; the moments too when `optimizer` is given. A checkpoint without
    /// adapters (e.g. stage A's) leaves the model's adapters untouched and returns false; one with
    /// adapters must match the model's LoRA config. Refuses a checkpoint of another model shape.
    @discardableResult
    public static func restore(_ header: Header, into model: XComposer, optimizer: AdamW? = nil) throws -> Bool {
        let path = header.url.path, file = header.file
        guard header.config == model.config else {
            throw TrainingError("\(path): the checkpoint's model config differs from this model's; it is of another model")
        }
        if let lora = header.lora, lora != model.lora {
            throw TrainingError("\(path): LoRA rank \(lora.rank), alpha \(lora.alpha), targets \(lora.targets) differ from the recipe's \(model.lora.map { "rank \($0.rank), alpha \($0.alpha), targets \($0.targets)" } ?? "no LoRA")")
        }
        if let base = header.base {
            switch base.kind {
            case "checkpoint":
                guard FileManager.default.fileExists(atPath: base.path) else {
                    throw TrainingError("\(path): its base checkpoint \(base.path) is missing")
                }
                try restore(try Checkpoint.header(URL(fileURLWithPath: base.path)), into: model)
            default:
                try model.loadWeights(directory: URL(fileURLWithPath: base.path))
            }
            let hash = parameterHash(model.parameters)
            guard hash == base.xxh64 else {
                throw TrainingError("\(path): its base \(base.path) has changed (weights hash \(hash), recorded \(base.xxh64))")
            }
        }
        for spec in model.parameters.specs {
            guard let shape = file.shape("params/" + spec.name) else {
                if spec.part == .lora || header.base != nil { continue }
                throw TrainingError("\(path): tensor '\(spec.name)' \(spec.shape) is missing: the checkpoint is of another model")
            }
            guard shape == spec.shape else {
                throw TrainingError("\(path): tensor '\(spec.name)' has shape \(shape), this model expects \(spec.shape): the checkpoint is of another model")
            }
            try file.read("params/" + spec.name, into: model.parameters.values.base + spec.offset, count: spec.count)
        }
        let hash = parameterHash(model.parameters)
        guard hash == header.parameterHash else {
            throw TrainingError("\(path): parameter hash \(hash) differs from the recorded \(header.parameterHash) (corrupt checkpoint)")
        }
        if let optimizer {
            for spec in model.parameters.specs {
                guard let g = spec.gradOffset else { continue }
                guard file.shape("adam/m/" + spec.name) != nil else {
                    throw TrainingError("\(path): AdamW moments of '\(spec.name)' are missing (the checkpoint trained other parts: \(header.trainable.map(\.rawValue).sorted()))")
                }
                try file.read("adam/m/" + spec.name, into: optimizer.m.base + g, count: spec.count)
                try file.read("adam/v/" + spec.name, into: optimizer.v.base + g, count: spec.count)
            }
            optimizer.step = header.state.step
        }
        return header.lora != nil
    }
}

/// fsync of a file or directory.
func syncToDisk(_ url: URL) throws {
    let fd = open(url.path, O_RDONLY)
    guard fd >= 0 else { throw TrainingError("\(url.path): cannot open to flush (\(String(cString: strerror(errno))))") }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw TrainingError("\(url.path): fsync failed (\(String(cString: strerror(errno))))") }
}

/// A fault-injection point for the crash tests: with XTRAIN_FAULT=<name>[:<n>] the process kills itself
/// (SIGKILL) the n-th time (default 1st) it passes point <name>; with XTRAIN_FAULT_RANK=<r> only MPI
/// rank r does. Unset, it costs one dictionary lookup.
func faultPoint(_ name: String) {
    let environment = ProcessInfo.processInfo.environment
    guard let spec = environment["XTRAIN_FAULT"] else { return }
    let parts = spec.split(separator: ":")
    guard parts.first.map(String.init) == name else { return }
    if let rank = environment["XTRAIN_FAULT_RANK"], rank != environment["OMPI_COMM_WORLD_RANK"] ?? "0" { return }
    FaultCounter.hits += 1
    if FaultCounter.hits >= (parts.count > 1 ? Int(parts[1]) ?? 1 : 1) { kill(getpid(), SIGKILL) }
}

enum FaultCounter { nonisolated(unsafe) static var hits = 0 }

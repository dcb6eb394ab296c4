import Foundation
import Datasets
import Models
import Tensors

/// A training recipe: the JSON file behind `xtrain pretrain|lora|instruct RECIPE`. Keys are snake_case;
/// paths are relative to the recipe's folder. See Recipes/README.md for every field.
public struct Recipe: Codable, Sendable {
    public struct Initialization: Codable, Sendable {
        /// "random", "huggingface" (a directory with config.json + safetensors) or "checkpoint" (weights only).
        public var from: String
        public var path: String?
        /// Standard deviation of the normal init of matrices and embeddings (random init).
        public var std: Double?
        /// The random ViT's position embeddings: "learned" (normal, like every matrix) or "sincos" (MAE's
        /// fixed 2-D sine-cosine table, so that a frozen random ViT still says where each patch is).
        public var visionPositions: String?
        /// When set, the random sampler's queries start on a grid over the image with cross-attention
        /// focused around each grid cell, this sharp (`XComposer.useGridQueries`); needs sincos positions.
        public var queryGrid: Double?
        /// The order in which the grid's cells go to the queries, and so to the decoder's image tokens:
        /// "rows" (the default) or "z" (`PerceiveSampler.gridCells`).
        public var queryOrder: String?
    }

    public struct Source: Codable, Sendable {
        public var path: String
        public var weight: Double?
    }

    public struct DataSpec: Codable, Sendable {
        public var train: [Source]
        public var eval: [Source]?
        public var sequenceLength: Int
        /// Sequences per optimizer step (over all micro-batches and ranks).
        public var batchSize: Int
        /// Micro-batches per optimizer step.
        public var gradientAccumulation: Int?
        /// Micro-batches per length window (absent or 1: no grouping): each window's samples are sorted by
        /// length before they are cut into batches, so that batches pad less (`Loader`).
        public var lengthWindow: Int?
        /// Mixes of `train` for the first steps, in order: until `until_step` (exclusive) the sources are
        /// drawn by `weights` (one per source); after the last phase, by their `weight`.
        public var schedule: [Phase]?
    }

    public struct Phase: Codable, Sendable {
        public var untilStep: Int
        public var weights: [Double]
    }

    public struct OptimizerSpec: Codable, Sendable {
        /// Peak learning rate per trained part: "vision", "sampler", "decoder".
        public var lr: [String: Double]
        public var betas: [Double]?
        public var eps: Double?
        public var weightDecay: Double?
        /// Global gradient-norm clipping threshold; absent = no clipping.
        public var gradClip: Double?
    }

    public struct ScheduleSpec: Codable, Sendable {
        public var warmupSteps: Int
        /// The learning rate at the end of the cosine decay, for every group.
        public var minLr: Double
        /// "cosine" or "constant".
        public var decay: String?
    }

    public struct CheckpointSpec: Codable, Sendable {
        /// The run directory: checkpoints, metrics.jsonl.
        public var dir: String
        public var every: Int
        public var keep: Int?
    }

    public struct LoRASpec: Codable, Sendable {
        public var rank: Int
        public var alpha: Double
        public var dropout: Double?
        /// Decoder modules to adapt (default: q_proj, k_proj, v_proj, gate_proj, up_proj, down_proj).
        public var targets: [String]?
    }

    public struct EvalSpec: Codable, Sendable {
        public var every: Int
        public var batches: Int
        /// Records per eval dataset whose answers are generated and scored (VQA, captions, selection); 0 = loss only.
        public var tasks: Int?
    }

    public var description: String?
    /// A model config JSON (Hugging Face Blip2Config) or a Hugging Face model directory.
    public var model: String
    public var `init`: Initialization
    public var data: DataSpec
    public var steps: Int
    public var freeze: [String]?
    /// LoRA adapters on the decoder (trained as the part "lora").
    public var lora: LoRASpec?
    public var optimizer: OptimizerSpec
    public var schedule: ScheduleSpec
    public var checkpoint: CheckpointSpec
    public var eval: EvalSpec?
    public var logEvery: Int?
    public var seed: UInt64
    /// The arithmetic of the matrix products: "fp32" (the default) or "bf16" (bf16 operands, fp32
    /// accumulation; weights, optimizer state and every other kernel stay fp32).
    public var precision: String?
    /// How the training loss averages over a batch's targets: "token" (the default), "sample" or "square"
    /// (`LossAverage`). Held-out losses are always token averages, comparable across recipes.
    public var lossAverage: String?

    /// The recipe's allowed keys, to name a typo's JSON path instead of ignoring it.
    static let schema: [String: Any] = [
        "description": true, "model": true, "steps": true, "freeze": true, "log_every": true, "seed": true, "precision": true,
        "loss_average": true,
        "lora": ["rank": true, "alpha": true, "dropout": true, "targets": true],
        "init": ["from": true, "path": true, "std": true, "vision_positions": true, "query_grid": true, "query_order": true],
        "data": ["train": [["path": true, "weight": true]], "eval": [["path": true, "weight": true]],
                 "sequence_length": true, "batch_size": true, "gradient_accumulation": true, "length_window": true,
                 "schedule": [["until_step": true, "weights": true]]],
        "optimizer": ["lr": ["vision": true, "sampler": true, "decoder": true, "lora": true], "betas": true, "eps": true,
                      "weight_decay": true, "grad_clip": true],
        "schedule": ["warmup_steps": true, "min_lr": true, "decay": true],
        "checkpoint": ["dir": true, "every": true, "keep": true],
        "eval": ["every": true, "batches": true, "tasks": true],
    ]

    public var gradientAccumulation: Int { data.gradientAccumulation ?? 1 }
    public var lengthWindow: Int { data.lengthWindow ?? 1 }
    /// `data.schedule` as the loader's phases: step boundaries in samples (`data.batch_size` per step).
    public var loaderPhases: [Loader.Phase] {
        (data.schedule ?? []).map { Loader.Phase(untilSample: $0.untilStep * data.batchSize, weights: $0.weights) }
    }

    /// The training loader over `sources` (the `data.train` datasets, opened): micro-batches of
    /// `data.batch_size / gradient_accumulation` sequences, drawn by the sources' weights and `data.schedule`.
    public func trainLoader(_ sources: [Dataset], rank: Int = 0, ranks: Int = 1, state: LoaderState? = nil) throws -> Loader {
        try Loader(sources: sources, weights: data.train.map { $0.weight ?? 1 }, globalBatch: data.batchSize / gradientAccumulation,
                   sequenceLength: data.sequenceLength, seed: seed, rank: rank, ranks: ranks, lengthWindow: lengthWindow,
                   phases: loaderPhases, state: state)
    }

    public var betas: (Double, Double) { (optimizer.betas?[0] ?? 0.9, optimizer.betas?[1] ?? 0.95) }
    public var eps: Double { optimizer.eps ?? 1e-8 }
    public var weightDecay: Double { optimizer.weightDecay ?? 0 }
    public var matmulPrecision: MatmulPrecision { precision.flatMap(MatmulPrecision.init(rawValue:)) ?? .fp32 }
    public var lossAveraging: LossAverage { lossAverage.flatMap(LossAverage.init(rawValue:)) ?? .token }
    public var frozenParts: Set<ModelPart> { Set((freeze ?? []).compactMap(ModelPart.init(rawValue:))) }

    /// The parts that train: vision, sampler and decoder unless frozen, and the adapters when there are any.
    public var trainableParts: Set<ModelPart> {
        Set([ModelPart.vision, .sampler, .decoder]).subtracting(frozenParts).union(lora == nil ? [] : [.lora])
    }

    /// The adapters' config, with the paper's defaults for what the recipe leaves out.
    public var loraConfig: LoRAConfig? {
        lora.map { LoRAConfig(rank: $0.rank, alpha: $0.alpha, dropout: $0.dropout ?? 0, targets: $0.targets ?? LoRAConfig(rank: 1, alpha: 1).targets) }
    }

    /// Peak learning rate of each trained part.
    public var peakLearningRates: [ModelPart: Double] {
        Dictionary(uniqueKeysWithValues: optimizer.lr.compactMap { key, value in ModelPart(rawValue: key).map { ($0, value) } })
    }
}

/// A recipe as loaded: the decoded fields, where it lives, and its JSON (saved in checkpoints).
public struct LoadedRecipe: Sendable {
    public let recipe: Recipe
    public let url: URL
    /// The recipe after `--set` overrides, as canonical JSON.
    public let json: String

    /// `path` from the recipe, resolved against the recipe's folder.
    public func resolve(_ path: String) -> URL {
        path.hasPrefix("/") ? URL(fileURLWithPath: path) : url.deletingLastPathComponent().appendingPathComponent(path).standardizedFileURL
    }

    /// Reads, overrides, checks and decodes a recipe. Errors name the file and the JSON path.
    public static func load(_ url: URL, overrides: [String] = []) throws -> LoadedRecipe {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw TrainingError("\(url.path): cannot read the recipe")
        }
        guard var json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TrainingError("\(url.path): not a JSON object")
        }
        for override in overrides { try apply(override, to: &json, file: url.path) }
        if let problem = check(json, against: Recipe.schema, path: "") { throw TrainingError("\(url.path): \(problem)") }
        let canonical = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .prettyPrinted])
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let recipe: Recipe
        do { recipe = try decoder.decode(Recipe.self, from: canonical) } catch let error as DecodingError {
            throw TrainingError("\(url.path): \(error.jsonPathDescription(snakeCase: true))")
        }
        let loaded = LoadedRecipe(recipe: recipe, url: url, json: String(decoding: canonical, as: UTF8.self))
        do { try loaded.validate() } catch let error as TrainingError { throw TrainingError("\(url.path): \(error.description)") }
        return loaded
    }

    /// `key.path=value`: value is read as JSON when it parses (numbers, true/false, arrays), else as a string.
    static func apply(_ override: String, to json: inout [String: Any], file: String) throws {
        guard let eq = override.firstIndex(of: "="), eq != override.startIndex else {
            throw TrainingError("--set '\(override)': expected key.path=value")
        }
        let keys = override[..<eq].split(separator: ".").map(String.init)
        let text = String(override[override.index(after: eq)...])
        let value = (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) ?? text
        func set(_ node: Any?, _ rest: ArraySlice<String>, _ path: String) throws -> Any {
            guard let key = rest.first else { return value }
            let here = path.isEmpty ? key : path + "." + key
            if var array = node as? [Any], let i = Int(key) {
                guard i >= 0 && i < array.count else { throw TrainingError("--set \(here): index out of range (\(array.count) entries)") }
                array[i] = try set(array[i], rest.dropFirst(), here)
                return array
            }
            var object = node as? [String: Any] ?? [:]
            if node != nil, !(node is [String: Any]) { throw TrainingError("--set \(here): '\(path)' is not an object") }
            object[key] = try set(object[key], rest.dropFirst(), here)
            return object
        }
        json = try set(json, keys[...], "") as! [String: Any]
    }

    /// The first unknown key in `json`, as "path: unknown field (allowed: ...)".
    static func check(_ json: Any, against schema: Any, path: String) -> String? {
        if let allowed = schema as? [String: Any] {
            guard let object = json as? [String: Any] else { return nil }   // type errors are the decoder's
            for key in object.keys.sorted() {
                let here = path.isEmpty ? key : path + "." + key
                guard let sub = allowed[key] else {
                    return "\(here): unknown field (allowed: \(allowed.keys.sorted().joined(separator: ", ")))"
                }
                if let problem = check(object[key]!, against: sub, path: here) { return problem }
            }
        } else if let element = (schema as? [Any])?.first, let array = json as? [Any] {
            for (i, item) in array.enumerated() {
                if let problem = check(item, against: element, path: "\(path)[\(i)]") { return problem }
            }
        }
        return nil
    }

    /// Range and consistency checks, each naming its JSON path.
    func validate() throws {
        let r = recipe
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws { if !ok { throw TrainingError(message()) } }
        try require(["random", "huggingface", "checkpoint"].contains(r.`init`.from), "init.from: '\(r.`init`.from)' is not one of random, huggingface, checkpoint")
        try require(r.`init`.from == "random" || r.`init`.path != nil, "init.path: required when init.from is '\(r.`init`.from)'")
        if let std = r.`init`.std { try require(std > 0, "init.std: must be positive, got \(std)") }
        if let positions = r.`init`.visionPositions {
            try require(["learned", "sincos"].contains(positions), "init.vision_positions: '\(positions)' is not one of learned, sincos")
            try require(r.`init`.from == "random", "init.vision_positions: only applies when init.from is 'random'")
        }
        if let sharpness = r.`init`.queryGrid {
            try require(sharpness > 0, "init.query_grid: must be positive, got \(sharpness)")
            try require(r.`init`.visionPositions == "sincos", "init.query_grid: needs init.vision_positions 'sincos' (the grid is in their coordinates)")
        }
        if let order = r.`init`.queryOrder {
            try require(["rows", "z"].contains(order), "init.query_order: '\(order)' is not one of rows, z")
            try require(r.`init`.queryGrid != nil, "init.query_order: only applies with init.query_grid")
        }
        try require(!r.data.train.isEmpty, "data.train: at least one dataset is needed")
        for (name, sources) in [("train", r.data.train), ("eval", r.data.eval ?? [])] {
            for (i, s) in sources.enumerated() {
                if let w = s.weight { try require(w > 0, "data.\(name)[\(i)].weight: must be positive, got \(w)") }
            }
        }
        try require(r.data.sequenceLength > 1, "data.sequence_length: must be at least 2, got \(r.data.sequenceLength)")
        try require(r.data.batchSize > 0, "data.batch_size: must be positive, got \(r.data.batchSize)")
        try require(r.gradientAccumulation > 0 && r.data.batchSize % r.gradientAccumulation == 0,
                    "data.gradient_accumulation: \(r.gradientAccumulation) must be positive and divide data.batch_size \(r.data.batchSize)")
        try require(r.lengthWindow > 0, "data.length_window: must be at least 1 micro-batch, got \(r.lengthWindow)")
        let schedule = r.data.schedule ?? []
        for (i, phase) in schedule.enumerated() {
            let previous = i > 0 ? schedule[i - 1].untilStep : 0
            try require(phase.untilStep > previous && phase.untilStep <= r.steps,
                        "data.schedule[\(i)].until_step: must be after \(previous) and at most steps (\(r.steps)), got \(phase.untilStep)")
            try require(phase.weights.count == r.data.train.count,
                        "data.schedule[\(i)].weights: one per data.train source (\(r.data.train.count)), got \(phase.weights.count)")
            try require(phase.weights.allSatisfy { $0 >= 0 } && phase.weights.contains { $0 > 0 },
                        "data.schedule[\(i)].weights: must not be negative, nor all zero, got \(phase.weights)")
        }
        try require(r.steps > 0, "steps: must be positive, got \(r.steps)")
        for (i, part) in (r.freeze ?? []).enumerated() {
            try require(["vision", "sampler", "decoder"].contains(part), "freeze[\(i)]: '\(part)' is not one of vision, sampler, decoder")
        }
        if let lora = r.lora {
            try require(lora.rank > 0, "lora.rank: must be positive, got \(lora.rank)")
            try require(lora.alpha > 0, "lora.alpha: must be positive, got \(lora.alpha)")
            try require((0 ..< 1).contains(lora.dropout ?? 0), "lora.dropout: must be in [0, 1), got \(lora.dropout ?? 0)")
            for (i, target) in (lora.targets ?? []).enumerated() {
                try require(LoRAConfig.allTargets.contains(target), "lora.targets[\(i)]: '\(target)' is not one of \(LoRAConfig.allTargets.joined(separator: ", "))")
            }
        }
        for (part, lr) in r.optimizer.lr {
            try require(lr > 0, "optimizer.lr.\(part): must be positive, got \(lr)")
            try require(r.trainableParts.contains(ModelPart(rawValue: part)!), part == "lora" ? "optimizer.lr.lora: the recipe has no lora section" : "optimizer.lr.\(part): the part is frozen (see freeze)")
        }
        for part in r.trainableParts.sorted(by: { $0.rawValue < $1.rawValue }) {
            try require(r.optimizer.lr[part.rawValue] != nil, "optimizer.lr.\(part.rawValue): missing; the part is trained (freeze it or give it a learning rate)")
        }
        if let betas = r.optimizer.betas {
            try require(betas.count == 2 && betas.allSatisfy { $0 >= 0 && $0 < 1 }, "optimizer.betas: expected two numbers in [0, 1), got \(betas)")
        }
        try require(r.eps > 0, "optimizer.eps: must be positive, got \(r.eps)")
        try require(r.weightDecay >= 0, "optimizer.weight_decay: must not be negative, got \(r.weightDecay)")
        if let clip = r.optimizer.gradClip { try require(clip > 0, "optimizer.grad_clip: must be positive, got \(clip)") }
        try require(r.schedule.warmupSteps >= 0, "schedule.warmup_steps: must not be negative")
        try require(["cosine", "constant"].contains(r.schedule.decay ?? "cosine"), "schedule.decay: '\(r.schedule.decay!)' is not one of cosine, constant")
        try require(r.schedule.minLr >= 0, "schedule.min_lr: must not be negative")
        for (part, lr) in r.optimizer.lr {
            try require(r.schedule.minLr <= lr, "schedule.min_lr: \(r.schedule.minLr) exceeds optimizer.lr.\(part) \(lr)")
        }
        try require(r.checkpoint.every > 0, "checkpoint.every: must be positive")
        try require((r.checkpoint.keep ?? 1) >= 1, "checkpoint.keep: must be at least 1")
        if let eval = r.eval {
            try require(eval.every > 0 && eval.batches > 0, "eval.every and eval.batches: must be positive")
            try require(!(r.data.eval ?? []).isEmpty, "data.eval: needed when eval is set")
        }
        if let every = r.logEvery { try require(every > 0, "log_every: must be positive") }
        if let precision = r.precision {
            try require(MatmulPrecision(rawValue: precision) != nil, "precision: '\(precision)' is not one of fp32, bf16")
        }
        if let average = r.lossAverage {
            try require(LossAverage(rawValue: average) != nil,
                        "loss_average: '\(average)' is not one of \(LossAverage.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }
}


import Datasets
import Foundation
import Models
import Tensors

/// Where a run starts from.
public enum Resume: Sendable {
    case no
    /// The newest checkpoint in the run directory.
    case latest
    case from(URL)
}

/// One loop for pretraining, LoRA and instruction tuning: the recipe decides what is trained on what.
public final class Trainer {
    public let recipe: LoadedRecipe
    public let model: XComposer
    public let optimizer: AdamW
    public let runDirectory: URL
    let schedule: Schedule
    let loader: Loader
    let evalSources: [Dataset]
    /// The tokenizer of the run's data, which its checkpoints record.
    let tokenizer: Tokenizer
    var state: TrainingState
    var rng: RNG
    /// What this run fine-tunes (nil when it starts from random weights): its checkpoints then store only
    /// the trained tensors.
    var base: BaseReference?
    let log: (String) -> Void
    /// The data-parallel ranks: each computes gradients on its slice of every global batch, the
    /// gradients are summed, and every rank applies the same update. Rank 0 alone writes.
    public let world: Communicator
    private let arena = Arena()

    /// Sets up the model, data and optimizer, from scratch or from a checkpoint; nothing runs yet.
    public init(recipe loaded: LoadedRecipe, resume: Resume, world: Communicator = .single, log: @escaping (String) -> Void = { print($0) }) throws {
        let r = loaded.recipe
        recipe = loaded
        self.world = world
        self.log = log
        runDirectory = loaded.resolve(r.checkpoint.dir)
        Matmul.precision = r.matmulPrecision
        let config = try Trainer.modelConfig(loaded)
        model = XComposer(config: config, trainable: r.trainableParts, lora: r.loraConfig)
        optimizer = AdamW(parameters: model.parameters, beta1: r.betas.0, beta2: r.betas.1, eps: r.eps, weightDecay: r.weightDecay)
        schedule = Schedule(warmup: r.schedule.warmupSteps, total: r.steps, minimum: r.schedule.minLr, cosine: (r.schedule.decay ?? "cosine") == "cosine")
        let train = try r.data.train.map { try Dataset(loaded.resolve($0.path)) }
        evalSources = try (r.data.eval ?? []).map { try Dataset(loaded.resolve($0.path)) }
        tokenizer = train[0].tokenizer
        for dataset in train + evalSources {
            guard dataset.sharesTokenizer(with: train[0]) else {
                throw TrainingError("\(dataset.directory.path): tokenized by \(dataset.tokenizer.identity), \(train[0].directory.path) by \(tokenizer.identity) (or their template ids differ); a run's datasets share one tokenizer")
            }
            try dataset.checkCompatible(vocabSize: config.textConfig.vocabSize, imageQueries: config.numQueryTokens, imageTokenIndex: config.imageTokenIndex!)
            guard dataset.index.imageSide == config.visionConfig.imageSize else {
                throw TrainingError("\(dataset.directory.path): images are \(dataset.index.imageSide) pixels, the model's vision_config.image_size is \(config.visionConfig.imageSize)")
            }
        }
        rng = RNG(seed: r.seed)
        let checkpoint: URL?
        switch resume {
        case .no:
            checkpoint = nil
            if let existing = Checkpoint.list(runDirectory).last {
                throw TrainingError("\(runDirectory.path): holds checkpoints already (\(existing.lastPathComponent)); pass --resume to continue, or set checkpoint.dir to a new directory")
            }
        case .latest:
            guard let last = Checkpoint.list(runDirectory).last else {
                throw TrainingError("\(runDirectory.path): no checkpoint to resume from")
            }
            checkpoint = last
        case .from(let url):
            checkpoint = url
        }
        let header = try checkpoint.map { try Checkpoint.header($0) }
        if let header, header.config != config {
            throw TrainingError("\(header.url.path): the checkpoint's model config differs from \(r.model); it is of another model")
        }
        try header?.expectTokenizer(tokenizer, of: train[0].directory.path)
        if let header, header.lora != r.loraConfig {
            throw TrainingError("\(header.url.path): the checkpoint's LoRA (\(header.lora.map { "rank \($0.rank)" } ?? "none")) differs from the recipe's (\(r.loraConfig.map { "rank \($0.rank)" } ?? "none"))")
        }
        guard r.data.sequenceLength <= config.textConfig.maxPositionEmbeddings else {
            throw TrainingError("\(loaded.url.path): data.sequence_length \(r.data.sequenceLength) exceeds the model's max_position_embeddings \(config.textConfig.maxPositionEmbeddings)")
        }
        let microBatch = r.data.batchSize / r.gradientAccumulation
        guard microBatch % world.size == 0 else {
            throw TrainingError("\(loaded.url.path): data.batch_size / gradient_accumulation = \(microBatch) sequences per micro-batch do not split over \(world.size) ranks")
        }
        do {
            loader = try r.trainLoader(train, rank: world.rank, ranks: world.size, state: header?.state.loader)
        } catch let mismatch as LoaderStateMismatch {
            throw TrainingError("\(header?.url.path ?? loaded.url.path): \(mismatch)")
        }
        state = header?.state ?? TrainingState(step: 0, rng: rng.state, loader: loader.state)
        if let header {
            try Checkpoint.restore(header, into: model, optimizer: optimizer)
            base = header.base
            rng = RNG(state: header.state.rng)
            log("resumed from \(header.url.path) at step \(state.step)")
        } else {
            try initialize()
        }
        try world.expectAgreement(weightsHash(), "the starting weights")
    }

    static func modelConfig(_ loaded: LoadedRecipe) throws -> ModelConfig {
        var url = loaded.resolve(loaded.recipe.model)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
            url.appendPathComponent("config.json")
        }
        return try ModelConfig.load(url)
    }

    /// The recipe's `init`: random weights, a Hugging Face directory, or a checkpoint's weights.
    func initialize() throws {
        let r = recipe.recipe
        var adaptersLoaded = false
        switch r.`init`.from {
        case "random":
            initializeRandomly(model.parameters, rng: &rng, std: Float(r.`init`.std ?? 0.02))
            if r.`init`.visionPositions == "sincos" { model.useSinCosVisionPositions() }
            if let sharpness = r.`init`.queryGrid {
                do { try model.useGridQueries(sharpness: Float(sharpness), zOrder: r.`init`.queryOrder == "z", rng: &rng) } catch {
                    throw TrainingError("\(recipe.url.path): init.query_grid: \(error) (model \(r.model))")
                }
            }
        case "huggingface":
            let directory = recipe.resolve(r.`init`.path!)
            try model.loadWeights(directory: directory)
            base = BaseReference(kind: "huggingface", path: directory.path, xxh64: Checkpoint.parameterHash(model.parameters))
        default:
            let url = recipe.resolve(r.`init`.path!)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw TrainingError("\(recipe.url.path): init.path: \(url.path) does not exist (run the stage it comes from first)")
            }
            let header = try Checkpoint.header(url)
            guard header.config == model.config else {
                throw TrainingError("\(header.url.path): init.path: the checkpoint's model config differs from \(r.model)")
            }
            try header.expectTokenizer(tokenizer, of: recipe.resolve(r.data.train[0].path).path)
            adaptersLoaded = try Checkpoint.restore(header, into: model)
            base = BaseReference(kind: "checkpoint", path: url.path, xxh64: Checkpoint.parameterHash(model.parameters))
        }
        if !adaptersLoaded { initializeAdapters(model.parameters, rng: &rng) }
        state.rng = rng.state
    }

    /// Positions whose next-token target counts (the loss averages over them).
    static func targetCount(_ b: Batch) -> Int { b.targets.filter { $0 != ignoreIndex }.count }

    /// The total weight of the batch's targets (their number without `lossWeights`).
    static func targetWeight(_ b: Batch) -> Double {
        guard let weights = b.lossWeights else { return Double(targetCount(b)) }
        return weights.reduce(0.0) { $0 + Double($1) }
    }

    /// Distinct names of a recipe's datasets for metrics: the last two path components ("vqa/eval"), or
    /// the paths as written when those repeat, numbered when the paths repeat too.
    static func datasetNames(_ paths: [String]) -> [String] {
        let short = paths.map { $0.split(separator: "/").suffix(2).joined(separator: "/") }
        if Set(short).count == short.count { return short }
        return Set(paths).count == paths.count ? paths : paths.enumerated().map { "\($0.offset): \($0.element)" }
    }

    /// The values that are there, by name.
    static func named(_ values: [Double?], _ names: [String]) -> [String: Double] {
        Dictionary(uniqueKeysWithValues: zip(names, values).compactMap { name, value in value.map { (name, $0) } })
    }

    static func modelBatch(_ b: LoadedBatch) -> Batch {
        Batch(batchSize: b.batchSize, sequenceLength: b.sequenceLength, tokens: b.tokens, labels: b.labels, attentionMask: b.attentionMask,
              images: b.images, firstSample: b.firstSample, sources: b.samples.map(\.source))
    }

    /// What a finished run reports.
    public struct Summary {
        public let losses: [Float]
        /// Wall time of each step (data wait, forward, backward, update).
        public let stepSeconds: [Double]
        public let evalLosses: [(step: Int, loss: Double)]
        public let seconds: Double
    }

    /// Trains from the current step to the recipe's last, checkpointing and evaluating as it says.
    /// Only rank 0 writes checkpoints and metrics, prints progress and evaluates.
    @discardableResult
    public func run(quiet: Bool = false) throws -> Summary {
        let r = recipe.recipe
        let leader = world.isLeader
        if leader {
            try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
            Checkpoint.removeStaleTemporaries(runDirectory)
        }
        let metrics = leader ? try MetricsLog(runDirectory.appendingPathComponent("metrics.jsonl"), keepingThrough: state.step) : nil
        let progress = ProgressLine(total: r.steps, every: r.logEvery ?? 10, quiet: quiet || !leader)
        let prefetcher = Prefetcher(loader, depth: 2 * r.gradientAccumulation)
        defer { prefetcher.stop() }
        let trainNames = Trainer.datasetNames(r.data.train.map(\.path)), evalNames = Trainer.datasetNames((r.data.eval ?? []).map(\.path))
        var losses: [Float] = [], evals: [(Int, Double)] = [], times: [Double] = [], warnedCut = false
        let start = Date()
        let parts = model.trainable.sorted { $0.rawValue < $1.rawValue }
        while state.step < r.steps {
            let stepStart = Date()
            let rates = Dictionary(uniqueKeysWithValues: parts.map { ($0, schedule.rate(step: state.step, peak: r.peakLearningRates[$0]!)) })
            let micro = try (0 ..< r.gradientAccumulation).map { _ in try prefetcher.next() }
            let result = try step(micro.map(Trainer.modelBatch), rates: rates, cutTargets: micro.reduce(0) { $0 + $1.cutTargets.reduce(0, +) })
            faultPoint("step")
            state.step += 1
            state.loader = micro.last!.state
            state.rng = rng.state
            losses.append(result.loss)
            let seconds = Date().timeIntervalSince(stepStart)
            times.append(seconds)
            progress.record(step: state.step, loss: result.loss, rates: rates, tokens: result.tokens, samples: r.data.batchSize, seconds: seconds)
            var line: [String: Any] = ["step": state.step, "loss": Double(result.loss), "grad_norm": result.norm, "targets": result.targets,
                                       "lr": Dictionary(uniqueKeysWithValues: rates.map { ($0.key.rawValue, $0.value) }),
                                       "tokens_per_s": Double(result.tokens) / seconds, "samples_per_s": Double(r.data.batchSize) / seconds,
                                       "elapsed_s": Date().timeIntervalSince(start)]
            if world.size > 1 { line["ranks"] = world.size; line["rank_wait_s"] = result.waitSeconds; line["communication_s"] = result.communicationSeconds }
            if trainNames.count > 1 { line["source_loss"] = Trainer.named(result.sourceLosses.bySource, trainNames) }
            if result.cutTargets > 0 {
                line["cut_targets"] = result.cutTargets
                if !warnedCut { progress.message(cutWarning(step: state.step, cut: result.cutTargets, micro: micro, names: trainNames)) }
                warnedCut = true
            }
            try metrics?.append(line)
            if leader, let e = r.eval, state.step % e.every == 0 || state.step == r.steps {
                let evalLoss = try evaluate(batches: e.batches)
                evals.append((state.step, evalLoss.mean))
                var line: [String: Any] = ["step": state.step, "eval_loss": evalLoss.mean]
                var report = "step \(state.step): held-out loss \(String(format: "%.4f", evalLoss.mean))"
                if evalNames.count > 1 {
                    let bySource = Trainer.named(evalLoss.bySource, evalNames)
                    line["eval_source_loss"] = bySource
                    report += " (" + evalNames.compactMap { name in bySource[name].map { String(format: "%@ %.4f", name, $0) } }.joined(separator: ", ") + ")"
                }
                if let tasks = e.tasks, tasks > 0 {
                    let scores = try Evaluation.run(model: model, datasets: Array(zip(evalNames, evalSources)).map { (name: $0.0, dataset: $0.1) },
                                                    limit: tasks, sequenceLength: r.data.sequenceLength).filter { !$0.value.isNaN }
                    let named = { (value: (Evaluation.Score) -> Double?) in
                        Dictionary(uniqueKeysWithValues: scores.compactMap { s in value(s).map { ("\(s.dataset) \(s.metric)", $0) } })
                    }
                    line["eval_metrics"] = named(\.value)
                    line["eval_chance"] = named(\.chance)
                    line["eval_commonest"] = named(\.commonest)
                    report += scores.map { String(format: "; %@ %@ %.1f%% (%@)", $0.dataset, $0.metric, 100 * $0.value, $0.baselines) }.joined()
                }
                progress.message(report)
                try metrics?.append(line)
            }
            if state.step % r.checkpoint.every == 0 || state.step == r.steps {
                try world.expectAgreement(weightsHash(), "the weights after step \(state.step)")
                if leader {
                    let url = try Checkpoint.save(directory: runDirectory, model: model, optimizer: optimizer, state: state, recipe: recipe.json, tokenizer: tokenizer,
                                                  keep: r.checkpoint.keep ?? 3, base: base)
                    progress.message("step \(state.step): checkpoint \(url.path)")
                }
            }
        }
        progress.finish()
        return Summary(losses: losses, stepSeconds: times, evalLosses: evals, seconds: Date().timeIntervalSince(start))
    }

    /// The warning of the first step whose records lost loss targets to the sequence length, naming one
    /// such record of this rank's when it has one.
    func cutWarning(step: Int, cut: Int, micro: [LoadedBatch], names: [String]) -> String {
        var text = "warning: step \(step): \(cut) loss targets were past data.sequence_length \(recipe.recipe.data.sequenceLength) and were cut off with their records' tails"
        if let batch = micro.first(where: { $0.cutTargets.contains { $0 > 0 } }), let i = batch.cutTargets.firstIndex(where: { $0 > 0 }) {
            text += " (\(names[batch.samples[i].source]) record \(batch.samples[i].record) lost \(batch.cutTargets[i]))"
        }
        return text + "; metrics.jsonl counts them per step as cut_targets"
    }

    /// What one optimizer step did, over all ranks.
    public struct StepResult {
        /// Mean loss over the step's targets (weighted as `loss_average` says), and the gradient norm before clipping.
        public let loss: Float
        public let norm: Double
        /// Target tokens and real (unpadded) tokens in the step's global batch.
        public let targets: Int
        public let tokens: Int
        /// Loss targets the loader cut off with their records' tails (past the sequence length).
        public let cutTargets: Int
        /// The token-mean loss of the step's targets by training source (unweighted by `loss_average`).
        public let sourceLosses: LossesBySource
        /// Time spent waiting for the slowest rank, and summing the gradients over ranks (0 on one rank).
        public let waitSeconds: Double
        public let communicationSeconds: Double
    }

    /// One optimizer step over `micro` (this rank's share of the step's micro-batches): forward and
    /// backward of each, each weighted by its share of the total target weight of the whole step on all
    /// ranks (`loss_average`), the gradients summed over ranks, then clipping and the AdamW update. A
    /// non-finite loss or gradient norm stops before the update (on every rank alike: both are global).
    /// `cutTargets`: this rank's loss targets that the loader cut off, summed over ranks for the result.
    public func step(_ micro: [Batch], rates: [ModelPart: Double], cutTargets: Int = 0) throws -> StepResult {
        model.parameters.zeroGrads()
        let average = recipe.recipe.lossAveraging
        let micro = micro.map { batch in
            var batch = batch
            batch.lossWeights = average.weights(batch)
            return batch
        }
        let local = [Double(micro.reduce(0) { $0 + Trainer.targetCount($1) }), Double(micro.reduce(0) { $0 + Int($1.attentionMask.reduce(0, +)) }),
                     micro.reduce(0.0) { $0 + Trainer.targetWeight($1) }, Double(cutTargets)]
        let sums = try world.sum(local)
        let (total, tokens, totalWeight, cut) = (Int(sums[0]), Int(sums[1]), sums[2], Int(sums[3]))
        var lossSum = 0.0, sourceSums = [Double](repeating: 0, count: 2 * loader.sources.count)
        for batch in micro {
            arena.reset()
            let dropout = (model.lora?.dropout ?? 0) > 0 ? rng.nextStream() : nil
            let activations = try model.forward(batch, arena: arena, dropout: dropout)
            lossSum += Double(activations.loss) * activations.weight
            if let sources = batch.sources {
                for (i, sum) in activations.lossSums(bySource: sources, count: loader.sources.count).enumerated() { sourceSums[i] += sum }
            }
            if totalWeight > 0 { model.backward(activations, tokens: batch.tokens, arena: arena, lossScale: Float(activations.weight / totalWeight)) }
        }
        let reduced = try world.sum([lossSum] + sourceSums)
        lossSum = reduced[0]
        // The small reductions above also wait for the slowest rank; the gradient sum alone is transfer.
        let waiting = world.takeCommunicationSeconds()
        try world.sum(model.parameters.grads.base, count: model.parameters.grads.count)
        let loss = totalWeight > 0 ? Float(lossSum / totalWeight) : 0
        let norm = gradientNorm(model.parameters)
        guard loss.isFinite, norm.isFinite else {
            let last = Checkpoint.list(runDirectory).last.map { "the last good checkpoint is \($0.path)" } ?? "no checkpoint was written"
            let bad = loss.isFinite ? norm : Double(loss)
            throw TrainingError("step \(state.step + 1): the \(loss.isFinite ? "gradient norm" : "loss") is \(bad.isNaN ? "nan" : "\(bad)"); stopping before the update (\(last))")
        }
        // Global-norm clipping: AdamW reads the gradients times this factor.
        let clipFactor = recipe.recipe.optimizer.gradClip.flatMap { norm > $0 ? Float($0 / (norm + 1e-6)) : nil } ?? 1
        optimizer.update(model.parameters, rates: rates, gradientScale: clipFactor)
        return StepResult(loss: loss, norm: norm, targets: total, tokens: tokens, cutTargets: cut, sourceLosses: LossesBySource(sums: Array(reduced.dropFirst())),
                          waitSeconds: waiting, communicationSeconds: world.takeCommunicationSeconds())
    }

    /// XXH64 of every parameter (adapters included): equal on all ranks of a healthy run.
    func weightsHash() -> UInt64 {
        var hasher = XXHash64()
        hasher.update(UnsafeRawBufferPointer(start: model.parameters.values.base, count: model.parameters.values.count * 4))
        return hasher.finalize()
    }

    /// Mean next-token loss over the first `batches` batches of the eval data (always the same batches),
    /// overall and by eval source.
    public func evaluate(batches: Int) throws -> LossesBySource {
        try Evaluation.meanLoss(model: model, loader: evalLoader(), batches: batches)
    }

    /// The eval data from its start, in order: micro-batches as training's, drawn by the eval weights.
    func evalLoader() throws -> Loader {
        let r = recipe.recipe
        return try Loader(sources: evalSources, weights: (r.data.eval ?? []).map { $0.weight ?? 1 },
                          globalBatch: r.data.batchSize / r.gradientAccumulation, sequenceLength: r.data.sequenceLength, seed: r.seed, shuffle: false)
    }
}

/// LoRA init as PEFT's default: A Kaiming-uniform (a = sqrt 5, so U(-1/sqrt(in), 1/sqrt(in))), B zero.
public func initializeAdapters(_ parameters: Parameters, rng: inout RNG) {
    for spec in parameters.specs where spec.part == .lora {
        let t = parameters.value(spec.name)!
        if spec.name.hasSuffix(LoRAConfig.aSuffix) {
            let bound = 1 / Float(spec.shape[1]).squareRoot()
            rng.fillUniform(t, low: -bound, high: bound)
        } else {
            t.zero()
        }
    }
}

/// Random init: matrices, embeddings and query tokens N(0, std); biases 0; norm weights 1 (adapters
/// are left to `initializeAdapters`).
public func initializeRandomly(_ parameters: Parameters, rng: inout RNG, std: Float) {
    for spec in parameters.specs where spec.part != .lora {
        let t = parameters.value(spec.name)!
        if spec.name.hasSuffix(".bias") {
            t.zero()
        } else if spec.shape.count == 1 {
            t.fill(1)
        } else {
            rng.fillNormal(t, std: std)
        }
    }
}

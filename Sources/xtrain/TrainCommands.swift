import ArgumentParser
import Tensors
import Foundation
import Training

/// `--threads`, for every command that runs the model.
struct ThreadsOption: ParsableArguments {
    @Option(help: "Threads for the kernels (default: XTRAIN_THREADS, else the machine's cores; under mpirun, divided among the ranks on this machine).")
    var threads: Int?

    /// Sets the kernels' thread count if `--threads` was given; returns whether it was.
    func apply() throws -> Bool {
        guard let threads else { return false }
        guard threads > 0 else { throw ValidationError("--threads must be positive") }
        Tensors.Parallel.setThreads(threads)
        return true
    }
}

/// Options shared by `pretrain`, `lora` and `instruct`: one loop, different recipes.
struct TrainOptions: ParsableArguments {
    @Argument(help: "The recipe (JSON), e.g. recipes/stageA.json.")
    var recipe: String

    @Option(help: ArgumentHelp("Continue from a checkpoint: a step-NNNNNNN.h5 path, or without a value the newest one in the run directory.",
                               valueName: "checkpoint.h5"))
    var resume: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a recipe field, e.g. --set steps=50 --set optimizer.lr.sampler=1e-4 (repeatable).", valueName: "key.path=value"))
    var overrides: [String] = []

    @OptionGroup var threads: ThreadsOption

    /// Runs the recipe; under mpirun, as one rank of a data-parallel job. A rank that fails logs its
    /// error and ends the whole job, so no other rank waits for it.
    func train() throws {
        let world = try Communicator.fromEnvironment()
        if try !threads.apply(), world.size > 1, ProcessInfo.processInfo.environment["XTRAIN_THREADS"] == nil {
            Tensors.Parallel.setThreads(max(1, ProcessInfo.processInfo.activeProcessorCount / Communicator.localRanks))
        }
        guard world.usesMPI else { return try train(world) }
        do {
            try train(world)
            world.finish()
        } catch {
            FileHandle.standardError.write("xtrain rank \(world.rank) of \(world.size): error: \(error)\n".data(using: .utf8)!)
            world.abort(1)
        }
    }

    private func train(_ world: Communicator) throws {
        let loaded = try LoadedRecipe.load(URL(fileURLWithPath: recipe), overrides: overrides)
        let from: Resume = switch resume {
        case nil: .no
        case "latest": .latest
        case let path?: .from(URL(fileURLWithPath: path))
        }
        let say: (String) -> Void = { if world.isLeader { print($0) } }
        let trainer = try Trainer(recipe: loaded, resume: from, world: world, log: say)
        let r = loaded.recipe
        say("\(loaded.url.path): \(r.description ?? "")")
        say("model \(r.model): training \(trainer.model.trainable.map(\.rawValue).sorted().joined(separator: ", ")); \(r.steps) steps of \(r.data.batchSize) x \(r.data.sequenceLength) tokens"
            + (world.size > 1 ? " over \(world.size) ranks x \(Tensors.Parallel.threads) threads" : "") + "; run directory \(trainer.runDirectory.path)")
        if Matmul.precision == .bf16, !Matmul.hasBF16Hardware {
            say("warning: \(loaded.url.path): precision bf16 on a CPU without AVX512-BF16 or AMX rounds the operands and runs OpenBLAS's fp32 products, slower than precision fp32")
        }
        let summary = try trainer.run()
        let last = summary.losses.last.map { String(format: "%.4f", $0) } ?? "-"
        let eval = summary.evalLosses.map { "step \($0.step) \(String(format: "%.4f", $0.loss))" }.joined(separator: ", ")
        say("done in \(String(format: "%.1f", summary.seconds)) s: final training loss \(last)\(eval.isEmpty ? "" : "; held-out loss: \(eval)")")
    }
}

struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stage A: pretrain the Perceive Sampler and the decoder (ViT frozen) as the recipe says.",
        discussion: "Writes checkpoints and metrics.jsonl to the recipe's checkpoint.dir. Example: xtrain pretrain recipes/stageA.json"
    )

    @OptionGroup var options: TrainOptions

    func run() throws { try options.train() }
}

struct Lora: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stage B: multi-task LoRA on the decoder (frozen) with the Perceive Sampler trained, as the recipe says.",
        discussion: "The recipe's init names the stage-A checkpoint; checkpoints store the adapters and the sampler and name that base by hash. Example: xtrain lora recipes/multitask.json"
    )

    @OptionGroup var options: TrainOptions

    func run() throws { try options.train() }
}

struct Instruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Instruction tuning in the conversation template, continuing from the multi-task checkpoint.",
        discussion: "The loss covers the Bot turns and their <eob> only. Example: xtrain instruct recipes/instruct.json"
    )

    @OptionGroup var options: TrainOptions

    func run() throws { try options.train() }
}

import ArgumentParser

struct XTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xtrain",
        abstract: "Train and fine-tune InternLM-XComposer-style vision-language models on the CPU.",
        subcommands: [Pretrain.self, Lora.self, Instruct.self, Eval.self, Generate.self, PlotCommand.self, Export.self, Import.self, Model.self, DataCommand.self, Bench.self]
    )
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure xtrain's speed: training steps (xtrain bench RECIPE), kernels against BLAS, the data path, generation.",
        subcommands: [BenchStep.self, BenchKernels.self, BenchData.self, BenchTokenizer.self, BenchGenerate.self],
        defaultSubcommand: BenchStep.self
    )
}

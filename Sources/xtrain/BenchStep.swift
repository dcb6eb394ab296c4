import ArgumentParser
import CBLAS
import Foundation
import Models
import Tensors
import Training

/// `xtrain bench RECIPE`: steady-state training-step time on fixed synthetic batches of the recipe's
/// shape, with tokens/s, samples/s, peak RSS and MFU against sgemm's peak measured in the same run.
struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Time the training step of a recipe (its model, frozen parts, optimizer) on synthetic batches; report MFU.",
        discussion: "Each micro-batch is batch_size / gradient_accumulation sequences of sequence_length tokens, one image per sequence (its placeholders right after <s>) and random text, all of it labelled. Tools/reference/torch_bench.py builds the same step in PyTorch; Tools/bench_vs_torch.sh runs both."
    )

    @Argument(help: "A recipe, e.g. recipes/stageA.json.")
    var recipe: String

    @Option(help: "Untimed warm-up steps.")
    var warmup = 3

    @Option(help: "Timed steps.")
    var steps = 10

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a recipe field, e.g. --set precision=bf16 (repeatable).", valueName: "key.path=value"))
    var overrides: [String] = []

    func run() throws {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("xtrain-bench-step-\(getpid())")
        defer { try? FileManager.default.removeItem(at: run) }
        let loaded = try LoadedRecipe.load(URL(fileURLWithPath: recipe), overrides: overrides + ["checkpoint.dir=\(run.path)"])
        let trainer = try Trainer(recipe: loaded, resume: .no, log: { _ in })
        let r = loaded.recipe, model = trainer.model, config = model.config
        let (b, t) = (r.data.batchSize / r.gradientAccumulation, r.data.sequenceLength)
        let batches = (0 ..< r.gradientAccumulation).map { syntheticBatch(config, batch: b, length: t, seed: UInt64($0)) }
        let rates = r.peakLearningRates
        for _ in 0 ..< warmup { _ = try trainer.step(batches, rates: rates) }
        var times: [Double] = []
        for _ in 0 ..< steps {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try trainer.step(batches, rates: rates)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
        }
        let step = times.sorted()[times.count / 2]
        let flops = FlopCount(config: config, trainable: model.trainable, lora: model.lora, batch: b, length: t, images: b).total * Double(r.gradientAccumulation)
        // The bf16 peak first: after the threaded sgemm, OpenBLAS's workers spin on a core for a while.
        let bf16Peak = Matmul.precision == .bf16 ? bf16GemmPeak() : nil
        let peak = sgemmPeak()
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let sequences = Double(r.data.batchSize)
        let products = Matmul.precision == .fp32 ? "fp32 products" : "bf16 products on \(Matmul.bf16Kernel)"
        print("recipe \(recipe): \(model.trainable.map(\.rawValue).sorted().joined(separator: ", ")) trained; \(r.gradientAccumulation) x \(b) sequences of \(t) tokens, one image each; \(Parallel.threads) threads; \(products)")
        print(String(format: "step %.1f ms (median of %d) | %.0f tokens/s | %.1f samples/s | peak RSS %.0f MiB | %.2f GFLOP/step = %.1f GFLOP/s | sgemm peak %.1f GFLOP/s | MFU %.1f%%",
                     step * 1e3, steps, sequences * Double(t) / step, sequences / step, Double(usage.ru_maxrss) / 1024,
                     flops * 1e-9, flops / step * 1e-9, peak * 1e-9, 100 * flops / step / peak))
        if let bf16Peak {
            print(String(format: "bf16 GEMM peak %.1f GFLOP/s | MFU %.1f%% of it", bf16Peak * 1e-9, 100 * flops / step / bf16Peak))
        }
    }

    /// One micro-batch: <s>, one image's placeholders, then random byte tokens; every text token labelled.
    private func syntheticBatch(_ c: ModelConfig, batch b: Int, length t: Int, seed: UInt64) -> Batch {
        var rng = RNG(seed: seed)
        let noise = Tensor(zeros: [b * t])
        rng.fillUniform(noise, low: 0, high: 1)
        var tokens: [Int32] = []
        for row in 0 ..< b {
            tokens.append(1)
            tokens += [Int32](repeating: Int32(c.imageTokenIndex!), count: c.numQueryTokens)
            tokens += (c.numQueryTokens + 1 ..< t).map { 16 + Int32(noise[flat: row * t + $0] * 255) }
        }
        let labels = tokens.enumerated().map { i, token in token == Int32(c.imageTokenIndex!) || i % t == 0 ? ignoreIndex : token }
        let images = Tensor(zeros: [b, 3, c.visionConfig.imageSize, c.visionConfig.imageSize])
        rng.fillNormal(images, std: 1)
        return Batch(batchSize: b, sequenceLength: t, tokens: tokens, labels: labels, images: images)
    }

    /// The best of three 2048^3 bf16 products, their rows split over our threads, in FLOP/s.
    private func bf16GemmPeak() -> Double {
        gemmPeak { n, a, b, c in
            parallelGemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a, lda: n, b: b, ldb: n, beta: 0, c: c, ldc: n)
        }
    }

    /// The best of three 2048^3 sgemm calls threaded by OpenBLAS over all our threads, in FLOP/s.
    private func sgemmPeak() -> Double {
        openblas_set_num_threads(Int32(Parallel.threads))
        defer { openblas_set_num_threads(1) }
        return gemmPeak { n, a, b, c in
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), b, Int32(n), 0, c, Int32(n))
        }
    }

    /// The best of three runs of `product` (C = A B, all n x n with n = 2048, A and B normal), in FLOP/s.
    private func gemmPeak(_ product: (Int, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> Double {
        let n = 2048
        let a = Tensor(zeros: [n, n]), bm = Tensor(zeros: [n, n]), c = Tensor(zeros: [n, n])
        var rng = RNG(seed: 9)
        rng.fillNormal(a, std: 1)
        rng.fillNormal(bm, std: 1)
        var best = Double.infinity
        for _ in 0 ..< 3 {
            let start = DispatchTime.now().uptimeNanoseconds
            product(n, a.data, bm.data, c.data)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
        }
        return 2 * Double(n * n * n) / best
    }
}

import ArgumentParser
import Datasets
import Foundation
import Models
import Tensors
import Training

/// `xtrain bench generate CHECKPOINT`: greedy generation with the key/value cache on a fixed prompt (one
/// synthetic shapes scene in the conversation template), exactly --tokens new tokens, prefill and decode
/// timed apart.
struct BenchGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Time greedy generation with the key/value cache: prefill ms, decode and total tokens/s, peak RSS.",
        discussion: """
        The prompt is <s>[image]<|User|>: Describe the image.<eou>\\n<|Bot|>: (without its last space, which the answer begins with) in the tokenizer the checkpoint records (else the byte tokenizer), the image a fixed \
        shapes scene. No token stops generation, so exactly --tokens tokens are generated. Prefill is the time to the \
        first new token (image, sampler, the prompt through the decoder); decode tokens/s counts the other tokens over \
        the rest of the time. --dump writes the prompt, the image and the generated ids for \
        Tools/reference/torch_generate_bench.py; Tools/bench_generate.sh runs both.
        """
    )

    @Argument(help: "A checkpoint.")
    var checkpoint: String

    @Option(help: "New tokens per generation.")
    var tokens = 128

    @Option(help: "Untimed warm-up generations.")
    var warmup = 1

    @Option(help: "Timed generations.")
    var repeats = 5

    @Option(help: "Write input_ids, pixel_values and the generated ids (tokens) to this safetensors file.")
    var dump: String?

    func run() throws {
        guard tokens >= 2, warmup >= 0, repeats >= 1 else { throw ValidationError("need --tokens >= 2, --warmup >= 0 and --repeats >= 1") }
        let (header, model) = try Checkpoint.model(URL(fileURLWithPath: checkpoint))
        let c = model.config, side = c.visionConfig.imageSize, maxLength = c.textConfig.maxPositionEmbeddings
        let scene = ShapesScene(RandomStream(seed: 1, stream: 0), 0).render(side: side)
        let prompt = conversationPrompt("Describe the image.", images: [scene], tokenizer: header.tokenizer ?? .byte, queries: c.numQueryTokens)
        guard prompt.count + tokens <= maxLength else {
            throw ValidationError("the prompt's \(prompt.count) tokens + --tokens \(tokens) exceed max_position_embeddings \(maxLength)")
        }
        let images = Loader.normalize([scene], side: side)
        let generator = Generator(model: model)
        var prefills: [Double] = [], decodes: [Double] = [], totals: [Double] = []
        var generated: [Int32] = []
        for run in 0 ..< warmup + repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            var first: UInt64 = 0
            generated = try generator.generate(prompt: prompt, images: images, maxTokens: tokens, stop: []) { _ in
                if first == 0 { first = DispatchTime.now().uptimeNanoseconds }
            }
            let end = DispatchTime.now().uptimeNanoseconds
            guard run >= warmup else { continue }
            prefills.append(Double(first - start) * 1e-9)
            decodes.append(Double(tokens - 1) / (Double(end - first) * 1e-9))
            totals.append(Double(tokens) / (Double(end - start) * 1e-9))
        }
        if let dump {
            try SafetensorsFile.write([("input_ids", Tensor(shape: [1, prompt.count], values: prompt.map(Float.init))), ("pixel_values", images),
                                       ("tokens", Tensor(shape: [1, tokens], values: generated.map(Float.init)))],
                                      to: URL(fileURLWithPath: dump))
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let median = { (values: [Double]) in values.sorted()[values.count / 2] }
        print(String(format: "xtrain, %d threads: prompt %d + %d new tokens, median of %d | prefill %.1f ms | decode %.1f tokens/s | total %.1f tokens/s | peak RSS %.0f MiB | first ids %@",
                     Parallel.threads, prompt.count, tokens, repeats, 1e3 * median(prefills), median(decodes), median(totals), Double(usage.ru_maxrss) / 1024,
                     generated.prefix(8).map(String.init).joined(separator: " ")))
    }
}

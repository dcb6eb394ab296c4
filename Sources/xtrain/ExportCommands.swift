import ArgumentParser
import Foundation
import Models
import Datasets
import Tensors
import Training

/// `xtrain export`: a checkpoint (its base chain restored and verified) as merged Hugging Face weights,
/// merged HDF5, or a base model plus a PEFT adapter.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a checkpoint's weights for Hugging Face transformers and PEFT, or as HDF5.",
        discussion: """
        Default: DIR/config.json + DIR/model.safetensors with every LoRA adapter merged (W + alpha/r B A); \
        Blip2ForConditionalGeneration.from_pretrained(DIR) loads it. --format hdf5 writes DIR/model.h5 instead \
        (usable as a recipe's init checkpoint). --adapter writes the unmerged base to DIR and the PEFT adapter to \
        DIR/adapter (PeftModel.from_pretrained(base, DIR/adapter)).
        """
    )

    @Argument(help: "A checkpoint (step-NNNNNNN.h5).")
    var checkpoint: String

    @Option(help: "Output directory.")
    var out: String

    @Option(help: "huggingface or hdf5.")
    var format = "huggingface"

    @Flag(help: "Write the base model and a PEFT adapter instead of merged weights.")
    var adapter = false

    func run() throws {
        guard ["huggingface", "hdf5"].contains(format) else { throw ValidationError("--format must be huggingface or hdf5, got '\(format)'") }
        let (header, model) = try Checkpoint.model(URL(fileURLWithPath: checkpoint))
        let directory = URL(fileURLWithPath: out)
        if adapter {
            guard header.lora != nil else { throw ValidationError("\(checkpoint): the checkpoint has no LoRA adapters; export it without --adapter") }
            try model.save(directory: directory)
            try model.saveAdapter(directory: directory.appendingPathComponent("adapter"))
            print("wrote the base model to \(out) and the PEFT adapter to \(out)/adapter")
        } else if format == "hdf5" {
            let url = try Checkpoint.save(directory: directory, model: model.merged(), optimizer: nil, state: header.state, recipe: header.recipe,
                                          tokenizer: header.tokenizer, keep: Int.max, name: "model.h5")
            print("wrote \(url.path)")
        } else {
            try model.merged().save(directory: directory)
            print("wrote \(out) (config.json, model.safetensors\(header.lora == nil ? "" : "; LoRA merged"))")
        }
        if format == "huggingface" {
            try writeCheck(model, to: directory.appendingPathComponent("xtrain_check.safetensors"))
            if let tokenizer = header.tokenizer, tokenizer.kind != "byte" {
                try tokenizer.file.write(to: directory.appendingPathComponent(tokenizer.fileName), options: .atomic)
                print("wrote the tokenizer the checkpoint was trained with to \(out)/\(tokenizer.fileName)")
            }
        }
    }

    /// A sample input (one image and a short text) and xtrain's logits for it, so that anyone can check the
    /// export in transformers (Tools/reference/check_export.py).
    private func writeCheck(_ model: XComposer, to url: URL) throws {
        let c = model.config, side = c.visionConfig.imageSize
        let image = Tensor(zeros: [1, 3, side, side])
        for i in 0 ..< image.count { image[flat: i] = Float((i * 37) % 101) / 50 - 1 }
        let text: [Int32] = [1] + [Int32](repeating: Int32(c.imageTokenIndex!), count: c.numQueryTokens) + [20, 97, 32, 114, 101, 100, 2].map { Int32($0) + 16 }
        let batch = Batch(batchSize: 1, sequenceLength: text.count, tokens: text, labels: text, images: image)
        let logits = try model.forward(batch, arena: Arena()).logits
        try SafetensorsFile.write([("input_ids", Tensor(shape: [1, text.count], values: text.map(Float.init))), ("pixel_values", image), ("logits", logits)],
                                  to: url)
    }
}

/// `xtrain import`: a Hugging Face directory as an xtrain weights file (HDF5) for a recipe's init.
struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import a Hugging Face model directory (config.json + safetensors) as an xtrain HDF5 weights file.",
        discussion: "A recipe can also start from the directory itself: \"init\": {\"from\": \"huggingface\", \"path\": DIR}."
    )

    @Argument(help: "A Hugging Face directory.")
    var directory: String

    @Option(help: "The HDF5 file to write.")
    var out: String

    func run() throws {
        let model = try XComposer.load(directory: URL(fileURLWithPath: directory), trainable: [])
        let url = URL(fileURLWithPath: out)
        let state = TrainingState(step: 0, rng: RNG(seed: 0).state, loader: LoaderState(seed: 0, sources: 0))
        try Checkpoint.save(directory: url.deletingLastPathComponent(), model: model, optimizer: nil, state: state, recipe: "{}",
                            tokenizer: nil, keep: Int.max, name: url.lastPathComponent)
        print("wrote \(out)")
    }
}

import Foundation
import XCTest

/// Runs the built `xtrain` binary (it sits next to the test bundle in .build/<configuration>/).
enum CLI {
    static let binary: URL = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("xtrain").path), dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("xtrain")
    }()

    struct Result {
        let status: Int32
        let output: String
        let error: String
    }

    /// Runs `xtrain arguments...` with extra environment variables; waits for it.
    @discardableResult
    static func run(_ arguments: [String], environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile(), errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, output: String(decoding: outData, as: UTF8.self), error: String(decoding: errData, as: UTF8.self))
    }
}

extension CLI {
    /// Runs `mpirun -np ranks xtrain arguments...` on this machine (as root too), stopping it after
    /// `timeout` seconds: a job that hangs fails the test instead of the suite.
    static func mpirun(ranks: Int, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 300) throws -> (result: Result, timedOut: Bool) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["mpirun", "--oversubscribe", "-np", "\(ranks)", binary.path] + arguments
        process.environment = ProcessInfo.processInfo.environment
            .merging(["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "XTRAIN_THREADS": "1"]) { $1 }
            .merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        var timedOut = false
        let watchdog = DispatchWorkItem { timedOut = true; process.terminate() }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        let outData = out.fileHandleForReading.readDataToEndOfFile(), errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        watchdog.cancel()
        return (Result(status: process.terminationStatus, output: String(decoding: outData, as: UTF8.self), error: String(decoding: errData, as: UTF8.self)), timedOut)
    }
}

/// A micro model and dataset, small enough for debug builds: 28-pixel images (5 vision tokens), 4 queries.
enum Micro {
    static let config = """
    {
      "model_type": "blip-2", "num_query_tokens": 4, "image_token_index": 3,
      "vision_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                        "image_size": 28, "patch_size": 14},
      "qformer_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "encoder_hidden_size": 16, "cross_attention_frequency": 2},
      "text_config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 128,
                      "attention_bias": true}
    }
    """

    /// A recipe over `root`/data with `steps` steps, checkpoints every `every` steps into `root`/run.
    static func recipe(steps: Int, every: Int) -> String {
        """
        {
          "model": "model.json",
          "init": {"from": "random"},
          "data": {"train": [{"path": "data/captions/train", "weight": 2}, {"path": "data/text/train"}],
                   "eval": [{"path": "data/captions/eval"}], "sequence_length": 48, "batch_size": 4, "gradient_accumulation": 2},
          "steps": \(steps), "freeze": ["vision"],
          "optimizer": {"lr": {"sampler": 2e-3, "decoder": 1e-3}, "weight_decay": 0.05, "grad_clip": 1.0},
          "schedule": {"warmup_steps": 2, "min_lr": 1e-5},
          "checkpoint": {"dir": "run", "every": \(every), "keep": 5},
          "eval": {"every": \(every), "batches": 2},
          "log_every": 1, "seed": 3
        }
        """
    }

    /// A LoRA recipe over `root`/data starting from `base` (a checkpoint path relative to `root`).
    static func loraRecipe(base: String, rank: Int = 4, steps: Int = 6) -> String {
        """
        {
          "model": "model.json",
          "init": {"from": "checkpoint", "path": "\(base)"},
          "lora": {"rank": \(rank), "alpha": 8, "dropout": 0.1},
          "data": {"train": [{"path": "data/vqa/train"}, {"path": "data/selection/train"}], "sequence_length": 48, "batch_size": 4},
          "steps": \(steps), "freeze": ["vision", "decoder"],
          "optimizer": {"lr": {"lora": 1e-3, "sampler": 1e-3}},
          "schedule": {"warmup_steps": 1, "min_lr": 1e-5},
          "checkpoint": {"dir": "lora", "every": 3, "keep": 5},
          "log_every": 1, "seed": 4
        }
        """
    }

    /// A fresh folder with the micro model, data and a recipe.
    static func workspace(steps: Int = 6, every: Int = 3) throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("xtrain-e2e-\(UUID())")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try config.write(to: root.appendingPathComponent("model.json"), atomically: true, encoding: .utf8)
        try recipe(steps: steps, every: every).write(to: root.appendingPathComponent("recipe.json"), atomically: true, encoding: .utf8)
        let synth = try CLI.run(["data", "synth", "shapes", "--out", root.appendingPathComponent("data").path,
                                 "--queries", "4", "--scale", "0.01", "--image-size", "28"])
        precondition(synth.status == 0, "synth failed: \(synth.error)")
        return root
    }
}

/// The lines of a run directory's metrics.jsonl, as JSON objects.
func metricsLines(_ run: URL) throws -> [[String: Any]] {
    try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
}

/// Each step's `key` in a run directory's metrics.jsonl, for the lines that have it.
func stepValues<Value>(_ run: URL, _ key: String) throws -> [Int: Value] {
    var out: [Int: Value] = [:]
    for object in try metricsLines(run) {
        if let value = object[key] as? Value { out[object["step"] as! Int] = value }
    }
    return out
}

/// The training loss of each step in a run directory's metrics.jsonl.
func trainingLosses(_ run: URL) throws -> [Int: Double] { try stepValues(run, "loss") }

/// Bit-for-bit equality of two weight arrays, reporting the first difference instead of the arrays.
func assertSameBits(_ a: [UInt32], _ b: [UInt32], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(what): sizes differ", file: file, line: line)
    if let i = a.indices.first(where: { i in i < b.count && a[i] != b[i] }) {
        XCTFail("\(what): \(zip(a, b).filter { $0 != $1 }.count) of \(a.count) values differ, first at \(i): \(Float(bitPattern: a[i])) vs \(Float(bitPattern: b[i]))", file: file, line: line)
    }
}

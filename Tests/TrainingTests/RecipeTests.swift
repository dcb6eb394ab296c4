import Foundation
import Training
import XCTest

final class RecipeTests: XCTestCase {
    var scratch: URL!
    let recipes = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Recipes")

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("xtrain-recipe-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: scratch) }

    func testBundledRecipesValidate() throws {
        let a = try LoadedRecipe.load(recipes.appendingPathComponent("stageA.json"))
        XCTAssertEqual(a.recipe.frozenParts, [.vision])
        XCTAssertEqual(a.recipe.peakLearningRates, [.sampler: 2e-4, .decoder: 1e-3])
        XCTAssertEqual(a.recipe.betas.0, 0.9)
        XCTAssertEqual(a.recipe.betas.1, 0.95)
        XCTAssertEqual(a.recipe.eps, 1e-8)
        XCTAssertEqual(a.recipe.schedule.warmupSteps, 200)
        XCTAssertEqual(a.recipe.schedule.minLr, 1e-5)
        XCTAssertEqual(a.recipe.matmulPrecision, .bf16)
        XCTAssertEqual(a.resolve(a.recipe.checkpoint.dir).lastPathComponent, "stageA")
        for name in ["multitask.json", "instruct.json", "bench/stageA-all-trained.json", "bench/stageA-small.json"] {
            XCTAssertNoThrow(try LoadedRecipe.load(recipes.appendingPathComponent(name)), name)
        }
    }

    /// stageA.json with `edit` applied, written to the scratch folder.
    private func edited(_ edit: (inout [String: Any]) -> Void) throws -> URL {
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: recipes.appendingPathComponent("stageA.json"))) as! [String: Any]
        edit(&json)
        let url = scratch.appendingPathComponent("recipe.json")
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        return url
    }

    private func assertRejected(_ expected: String, overrides: [String] = [], _ edit: (inout [String: Any]) -> Void = { _ in }, line: UInt = #line) throws {
        let url = try edited(edit)
        XCTAssertThrowsError(try LoadedRecipe.load(url, overrides: overrides), line: line) { error in
            XCTAssert("\(error)".contains(expected), "'\(error)' should contain '\(expected)'", line: line)
        }
    }

    func testTyposAndBadValuesNameTheJSONPath() throws {
        try assertRejected("optimizer.wieght_decay: unknown field (allowed: betas, eps, grad_clip, lr, weight_decay)") { json in
            var o = json["optimizer"] as! [String: Any]
            o["wieght_decay"] = 0.1
            json["optimizer"] = o
        }
        try assertRejected("data.train[1].wieght: unknown field") { json in
            var d = json["data"] as! [String: Any]
            var train = d["train"] as! [[String: Any]]
            train[1]["wieght"] = 2
            d["train"] = train
            json["data"] = d
        }
        try assertRejected("steps: expected Int") { $0["steps"] = "many" }
        try assertRejected("precision: 'fp16' is not one of fp32, bf16") { $0["precision"] = "fp16" }
        try assertRejected("loss_average: 'mean' is not one of token, sample, square") { $0["loss_average"] = "mean" }
        try assertRejected("data.length_window: must be at least 1 micro-batch, got 0") { json in
            var d = json["data"] as! [String: Any]
            d["length_window"] = 0
            json["data"] = d
        }
        try assertRejected("data.batch_size: missing (required)") { json in
            var d = json["data"] as! [String: Any]
            d["batch_size"] = nil
            json["data"] = d
        }
        try assertRejected("optimizer.lr.decoder: missing; the part is trained") { json in
            var o = json["optimizer"] as! [String: Any]
            o["lr"] = ["sampler": 2e-4]
            json["optimizer"] = o
        }
        try assertRejected("optimizer.lr.vision: the part is frozen", overrides: ["optimizer.lr.vision=1e-4"])
        try assertRejected("freeze[0]: 'vit' is not one of vision, sampler, decoder", overrides: ["freeze=[\"vit\"]"])
        try assertRejected("data.gradient_accumulation: 3 must be positive and divide data.batch_size 8", overrides: ["data.gradient_accumulation=3"])
        try assertRejected("schedule.min_lr: 0.002 exceeds optimizer.lr", overrides: ["schedule.min_lr=2e-3"])
        try assertRejected("schedule.decay: 'linear' is not one of cosine, constant", overrides: ["schedule.decay=linear"])
        try assertRejected("optimizer.betas: expected two numbers in [0, 1)", overrides: ["optimizer.betas=[0.9]"])
        try assertRejected("--set 'steps': expected key.path=value", overrides: ["steps"])
        try assertRejected("chekpoint: unknown field", overrides: ["chekpoint.every=5"])
        try assertRejected("init.vision_positions: 'rope' is not one of learned, sincos", overrides: ["init.vision_positions=rope"])
        try assertRejected("init.query_grid: must be positive, got -1.0", overrides: ["init.query_grid=-1"])
        try assertRejected("init.query_grid: needs init.vision_positions 'sincos'", overrides: ["init.vision_positions=learned", "init.query_grid=2"])
        try assertRejected("init.query_order: 'columns' is not one of rows, z", overrides: ["init.query_order=columns"])
        try assertRejected("data.schedule[0].weights: one per data.train source (3), got 2",
                           overrides: [#"data.schedule=[{"until_step": 100, "weights": [1, 0]}]"#])
        try assertRejected("data.schedule[1].until_step: must be after 100 and at most steps (1800), got 50",
                           overrides: [#"data.schedule=[{"until_step": 100, "weights": [0, 1, 0]}, {"until_step": 50, "weights": [1, 1, 1]}]"#])
        try assertRejected("data.schedule[0].weights: must not be negative, nor all zero, got [0.0, 0.0, 0.0]",
                           overrides: [#"data.schedule=[{"until_step": 100, "weights": [0, 0, 0]}]"#])
        try assertRejected("data.schedule[0].until: unknown field", overrides: [#"data.schedule=[{"until": 100, "weights": [0, 1, 0]}]"#])
    }

    func testOverridesApply() throws {
        let url = try edited { _ in }
        let r = try LoadedRecipe.load(url, overrides: ["steps=50", "optimizer.lr.sampler=1e-4", "data.train.0.weight=5", "description=smoke test"]).recipe
        XCTAssertEqual(r.steps, 50)
        XCTAssertEqual(r.optimizer.lr["sampler"], 1e-4)
        XCTAssertEqual(r.data.train[0].weight, 5)
        XCTAssertEqual(r.description, "smoke test")
    }
}

import Foundation
import Models
import Tensors
import Training
import XCTest

final class OptimizerTests: XCTestCase {
    func testScheduleByHand() {
        let s = Schedule(warmup: 2, total: 8, minimum: 1e-5)
        XCTAssertEqual(s.rate(step: 0, peak: 1e-2), 5e-3, accuracy: 1e-15)
        XCTAssertEqual(s.rate(step: 1, peak: 1e-2), 1e-2, accuracy: 1e-15)
        XCTAssertEqual(s.rate(step: 2, peak: 1e-2), 1e-2, accuracy: 1e-15, "cosine starts at the peak")
        XCTAssertEqual(s.rate(step: 4, peak: 1e-2), 1e-5 + (1e-2 - 1e-5) * 0.5 * (1 + cos(0.4 * Double.pi)), accuracy: 1e-15)
        XCTAssertEqual(s.rate(step: 7, peak: 1e-2), 1e-5, accuracy: 1e-15, "the last step is at the minimum")
        XCTAssertEqual(Schedule(warmup: 0, total: 8, minimum: 0, cosine: false).rate(step: 5, peak: 3e-4), 3e-4)
        // The paper's stage A: 200 warmup steps to the group's peak, then down to 1e-5.
        let a = Schedule(warmup: 200, total: 8000, minimum: 1e-5)
        XCTAssertEqual(a.rate(step: 99, peak: 2e-4), 1e-4, accuracy: 1e-15)
        XCTAssertEqual(a.rate(step: 199, peak: 4e-5), 4e-5, accuracy: 1e-15)
    }

    /// Parameters "w.weight" [5, 3] (decays) and "b.bias" [4] (does not), trained as the decoder part.
    private func parameters() -> Parameters {
        let measure = ParameterBuilder(trainable: [.decoder])
        measure.part = .decoder
        _ = measure.param("w.weight", [5, 3])
        _ = measure.param("b.bias", [4])
        let bind = measure.bind()
        bind.part = .decoder
        _ = bind.param("w.weight", [5, 3])
        _ = bind.param("b.bias", [4])
        return bind.allocated!
    }

    func testAdamWByHand() {
        let p = parameters()
        p.value("w.weight")!.fill(2)
        p.grad("w.weight")!.fill(-0.5)
        p.value("b.bias")!.fill(1)
        p.grad("b.bias")!.fill(0.25)
        let adam = AdamW(parameters: p, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1)
        adam.update(p, rates: [.decoder: 0.01])
        // Step 1: m_hat = g, v_hat = g^2, so the step is lr * sign(g); the matrix also decays by lr * wd.
        XCTAssertEqual(Double(p.value("w.weight")![flat: 0]), 2 * (1 - 0.01 * 0.1) + 0.01, accuracy: 1e-6)
        XCTAssertEqual(Double(p.value("b.bias")![flat: 0]), 1 - 0.01, accuracy: 1e-6)
        XCTAssertEqual(Double(adam.m.base[0]), 0.1 * -0.5, accuracy: 1e-7)
        XCTAssertEqual(Double(adam.v.base[0]), 0.05 * 0.25, accuracy: 1e-7)
    }

    func testAdamWMatchesTorch() throws {
        let fixture = try SafetensorsFile(URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/adamw.safetensors"))
        let p = parameters()
        try fixture.read("p0.weight", into: p.value("w.weight")!)
        try fixture.read("p0.bias", into: p.value("b.bias")!)
        let rates = try fixture.tensor("lr")
        let adam = AdamW(parameters: p, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1)
        let schedule = Schedule(warmup: 2, total: 8, minimum: 1e-5)
        for step in 0 ..< 8 {
            XCTAssertEqual(Float(schedule.rate(step: step, peak: 1e-2)), rates[flat: step], accuracy: 1e-9)
            try fixture.read("grad.\(step).weight", into: p.grad("w.weight")!)
            try fixture.read("grad.\(step).bias", into: p.grad("b.bias")!)
            let norm = gradientNorm(p)
            adam.update(p, rates: [.decoder: schedule.rate(step: step, peak: 1e-2)], gradientScale: norm > 1 ? Float(1 / (norm + 1e-6)) : 1)
            for name in ["weight", "bias"] {
                let ours = p.value(name == "weight" ? "w.weight" : "b.bias")!, torch = try fixture.tensor("p.\(step).\(name)")
                for i in 0 ..< ours.count {
                    XCTAssertEqual(ours[flat: i], torch[flat: i], accuracy: 2e-6 * max(1, abs(torch[flat: i])), "step \(step) \(name)[\(i)]")
                }
            }
        }
    }
}

import Tensors
import XCTest

/// One differentiable input of a kernel: its value and the gradient that backward accumulates into.
struct Differentiable {
    let name: String
    let value: Tensor
    let grad: Tensor

    init(_ name: String, _ value: Tensor) {
        self.name = name
        self.value = value
        grad = Tensor(zeros: value.shape)
    }
}

/// Checks a forward/backward pair by central differences.
///
/// The scalar under test is L = sum(output * R) for a fixed random R, accumulated in Double. Backward is
/// run with dout = R; then every element of every input is moved by +-eps and the numeric derivative
/// (L+ - L-) / 2 eps is compared with the analytic gradient. Float32 outputs carry ~6e-8 relative
/// rounding, so with eps = 1e-2 the numeric derivative is good to ~1e-4 of the gradient's scale; the
/// check requires max |numeric - analytic| <= tolerance * max |analytic| (max-norm relative, 2e-3 by default).
///
/// It also runs forward and backward a second time and requires bit-identical outputs and gradients.
func checkGradients(
    _ inputs: [Differentiable], output: Tensor, dout: Tensor,
    eps: Float = 1e-2, tolerance: Double = 2e-3, seed: UInt64 = 99,
    forward: () -> Void, backward: () -> Void,
    file: StaticString = #filePath, line: UInt = #line
) {
    var rng = RNG(seed: seed)
    rng.fillUniform(dout, low: -1, high: 1)
    func loss() -> Double {
        forward()
        var sum = 0.0
        for i in 0 ..< output.count { sum += Double(output.data[i]) * Double(dout.data[i]) }
        return sum
    }
    func analytic() -> (output: [Float], grads: [[Float]]) {
        forward()
        for input in inputs { input.grad.zero() }
        backward()
        return (output.array, inputs.map { $0.grad.array })
    }
    let first = analytic()
    let second = analytic()
    XCTAssertEqual(first.output.map(\.bitPattern), second.output.map(\.bitPattern), "output is not bit-identical across runs", file: file, line: line)
    for (input, (a, b)) in zip(inputs, zip(first.grads, second.grads)) {
        XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "gradient of \(input.name) is not bit-identical across runs", file: file, line: line)
    }
    for (input, grad) in zip(inputs, first.grads) {
        var worst = 0.0, worstIndex = 0, scale = 0.0
        for i in 0 ..< input.value.count {
            let saved = input.value.data[i]
            input.value.data[i] = saved + eps
            let plus = loss()
            input.value.data[i] = saved - eps
            let minus = loss()
            input.value.data[i] = saved
            let numeric = (plus - minus) / (2 * Double(eps))
            let error = abs(numeric - Double(grad[i]))
            if error > worst { (worst, worstIndex) = (error, i) }
            scale = max(scale, abs(Double(grad[i])))
        }
        XCTAssertGreaterThan(scale, 0, "gradient of \(input.name) is identically zero", file: file, line: line)
        XCTAssertLessThanOrEqual(worst, tolerance * scale,
                                 "gradient of \(input.name): worst |numeric - analytic| = \(worst) at element \(worstIndex), gradient max-norm \(scale)",
                                 file: file, line: line)
    }
    forward()
}

/// A tensor of the given shape filled with uniform values in [low, high).
func randomTensor(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) -> Tensor {
    let t = Tensor(zeros: shape)
    var rng = RNG(seed: seed)
    rng.fillUniform(t, low: low, high: high)
    return t
}

import Tensors
import XCTest

/// Finite-difference checks of every kernel's backward, for every input and parameter it has.
final class KernelGradientTests: XCTestCase {
    func testLinearWithBias() {
        let x = Differentiable("inp", randomTensor([2, 3, 5], seed: 1))
        let w = Differentiable("weight", randomTensor([4, 5], seed: 2))
        let b = Differentiable("bias", randomTensor([4], seed: 3))
        let out = Tensor(zeros: [2, 3, 4]), dout = Tensor(zeros: [2, 3, 4])
        checkGradients([x, w, b], output: out, dout: dout,
                       forward: { linearForward(out: out, inp: x.value, weight: w.value, bias: b.value) },
                       backward: { linearBackward(dinp: x.grad, dweight: w.grad, dbias: b.grad, dout: dout, inp: x.value, weight: w.value) })
    }

    func testLinearWithoutBias() {
        let x = Differentiable("inp", randomTensor([6, 3], seed: 4))
        let w = Differentiable("weight", randomTensor([7, 3], seed: 5))
        let out = Tensor(zeros: [6, 7]), dout = Tensor(zeros: [6, 7])
        checkGradients([x, w], output: out, dout: dout,
                       forward: { linearForward(out: out, inp: x.value, weight: w.value, bias: nil) },
                       backward: { linearBackward(dinp: x.grad, dweight: w.grad, dbias: nil, dout: dout, inp: x.value, weight: w.value) })
    }

    func testLoRA() {
        let h = Differentiable("h", randomTensor([5, 6], seed: 40))
        let a = Differentiable("A", randomTensor([3, 6], seed: 41))
        let b = Differentiable("B", randomTensor([4, 3], seed: 42))
        let base = randomTensor([5, 4], seed: 43)
        let out = Tensor(zeros: [5, 4]), dout = Tensor(zeros: [5, 4]), u = Tensor(zeros: [5, 3]), du = Tensor(zeros: [5, 3])
        checkGradients([h, a, b], output: out, dout: dout,
                       forward: { out.copy(from: base); loraForward(out: out, u: u, h: h.value, a: a.value, b: b.value, scale: 0.5) },
                       backward: { loraBackward(dh: h.grad, da: a.grad, db: b.grad, du: du, dout: dout, u: u, h: h.value, a: a.value, b: b.value, scale: 0.5) })
    }

    func testEmbedding() {
        let table = Differentiable("table", randomTensor([5, 3], seed: 6))
        let ids: [Int32] = [4, 0, 4, 2, 4, 1]  // repeated ids must accumulate
        let out = Tensor(zeros: [6, 3]), dout = Tensor(zeros: [6, 3])
        checkGradients([table], output: out, dout: dout,
                       forward: { embeddingForward(out: out, ids: ids, table: table.value) },
                       backward: { embeddingBackward(dtable: table.grad, dout: dout, ids: ids) })
        XCTAssertEqual(table.grad.row(3).array, [0, 0, 0], "an unused id gets no gradient")
    }

    func testLayerNorm() {
        let x = Differentiable("inp", randomTensor([4, 7], seed: 7))
        let w = Differentiable("weight", randomTensor([7], seed: 8, low: 0.5, high: 1.5))
        let b = Differentiable("bias", randomTensor([7], seed: 9))
        let out = Tensor(zeros: [4, 7]), dout = Tensor(zeros: [4, 7])
        let mean = Tensor(zeros: [4]), rstd = Tensor(zeros: [4])
        checkGradients([x, w, b], output: out, dout: dout,
                       forward: { layerNormForward(out: out, mean: mean, rstd: rstd, inp: x.value, weight: w.value, bias: b.value, eps: 1e-6) },
                       backward: { layerNormBackward(dinp: x.grad, dweight: w.grad, dbias: b.grad, dout: dout, inp: x.value, weight: w.value, mean: mean, rstd: rstd) })
    }

    func testRMSNorm() {
        let x = Differentiable("inp", randomTensor([3, 2, 6], seed: 10))
        let w = Differentiable("weight", randomTensor([6], seed: 11, low: 0.5, high: 1.5))
        let out = Tensor(zeros: [3, 2, 6]), dout = Tensor(zeros: [3, 2, 6]), rstd = Tensor(zeros: [6])
        checkGradients([x, w], output: out, dout: dout,
                       forward: { rmsNormForward(out: out, rstd: rstd, inp: x.value, weight: w.value, eps: 1e-6) },
                       backward: { rmsNormBackward(dinp: x.grad, dweight: w.grad, dout: dout, inp: x.value, weight: w.value, rstd: rstd) })
    }

    func testGELU() {
        let x = Differentiable("inp", randomTensor([5, 8], seed: 12, low: -4, high: 4))
        let out = Tensor(zeros: [5, 8]), dout = Tensor(zeros: [5, 8])
        checkGradients([x], output: out, dout: dout,
                       forward: { geluForward(out: out, inp: x.value) },
                       backward: { geluBackward(dinp: x.grad, dout: dout, inp: x.value) })
    }

    func testSiLU() {
        let x = Differentiable("inp", randomTensor([5, 8], seed: 13, low: -6, high: 6))
        let out = Tensor(zeros: [5, 8]), dout = Tensor(zeros: [5, 8])
        checkGradients([x], output: out, dout: dout,
                       forward: { siluForward(out: out, inp: x.value) },
                       backward: { siluBackward(dinp: x.grad, dout: dout, inp: x.value) })
    }

    func testSwiGLU() {
        let gate = Differentiable("gate", randomTensor([4, 9], seed: 14, low: -5, high: 5))
        let up = Differentiable("up", randomTensor([4, 9], seed: 15, low: -2, high: 2))
        let out = Tensor(zeros: [4, 9]), dout = Tensor(zeros: [4, 9])
        checkGradients([gate, up], output: out, dout: dout,
                       forward: { swigluForward(out: out, gate: gate.value, up: up.value) },
                       backward: { swigluBackward(dgate: gate.grad, dup: up.grad, dout: dout, gate: gate.value, up: up.value) })
    }

    func testSoftmax() {
        let x = Differentiable("inp", randomTensor([3, 19], seed: 16, low: -3, high: 3))
        let out = Tensor(zeros: [3, 19]), dout = Tensor(zeros: [3, 19])
        checkGradients([x], output: out, dout: dout,
                       forward: { softmaxForward(out: out, inp: x.value) },
                       backward: { softmaxBackward(dinp: x.grad, dout: dout, out: out) })
    }

    func testCrossEntropyWithIgnoredTargets() {
        let logits = Differentiable("logits", randomTensor([5, 21], seed: 17, low: -4, high: 4))
        let targets: [Int32] = [3, ignoreIndex, 20, 0, ignoreIndex]
        let losses = Tensor(zeros: [5]), loss = Tensor(zeros: [1]), dloss = Tensor(zeros: [1])
        var weight = 0.0
        checkGradients([logits], output: loss, dout: dloss,
                       forward: {
                           let result = crossEntropyForward(losses: losses, logits: logits.value, targets: targets)
                           loss.data[0] = result.loss
                           weight = result.weight
                       },
                       backward: { crossEntropyBackward(dlogits: logits.grad, logits: logits.value, targets: targets, scale: dloss.data[0] / Float(weight)) })
        XCTAssertEqual(weight, 3)
        XCTAssertEqual(losses.data[1], 0)
        XCTAssertEqual(logits.grad.row(4).array, Array(repeating: 0, count: 21), "an ignored row gets no gradient")
    }

    func testWeightedCrossEntropy() {
        let logits = Differentiable("logits", randomTensor([5, 21], seed: 19, low: -4, high: 4))
        let targets: [Int32] = [3, ignoreIndex, 20, 0, 7]
        let weights: [Float] = [0.5, 9, 0.25, 0.25, 2]
        let losses = Tensor(zeros: [5]), loss = Tensor(zeros: [1]), dloss = Tensor(zeros: [1])
        var weight = 0.0
        checkGradients([logits], output: loss, dout: dloss,
                       forward: {
                           let result = crossEntropyForward(losses: losses, logits: logits.value, targets: targets, weights: weights)
                           loss.data[0] = result.loss
                           weight = result.weight
                       },
                       backward: {
                           crossEntropyBackward(dlogits: logits.grad, logits: logits.value, targets: targets, weights: weights, scale: dloss.data[0] / Float(weight))
                       })
        XCTAssertEqual(weight, 3, "the ignored row's weight does not count")
        let expected = (0.5 * losses.data[0] + 0.25 * losses.data[2] + 0.25 * losses.data[3] + 2 * losses.data[4]) / 3
        XCTAssertEqual(loss.data[0], expected, accuracy: 1e-5)
    }

    func testCrossEntropyMatchesLogSoftmax() {
        let logits = Tensor(shape: [2, 3], values: [1, 2, 3, 0, 0, 0])
        let losses = Tensor(zeros: [2])
        let result = crossEntropyForward(losses: losses, logits: logits, targets: [2, 1])
        let expected0 = log(exp(1.0) + exp(2.0) + exp(3.0)) - 3, expected1 = log(3.0)
        XCTAssertEqual(Double(losses.data[0]), expected0, accuracy: 1e-6)
        XCTAssertEqual(Double(losses.data[1]), expected1, accuracy: 1e-6)
        XCTAssertEqual(Double(result.loss), (expected0 + expected1) / 2, accuracy: 1e-6)
    }

    /// A sequence's mask is the same whatever batch it is in: split over ranks or padded longer.
    func testDropoutMaskFollowsTheGlobalSample() {
        let x = randomTensor([2 * 4, 9], seed: 19), stream = RandomStream(seed: 6, stream: 1)
        let whole = Tensor(zeros: [8, 9]), second = Tensor(zeros: [4, 9]), padded = Tensor(zeros: [6, 9])
        dropoutForward(out: whole, inp: x, p: 0.5, mask: DropoutMask(stream, length: 4))
        dropoutForward(out: second, inp: x.slice(4 ..< 8), p: 0.5, mask: DropoutMask(stream, length: 4, firstSample: 1))
        XCTAssertEqual(Array(whole.array[36...]), second.array, "sample 1 alone, as the second of two ranks sees it")
        let longer = Tensor(zeros: [6, 9])
        longer.data.update(from: x.data + 36, count: 36)
        dropoutForward(out: padded, inp: longer, p: 0.5, mask: DropoutMask(stream, length: 6, firstSample: 1))
        XCTAssertEqual(Array(padded.array[..<36]), second.array, "sample 1 padded to 6 positions")
        XCTAssertNotEqual(Array(whole.array[..<36]), second.array, "samples draw different masks")
    }

    func testDropout() {
        let x = Differentiable("inp", randomTensor([7, 9], seed: 18))
        let out = Tensor(zeros: [7, 9]), dout = Tensor(zeros: [7, 9])
        let stream = RandomStream(seed: 5, stream: 3)
        checkGradients([x], output: out, dout: dout,
                       forward: { dropoutForward(out: out, inp: x.value, p: 0.3, mask: DropoutMask(stream)) },
                       backward: { dropoutBackward(dinp: x.grad, dout: dout, p: 0.3, mask: DropoutMask(stream)) })
        let dropped = (0 ..< out.count).filter { out.data[$0] == 0 }.count
        XCTAssert(dropped > 5 && dropped < 35, "dropped \(dropped) of 63 at p = 0.3")
        for i in 0 ..< out.count where out.data[i] != 0 {
            XCTAssertEqual(out.data[i], x.value.data[i] / 0.7, accuracy: 1e-6)
        }
    }

    func testResidual() {
        let a = Differentiable("a", randomTensor([3, 4], seed: 19))
        let b = Differentiable("b", randomTensor([3, 4], seed: 20))
        let out = Tensor(zeros: [3, 4]), dout = Tensor(zeros: [3, 4])
        checkGradients([a, b], output: out, dout: dout,
                       forward: { residualForward(out: out, a: a.value, b: b.value) },
                       backward: { residualBackward(da: a.grad, db: b.grad, dout: dout) })
    }

    func testRotary() {
        // x is rotated in place, so forward starts each time from a copy of the input under test.
        let x0 = Differentiable("x", randomTensor([2, 5, 2 * 6], seed: 21))
        let x = Tensor(zeros: [2, 5, 12]), dout = Tensor(zeros: [2, 5, 12])
        let table = RotaryTable(headDim: 6, maxPositions: 16, base: 100)
        checkGradients([x0], output: x, dout: dout,
                       forward: { x.copy(from: x0.value); rotaryForward(x: x, heads: 2, table: table, positionOffset: 3) },
                       backward: {
                           let d = Tensor(zeros: dout.shape)
                           d.copy(from: dout)
                           rotaryBackward(dx: d, heads: 2, table: table, positionOffset: 3)
                           accumulate(into: x0.grad, d)
                       })
    }

    func testRotaryMatchesRotateHalf() {
        // out = x cos + rotate_half(x) sin with rotate_half(x) = cat(-x2, x1), as in Hugging Face Llama.
        let x = Tensor(shape: [1, 2, 4], values: [1, 2, 3, 4, 5, 6, 7, 8])
        rotaryForward(x: x, heads: 1, table: RotaryTable(headDim: 4, maxPositions: 2), positionOffset: 0)
        XCTAssertEqual(Array(x.array[0 ..< 4]), [1, 2, 3, 4], "position 0 is not rotated")
        let theta0 = 1.0, theta1 = 1.0 / 100  // base^(-2i/d) for i = 0, 1 with d = 4
        let expected = [5 * cos(theta0) - 7 * sin(theta0), 6 * cos(theta1) - 8 * sin(theta1),
                        7 * cos(theta0) + 5 * sin(theta0), 8 * cos(theta1) + 6 * sin(theta1)]
        for (got, want) in zip(x.array[4 ..< 8], expected) { XCTAssertEqual(Double(got), want, accuracy: 1e-5) }
    }

    func testPatchEmbedding() {
        let images = Differentiable("images", randomTensor([2, 3, 4, 4], seed: 22))
        let w = Differentiable("weight", randomTensor([5, 3 * 2 * 2], seed: 23))
        let b = Differentiable("bias", randomTensor([5], seed: 24))
        let cols = Tensor(zeros: [2 * 4, 12]), dcols = Tensor(zeros: [2 * 4, 12])
        let out = Tensor(zeros: [2, 4, 5]), dout = Tensor(zeros: [2, 4, 5])
        checkGradients([images, w, b], output: out, dout: dout,
                       forward: { patchEmbedForward(out: out, cols: cols, images: images.value, weight: w.value, bias: b.value, patch: 2) },
                       backward: { patchEmbedBackward(dimages: images.grad, dcols: dcols, dweight: w.grad, dbias: b.grad, dout: dout, cols: cols, weight: w.value, patch: 2) })
    }

    func testPatchEmbeddingIsAConvolution() {
        // One 4x4 image, patch 2: output patch (py, px), feature d = sum over c, ky, kx of w[d, c, ky, kx] * image[c, 2py+ky, 2px+kx] + b[d].
        let images = randomTensor([1, 3, 4, 4], seed: 25), w = randomTensor([2, 12], seed: 26), b = randomTensor([2], seed: 27)
        let out = Tensor(zeros: [1, 4, 2])
        patchEmbedForward(out: out, cols: Tensor(zeros: [4, 12]), images: images, weight: w, bias: b, patch: 2)
        for py in 0 ..< 2 {
            for px in 0 ..< 2 {
                for d in 0 ..< 2 {
                    var sum = Double(b.data[d])
                    for c in 0 ..< 3 {
                        for ky in 0 ..< 2 {
                            for kx in 0 ..< 2 {
                                sum += Double(w.data[d * 12 + (c * 2 + ky) * 2 + kx]) * Double(images.data[(c * 4 + 2 * py + ky) * 4 + 2 * px + kx])
                            }
                        }
                    }
                    XCTAssertEqual(Double(out.data[(py * 2 + px) * 2 + d]), sum, accuracy: 1e-5)
                }
            }
        }
    }
}

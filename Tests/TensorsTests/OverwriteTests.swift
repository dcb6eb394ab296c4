import CMatmul
import Tensors
import XCTest

/// Backward kernels called with `overwrite` write exactly what they would add to a zeroed buffer, and
/// never read the buffer's old contents (NaN here), in fp32 and in bf16.
final class OverwriteTests: XCTestCase {
    /// Runs `backward` on buffers of `shapes`: once zeroed and accumulating, once NaN-filled and overwriting.
    private func check(_ name: String, _ shapes: [[Int]], _ backward: ([Tensor], Bool) -> Void) {
        let accumulated = shapes.map { Tensor(zeros: $0) }
        backward(accumulated, false)
        let overwritten = shapes.map { Tensor(zeros: $0) }
        for t in overwritten { t.data.update(repeating: .nan, count: t.count) }
        backward(overwritten, true)
        for (i, (a, b)) in zip(accumulated, overwritten).enumerated() {
            XCTAssertEqual(a.array.map(\.bitPattern), b.array.map(\.bitPattern), "\(name) output \(i)")
        }
    }

    private func checkAll() {
        let x = randomTensor([37, 24], seed: 1), w = randomTensor([40, 24], seed: 2), dy = randomTensor([37, 40], seed: 3)
        check("linear", [[37, 24]]) { t, overwrite in
            linearBackward(dinp: t[0], dweight: nil, dbias: nil, dout: dy, inp: x, weight: w, overwrite: overwrite)
        }
        let h = randomTensor([37, 24], seed: 11), la = randomTensor([6, 24], seed: 12), lb = randomTensor([40, 6], seed: 13)
        check("lora", [[37, 24]]) { t, overwrite in
            loraBackward(dh: t[0], da: nil, db: nil, du: Tensor(zeros: [37, 6]), dout: dy, u: Tensor(zeros: [37, 6]), h: h, a: la, b: lb,
                         scale: 2, overwrite: overwrite)
        }
        let g = randomTensor([5, 33], seed: 4), u = randomTensor([5, 33], seed: 5), d = randomTensor([5, 33], seed: 6)
        check("gelu", [[5, 33]]) { t, overwrite in geluBackward(dinp: t[0], dout: d, inp: g, overwrite: overwrite) }
        check("swiglu", [[5, 33], [5, 33]]) { t, overwrite in
            swigluBackward(dgate: t[0], dup: t[1], dout: d, gate: g, up: u, overwrite: overwrite)
        }
        let s = AttentionShape(batch: 2, queryLength: 9, keyLength: 9, heads: 2, headDim: 4, causal: true)
        let q = randomTensor([2, 9, 8], seed: 7), k = randomTensor([2, 9, 8], seed: 8), v = randomTensor([2, 9, 8], seed: 9)
        let mask = Tensor(shape: [2, 9], values: (0 ..< 18).map { $0 == 8 ? 0 : 1 })
        let out = Tensor(zeros: [2, 9, 8]), probs = Tensor(zeros: [2, 2, 9, 9]), dout = randomTensor([2, 9, 8], seed: 10)
        attentionForward(out: out, probs: probs, q: HeadSlice(q), k: HeadSlice(k), v: HeadSlice(v), keyMask: mask, shape: s)
        check("attention", [[2, 9, 8], [2, 9, 8], [2, 9, 8]]) { t, overwrite in
            attentionBackward(dq: HeadSlice(t[0]), dk: HeadSlice(t[1]), dv: HeadSlice(t[2]), scratch: Tensor(zeros: [s.backwardScratchCount]),
                              dout: dout, probs: probs, q: HeadSlice(q), k: HeadSlice(k), v: HeadSlice(v), shape: s, overwrite: overwrite)
        }
    }

    func testOverwriteEqualsAccumulatingIntoZeros() {
        checkAll()
    }

    func testOverwriteEqualsAccumulatingIntoZerosInBF16() throws {
        try XCTSkipUnless(xt_bf16_best_kernel() >= XT_BF16_AVX512, "this CPU has neither AMX-BF16 nor AVX512-BF16")
        defer { Matmul.precision = .fp32 }
        Matmul.precision = .bf16
        checkAll()
    }
}

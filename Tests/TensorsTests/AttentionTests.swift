import Foundation
import Tensors
import XCTest

final class AttentionTests: XCTestCase {
    /// Runs the finite-difference check on separate q, k, v tensors.
    private func check(_ s: AttentionShape, keyMask: Tensor?, file: StaticString = #filePath, line: UInt = #line) {
        let width = s.heads * s.headDim
        let q = Differentiable("q", randomTensor([s.batch, s.queryLength, width], seed: 31, low: -2, high: 2))
        let k = Differentiable("k", randomTensor([s.batch, s.keyLength, width], seed: 32, low: -2, high: 2))
        let v = Differentiable("v", randomTensor([s.batch, s.keyLength, width], seed: 33))
        let out = Tensor(zeros: [s.batch, s.queryLength, width]), dout = Tensor(zeros: out.shape)
        let probs = Tensor(zeros: [s.batch, s.heads, s.queryLength, s.keyLength])
        let scratch = Tensor(zeros: [s.backwardScratchCount])
        checkGradients([q, k, v], output: out, dout: dout,
                       forward: { attentionForward(out: out, probs: probs, q: HeadSlice(q.value), k: HeadSlice(k.value), v: HeadSlice(v.value), keyMask: keyMask, shape: s) },
                       backward: {
                           attentionBackward(dq: HeadSlice(q.grad), dk: HeadSlice(k.grad), dv: HeadSlice(v.grad), scratch: scratch,
                                             dout: dout, probs: probs, q: HeadSlice(q.value), k: HeadSlice(k.value), v: HeadSlice(v.value), shape: s)
                       }, file: file, line: line)
        XCTAssertEqual(naiveAttention(q.value, k.value, v.value, keyMask, s), out.array.map(Double.init), accuracy: 1e-5, file: file, line: line)
    }

    func testSelfAttention() {
        check(AttentionShape(batch: 2, queryLength: 5, keyLength: 5, heads: 2, headDim: 3, causal: false), keyMask: nil)
    }

    func testCausalSelfAttention() {
        check(AttentionShape(batch: 2, queryLength: 6, keyLength: 6, heads: 3, headDim: 2, causal: true), keyMask: nil)
    }

    func testCrossAttentionWithKeyPadding() {
        let mask = Tensor(shape: [2, 5], values: [1, 1, 1, 0, 0, 0, 1, 1, 1, 1])
        check(AttentionShape(batch: 2, queryLength: 3, keyLength: 5, heads: 2, headDim: 4, causal: false), keyMask: mask)
    }

    func testCausalWithKeyPadding() {
        // Right padding in a causal decoder batch: the second sequence has two padded positions.
        let mask = Tensor(shape: [2, 5], values: [1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
        check(AttentionShape(batch: 2, queryLength: 5, keyLength: 5, heads: 2, headDim: 3, causal: true), keyMask: mask)
    }

    func testCausalQueriesAreTheLastPositions() {
        // Three new queries against five keys (a KV cache of two): query i sees keys 0...i+2.
        check(AttentionShape(batch: 1, queryLength: 3, keyLength: 5, heads: 2, headDim: 3, causal: true), keyMask: nil)
    }

    func testFusedQKVColumns() {
        // q, k, v at columns 0, D, 2D of one (B, T, 3D) tensor, as the ViT's fused qkv projection gives them.
        let s = AttentionShape(batch: 2, queryLength: 4, keyLength: 4, heads: 2, headDim: 3, causal: false)
        let d = s.heads * s.headDim
        let qkv = Differentiable("qkv", randomTensor([2, 4, 3 * d], seed: 34, low: -2, high: 2))
        let out = Tensor(zeros: [2, 4, d]), dout = Tensor(zeros: out.shape)
        let probs = Tensor(zeros: [2, 2, 4, 4]), scratch = Tensor(zeros: [s.backwardScratchCount])
        let slices = [0, d, 2 * d].map { HeadSlice(qkv.value, column: $0) }
        checkGradients([qkv], output: out, dout: dout,
                       forward: { attentionForward(out: out, probs: probs, q: slices[0], k: slices[1], v: slices[2], keyMask: nil, shape: s) },
                       backward: {
                           attentionBackward(dq: HeadSlice(qkv.grad), dk: HeadSlice(qkv.grad, column: d), dv: HeadSlice(qkv.grad, column: 2 * d),
                                             scratch: scratch, dout: dout, probs: probs, q: slices[0], k: slices[1], v: slices[2], shape: s)
                       })
    }

    func testFullyMaskedQueryGetsZeroOutputAndGradient() {
        let s = AttentionShape(batch: 2, queryLength: 2, keyLength: 3, heads: 1, headDim: 2, causal: false)
        let q = randomTensor([2, 2, 2], seed: 35), k = randomTensor([2, 3, 2], seed: 36), v = randomTensor([2, 3, 2], seed: 37)
        let mask = Tensor(shape: [2, 3], values: [1, 0, 1, 0, 0, 0])
        let out = Tensor(zeros: [2, 2, 2]), probs = Tensor(zeros: [2, 1, 2, 3])
        attentionForward(out: out, probs: probs, q: HeadSlice(q), k: HeadSlice(k), v: HeadSlice(v), keyMask: mask, shape: s)
        XCTAssertEqual(out.row(1).array, [0, 0, 0, 0])
        XCTAssertEqual(probs.row(1).array, Array(repeating: 0, count: 6))
        XCTAssertEqual(probs.data[1], 0, "a padded key gets exactly zero weight")
        let dq = Tensor(zeros: q.shape), dk = Tensor(zeros: k.shape), dv = Tensor(zeros: v.shape)
        attentionBackward(dq: HeadSlice(dq), dk: HeadSlice(dk), dv: HeadSlice(dv), scratch: Tensor(zeros: [s.backwardScratchCount]),
                          dout: randomTensor([2, 2, 2], seed: 38), probs: probs, q: HeadSlice(q), k: HeadSlice(k), v: HeadSlice(v), shape: s)
        XCTAssertEqual(dq.row(1).array + dk.row(1).array + dv.row(1).array, Array(repeating: 0, count: 16))
        XCTAssertEqual(dk.row(0).row(1).array + dv.row(0).row(1).array, [0, 0, 0, 0], "a padded key gets no gradient")
    }

    /// softmax(scale q k^T) v over the visible keys, in Double, one (batch, head, query) at a time.
    private func naiveAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ mask: Tensor?, _ s: AttentionShape) -> [Double] {
        let width = s.heads * s.headDim
        var out = [Double](repeating: 0, count: s.batch * s.queryLength * width)
        for b in 0 ..< s.batch {
            for h in 0 ..< s.heads {
                for i in 0 ..< s.queryLength {
                    let qRow = (b * s.queryLength + i) * width + h * s.headDim
                    let limit = s.causal ? i + s.keyLength - s.queryLength : s.keyLength - 1
                    var visible: [Int] = [], scores: [Double] = []
                    for j in 0 ... max(limit, 0) where j <= limit && j < s.keyLength {
                        if let mask, mask.data[b * s.keyLength + j] == 0 { continue }
                        let kRow = (b * s.keyLength + j) * width + h * s.headDim
                        var dot = 0.0
                        for c in 0 ..< s.headDim { dot += Double(q.data[qRow + c]) * Double(k.data[kRow + c]) }
                        visible.append(j)
                        scores.append(dot * Double(s.scale))
                    }
                    guard let m = scores.max() else { continue }
                    let weights = scores.map { exp($0 - m) }
                    let total = weights.reduce(0, +)
                    for (j, w) in zip(visible, weights) {
                        let vRow = (b * s.keyLength + j) * width + h * s.headDim
                        for c in 0 ..< s.headDim { out[qRow + c] += w / total * Double(v.data[vRow + c]) }
                    }
                }
            }
        }
        return out
    }
}

/// Element-wise approximate equality of two arrays with an absolute tolerance.
func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "lengths differ", file: file, line: line)
    let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
    XCTAssertLessThanOrEqual(worst, accuracy, "arrays differ by up to \(worst)", file: file, line: line)
}

import CMatmul
import Tensors
import XCTest

/// Kernels on sizes large enough to be split over the threads give bit-identical results run after run.
final class DeterminismTests: XCTestCase {
    /// A small pre-norm transformer block's forward and backward; returns every output and gradient.
    private func blockStep() -> [[Float]] {
        let (b, t, c, heads, f) = (4, 65, 64, 4, 256)
        let s = AttentionShape(batch: b, queryLength: t, keyLength: t, heads: heads, headDim: c / heads, causal: true)
        let x = randomTensor([b, t, c], seed: 1)
        let ln = Tensor(zeros: [b, t, c]), mean = Tensor(zeros: [b * t]), rstd = Tensor(zeros: [b * t])
        let lnW = randomTensor([c], seed: 2), lnB = randomTensor([c], seed: 3)
        let qkvW = randomTensor([3 * c, c], seed: 4), qkvB = randomTensor([3 * c], seed: 5)
        let fc1W = randomTensor([f, c], seed: 6), fc2W = randomTensor([c, f], seed: 7)
        let qkv = Tensor(zeros: [b, t, 3 * c]), att = Tensor(zeros: [b, t, c]), probs = Tensor(zeros: [b, heads, t, t])
        let h = Tensor(zeros: [b, t, f]), g = Tensor(zeros: [b, t, f]), y = Tensor(zeros: [b, t, c])
        let ids = (0 ..< b * t).map { Int32($0 * 7 % 50) }
        let table = randomTensor([50, c], seed: 8), emb = Tensor(zeros: [b * t, c])

        embeddingForward(out: emb, ids: ids, table: table)
        layerNormForward(out: ln, mean: mean, rstd: rstd, inp: x, weight: lnW, bias: lnB, eps: 1e-6)
        linearForward(out: qkv, inp: ln, weight: qkvW, bias: qkvB)
        rotaryForward(x: att, heads: heads, table: RotaryTable(headDim: c / heads, maxPositions: t))
        attentionForward(out: att, probs: probs, q: HeadSlice(qkv), k: HeadSlice(qkv, column: c), v: HeadSlice(qkv, column: 2 * c), keyMask: nil, shape: s)
        linearForward(out: h, inp: att, weight: fc1W, bias: nil)
        geluForward(out: g, inp: h)
        linearForward(out: y, inp: g, weight: fc2W, bias: nil)

        let dy = randomTensor([b, t, c], seed: 9), dg = Tensor(zeros: g.shape), dh = Tensor(zeros: h.shape)
        let datt = Tensor(zeros: att.shape), dqkv = Tensor(zeros: qkv.shape), dln = Tensor(zeros: ln.shape), dx = Tensor(zeros: x.shape)
        let dfc1 = Tensor(zeros: fc1W.shape), dfc2 = Tensor(zeros: fc2W.shape), dqkvW = Tensor(zeros: qkvW.shape), dqkvB = Tensor(zeros: qkvB.shape)
        let dlnW = Tensor(zeros: [c]), dlnB = Tensor(zeros: [c]), dtable = Tensor(zeros: table.shape)
        linearBackward(dinp: dg, dweight: dfc2, dbias: nil, dout: dy, inp: g, weight: fc2W)
        geluBackward(dinp: dh, dout: dg, inp: h)
        linearBackward(dinp: datt, dweight: dfc1, dbias: nil, dout: dh, inp: att, weight: fc1W)
        attentionBackward(dq: HeadSlice(dqkv), dk: HeadSlice(dqkv, column: c), dv: HeadSlice(dqkv, column: 2 * c), scratch: Tensor(zeros: [s.backwardScratchCount]),
                          dout: datt, probs: probs, q: HeadSlice(qkv), k: HeadSlice(qkv, column: c), v: HeadSlice(qkv, column: 2 * c), shape: s)
        linearBackward(dinp: dln, dweight: dqkvW, dbias: dqkvB, dout: dqkv, inp: ln, weight: qkvW)
        layerNormBackward(dinp: dx, dweight: dlnW, dbias: dlnB, dout: dln, inp: x, weight: lnW, mean: mean, rstd: rstd)
        embeddingBackward(dtable: dtable, dout: dy.reshaped([b * t, c]), ids: ids)
        return [y, dx, dfc1, dfc2, dqkvW, dqkvB, dlnW, dlnB, dtable].map(\.array)
    }

    func testBlockIsBitIdenticalAcrossRuns() {
        XCTAssertGreaterThan(Parallel.partition(4 * 65, grain: 1).count, Parallel.threads > 1 ? 1 : 0)
        let first = blockStep()
        for _ in 0 ..< 3 {
            let again = blockStep()
            for (a, b) in zip(first, again) { XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern)) }
        }
    }

    /// With bf16 products on AMX or AVX512-BF16 the block is bit-identical for one thread and for two, and close to fp32.
    func testBF16BlockIsBitIdenticalAcrossThreadCounts() throws {
        try XCTSkipUnless(xt_bf16_best_kernel() >= XT_BF16_AVX512, "this CPU has neither AMX-BF16 nor AVX512-BF16")
        let threads = Parallel.threads
        defer {
            Matmul.precision = .fp32
            Parallel.setThreads(threads)
        }
        let fp32 = blockStep()
        Matmul.precision = .bf16
        Parallel.setThreads(1)
        let one = blockStep()
        Parallel.setThreads(2)
        let two = blockStep()
        for (i, (a, b)) in zip(one, two).enumerated() { XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "output \(i)") }
        for (i, (a, b)) in zip(fp32, two).enumerated() {
            let size = a.map { abs(Double($0)) }.max() ?? 0, difference = zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
            if i == 0 { XCTAssertGreaterThan(difference, 0, "the block's output went through bf16 products") }
            XCTAssertLessThanOrEqual(difference, 0.05 * size, "output \(i): bf16 stays close to fp32")
        }
    }
}

import CVectorMath
import Foundation
import Tensors
import XCTest

final class FoundationTests: XCTestCase {
    func testPhiloxKnownAnswers() {
        // Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors).
        XCTAssertEqual(Philox.block(key: 0, stream: 0, index: 0), SIMD4(0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8))
        XCTAssertEqual(Philox.block(key: 0xffff_ffff_ffff_ffff, stream: 0xffff_ffff_ffff_ffff, index: 0xffff_ffff_ffff_ffff),
                       SIMD4(0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd))
        XCTAssertEqual(Philox.block(key: 0x299f_31d0_a409_3822, stream: 0x0370_7344_1319_8a2e, index: 0x85a3_08d3_243f_6a88),
                       SIMD4(0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1))
    }

    func testRNGStateRestoresTheSameNumbers() {
        var rng = RNG(seed: 42)
        let a = Tensor(zeros: [100])
        rng.fillNormal(a, std: 1)
        let saved = rng.state
        let b = Tensor(zeros: [37]), c = Tensor(zeros: [37])
        rng.fillUniform(b, low: 0, high: 1)
        var restored = RNG(state: saved)
        restored.fillUniform(c, low: 0, high: 1)
        XCTAssertEqual(b.array, c.array)
        XCTAssertEqual(rng.state, restored.state)
        let encoded = try! JSONEncoder().encode(saved)
        XCTAssertEqual(try! JSONDecoder().decode(RNG.State.self, from: encoded), saved)
    }

    func testDistributions() {
        var rng = RNG(seed: 7)
        let u = Tensor(zeros: [100_001]), n = Tensor(zeros: [100_001])
        rng.fillUniform(u, low: -2, high: 2)
        rng.fillNormal(n, mean: 1, std: 3)
        let (uMean, uVar) = moments(u), (nMean, nVar) = moments(n)
        XCTAssertEqual(uMean, 0, accuracy: 0.02)
        XCTAssertEqual(uVar, 16.0 / 12, accuracy: 0.02)
        XCTAssert(u.array.allSatisfy { $0 >= -2 && $0 < 2 })
        XCTAssertEqual(nMean, 1, accuracy: 0.03)
        XCTAssertEqual(nVar.squareRoot(), 3, accuracy: 0.03)
        XCTAssertNotEqual(u.data[100_000], 0, "the odd last element is filled")
    }

    private func moments(_ t: Tensor) -> (Double, Double) {
        let mean = t.array.reduce(0.0) { $0 + Double($1) } / Double(t.count)
        let variance = t.array.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(t.count)
        return (mean, variance)
    }

    func testExpAccuracy() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88 {
            let want = Foundation.exp(Double(x))
            worst = max(worst, Float(abs(Double(xt_exp(x)) - want) / want))
            x += 0.0137
        }
        XCTAssertLessThan(worst, 3e-7, "relative error of xt_exp")
        XCTAssertEqual(xt_exp(0), 1)
        // A row of 37: the partial last group of 16 gets the same arithmetic as the others.
        let row = randomTensor([37], seed: 8, low: -5, high: 5), out = Tensor(zeros: [37])
        let sum = rowExpSum(out.data, row.data, 37, shift: 0.5)
        for j in 0 ..< 37 { XCTAssertEqual(out.data[j], xt_exp(row.data[j] - 0.5), "element \(j)") }
        XCTAssertEqual(Double(sum), out.array.reduce(0.0) { $0 + Double($1) }, accuracy: 1e-4)
        XCTAssertEqual(rowExpSum(row.data, 37, shift: 0.5), sum)
    }

    func testRowReductions() {
        let x = randomTensor([37], seed: 3), y = randomTensor([37], seed: 4)
        XCTAssertEqual(Double(rowSum(x.data, 37)), x.array.reduce(0.0) { $0 + Double($1) }, accuracy: 1e-5)
        XCTAssertEqual(Double(rowDot(x.data, y.data, 37)), zip(x.array, y.array).reduce(0.0) { $0 + Double($1.0 * $1.1) }, accuracy: 1e-5)
        XCTAssertEqual(rowMax(x.data, 37), x.array.max())
        XCTAssertEqual(rowMax(x.data, 0), -.infinity)
    }

    func testArenaAllocatesNothingAfterTheFirstPass() {
        let arena = Arena(minimumBlock: 100)
        func pass() -> [Tensor] { [arena.tensor([30, 7]), arena.tensor([50]), arena.tensor([3, 3, 3])] }
        let first = pass()
        XCTAssertGreaterThan(arena.blockAllocations, 1, "the first pass overflows the small blocks")
        first[0].fill(5)
        arena.reset()
        let afterFirst = arena.blockAllocations
        for _ in 0 ..< 3 {
            let tensors = pass()
            XCTAssertEqual(tensors[0].array, Array(repeating: 0, count: 210), "arena tensors start zeroed")
            arena.reset()
        }
        XCTAssertEqual(arena.blockAllocations, afterFirst, "later passes reuse one block of the peak size")
        let aligned = pass().map { Int(bitPattern: $0.data) % 64 }
        XCTAssertEqual(aligned, [0, 0, 0], "tensors are 64-byte aligned")
    }

    func testTensorViews() {
        let t = Tensor(shape: [3, 2, 2], values: (0 ..< 12).map(Float.init))
        XCTAssertEqual(t.slice(1 ..< 3).shape, [2, 2, 2])
        XCTAssertEqual(t.slice(1 ..< 3).array, (4 ..< 12).map(Float.init))
        XCTAssertEqual(t.row(2).reshaped([4]).array, [8, 9, 10, 11])
        XCTAssertEqual(t.rows, 6)
        XCTAssertEqual(t.columns, 2)
        t.row(0).fill(-1)
        XCTAssertEqual(t.data[3], -1, "views share elements")
    }

    func testPartitionCoversEveryItemOnce() {
        for count in [0, 1, 7, 1000] {
            for grain in [1, 3, 2000] {
                let chunks = Parallel.partition(count, grain: grain)
                XCTAssertEqual(chunks.flatMap { Array($0) }, Array(0 ..< count))
                XCTAssertLessThanOrEqual(chunks.count, Parallel.threads)
            }
        }
    }
}

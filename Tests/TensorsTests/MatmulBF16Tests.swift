import CMatmul
import Foundation
import Tensors
import XCTest

/// The bf16 matrix product (AMX tiles, AVX512-BF16 and the portable OpenBLAS path, each this CPU has)
/// against a Double reference of the rounded operands, over edge sizes, transposes, strides, alpha and beta.
final class MatmulBF16Tests: XCTestCase {
    struct Case {
        var m, n, k: Int
        var transA, transB: Bool
        var alpha, beta: Float
    }

    /// Runs one product on operands stored with 3 spare columns per row and checks every element.
    private func check(_ t: Case, kernel: Int32, file: StaticString = #filePath, line: UInt = #line) {
        let (aRows, aCols) = t.transA ? (t.k, t.m) : (t.m, t.k)
        let (bRows, bCols) = t.transB ? (t.n, t.k) : (t.k, t.n)
        let (lda, ldb, ldc) = (aCols + 3, bCols + 3, t.n + 3)
        let a = randomTensor([aRows, lda], seed: UInt64(t.m * 131 + t.k), low: -2, high: 2)
        let b = randomTensor([bRows, ldb], seed: UInt64(t.n * 17 + t.k), low: -2, high: 2)
        let c = randomTensor([t.m, ldc], seed: 5)
        if t.beta == 0 { c.data.update(repeating: .nan, count: c.count) }   // beta = 0 must not read C
        let c0 = c.array
        xt_gemm_bf16(t.transA ? 1 : 0, t.transB ? 1 : 0, Int32(t.m), Int32(t.n), Int32(t.k), t.alpha, a.data, Int32(lda),
                     b.data, Int32(ldb), t.beta, c.data, Int32(ldc), kernel)
        func opA(_ i: Int, _ p: Int) -> Double { Double(xt_round_bf16(t.transA ? a.data[p * lda + i] : a.data[i * lda + p])) }
        func opB(_ p: Int, _ j: Int) -> Double { Double(xt_round_bf16(t.transB ? b.data[j * ldb + p] : b.data[p * ldb + j])) }
        var worst = 0.0
        for i in 0 ..< t.m {
            for j in 0 ..< t.n {
                var sum = 0.0, size = 0.0
                for p in 0 ..< t.k {
                    sum += opA(i, p) * opB(p, j)
                    size += abs(opA(i, p) * opB(p, j))
                }
                let old = t.beta == 0 ? 0 : Double(c0[i * ldc + j])
                let expected = Double(t.alpha) * sum + Double(t.beta) * old
                let error = abs(Double(c.data[i * ldc + j]) - expected) / (size + abs(old) + 1e-30)
                worst = max(worst, error.isNaN ? .infinity : error)
            }
            for j in t.n ..< ldc { XCTAssertEqual(c.data[i * ldc + j].bitPattern, c0[i * ldc + j].bitPattern, "column \(j) beyond n was written", file: file, line: line) }
        }
        XCTAssertLessThan(worst, 1e-5, "\(t) kernel \(kernel)", file: file, line: line)
    }

    private var cases: [Case] {
        var all: [Case] = []
        // (300, 40, 70): many strips of A, packed a pair at a time; (3, 480, 1100): B in
        // several groups, A packed once.
        for (m, n, k) in [(1, 1, 1), (16, 16, 32), (17, 33, 45), (40, 7, 70), (5, 50, 257), (64, 96, 32), (70, 40, 100),
                          (300, 40, 70), (3, 480, 1100)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    all.append(Case(m: m, n: n, k: k, transA: transA, transB: transB, alpha: 1, beta: 0))
                }
            }
            all.append(Case(m: m, n: n, k: k, transA: false, transB: true, alpha: 0.7, beta: 1))
            all.append(Case(m: m, n: n, k: k, transA: true, transB: false, alpha: -1.5, beta: 0.25))
            all.append(Case(m: m, n: n, k: k, transA: true, transB: true, alpha: 1, beta: 1))
            all.append(Case(m: m, n: n, k: k, transA: false, transB: false, alpha: 2, beta: 0))
            all.append(Case(m: m, n: n, k: k, transA: false, transB: true, alpha: 1, beta: 0.5))
        }
        return all
    }

    /// The kernels this CPU has, slowest first.
    private var kernels: [Int32] { Array(Int32(XT_BF16_PORTABLE) ... xt_bf16_best_kernel()) }

    func testAMXMatchesTheRoundedOperands() throws {
        try XCTSkipUnless(xt_bf16_best_kernel() == XT_BF16_AMX, "this CPU has no AMX-BF16")
        for t in cases { check(t, kernel: Int32(XT_BF16_AMX)) }
    }

    func testAVX512MatchesTheRoundedOperands() throws {
        try XCTSkipUnless(xt_bf16_best_kernel() >= XT_BF16_AVX512, "this CPU has no AVX512-BF16")
        for t in cases { check(t, kernel: Int32(XT_BF16_AVX512)) }
    }

    func testPortablePathMatchesTheRoundedOperands() {
        for t in cases { check(t, kernel: Int32(XT_BF16_PORTABLE)) }
    }

    /// One element depends only on its row, its column and k: splitting the rows over calls changes no bit,
    /// whether the element's 32 x 32 block is whole or cut at the edge of C.
    func testRowSplitsAreBitIdentical() throws {
        try XCTSkipUnless(xt_bf16_best_kernel() >= XT_BF16_AVX512, "this CPU has neither AMX-BF16 nor AVX512-BF16")
        let (m, n, k) = (75, 70, 90)
        let a = randomTensor([m, k], seed: 1), b = randomTensor([n, k], seed: 2)
        for kernel in kernels.dropFirst() {
            for (alpha, beta) in [(Float(1), Float(0)), (1, 1), (0.5, 1)] {
                let whole = randomTensor([m, n], seed: 3), split = randomTensor([m, n], seed: 3)
                xt_gemm_bf16(0, 1, Int32(m), Int32(n), Int32(k), alpha, a.data, Int32(k), b.data, Int32(k), beta, whole.data, Int32(n), kernel)
                for rows in [0 ..< 13, 13 ..< 45, 45 ..< 75] {
                    xt_gemm_bf16(0, 1, Int32(rows.count), Int32(n), Int32(k), alpha, a.data + rows.lowerBound * k, Int32(k), b.data, Int32(k),
                                 beta, split.data + rows.lowerBound * n, Int32(n), kernel)
                }
                XCTAssertEqual(whole.array.map(\.bitPattern), split.array.map(\.bitPattern), "kernel \(kernel), alpha \(alpha), beta \(beta)")
            }
        }
    }

    /// The product with a bias equals C filled with the bias and the product with beta 1, bit for bit, on
    /// whole and edge blocks, every kernel; C's old contents (NaN here) are not read.
    func testBiasEqualsFillingCAndAccumulating() {
        for (m, n, k) in [(64, 64, 64), (75, 70, 90), (3, 17, 5)] {
            let a = randomTensor([m, k], seed: 4), b = randomTensor([n, k], seed: 5), bias = randomTensor([n], seed: 6)
            for kernel in kernels {
                let filled = Tensor(zeros: [m, n]), fused = Tensor(zeros: [m, n])
                for r in 0 ..< m { (filled.data + r * n).update(from: bias.data, count: n) }
                fused.data.update(repeating: .nan, count: fused.count)
                xt_gemm_bf16(0, 1, Int32(m), Int32(n), Int32(k), 1, a.data, Int32(k), b.data, Int32(k), 1, filled.data, Int32(n), kernel)
                xt_gemm_bf16_bias(0, 1, Int32(m), Int32(n), Int32(k), a.data, Int32(k), b.data, Int32(k), bias.data, fused.data, Int32(n), kernel)
                XCTAssertEqual(filled.array.map(\.bitPattern), fused.array.map(\.bitPattern), "\(m) x \(n) x \(k), kernel \(kernel)")
            }
        }
    }

    func testRoundingIsToNearestEven() {
        XCTAssertEqual(xt_round_bf16(1 + 1.0 / 256), 1)                    // halfway, even neighbour below
        XCTAssertEqual(xt_round_bf16(1 + 3.0 / 256), 1 + 4.0 / 256)        // halfway, even neighbour above
        XCTAssertEqual(xt_round_bf16(1 + 1.5 / 256), 1 + 2.0 / 256)
        XCTAssertTrue(xt_round_bf16(.nan).isNaN)
        XCTAssertEqual(xt_round_bf16(.infinity), .infinity)
    }
}

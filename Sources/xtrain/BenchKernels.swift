import ArgumentParser
import CBLAS
import Foundation
import Tensors

extension MatmulPrecision: ExpressibleByArgument {}

/// `xtrain bench kernels`: the linear layer against raw sgemm, attention against the GEMMs inside it.
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Time the linear and attention kernels (forward + backward) against raw BLAS on the same shapes.",
        discussion: "Build in release (swift build -c release) for meaningful figures. Baseline and kernel run alternately; times are medians over the repeats after a warm-up, ratios the median of the paired ratios. Set OPENBLAS_THREAD_TIMEOUT=4: otherwise OpenBLAS's threads keep a core busy after each threaded baseline call and the kernels timed next lose it."
    )

    @Option(help: "Timed repeats per measurement.")
    var repeats = 9

    @Option(help: "Linear shape as N,IN,OUT (rows = batch x tokens).")
    var linear = "4096,768,3072"

    @Option(help: "Attention shape as B,HEADS,T,HEAD_DIM.")
    var attention = "8,12,257,64"

    @Option(help: "The kernels' matrix products: fp32, or bf16 (mixed precision); the raw-sgemm baseline stays fp32.")
    var precision = MatmulPrecision.fp32

    func run() throws {
        let l = try parseShape(linear, count: 3, option: "--linear")
        let a = try parseShape(attention, count: 4, option: "--attention")
        Matmul.precision = precision
        print("threads: \(Parallel.threads)  OpenBLAS: \(String(cString: openblas_get_config()))  products: \(precision.rawValue)\(precision == .bf16 ? " on \(Matmul.bf16Kernel)" : "")")
        benchLinear(n: l[0], inFeatures: l[1], outFeatures: l[2])
        benchAttention(batch: a[0], heads: a[1], length: a[2], headDim: a[3], causal: false)
        benchAttention(batch: a[0], heads: a[1], length: a[2], headDim: a[3], causal: true)
    }

    private func parseShape(_ text: String, count: Int, option: String) throws -> [Int] {
        let parts = text.split(separator: ",").compactMap { Int($0) }
        guard parts.count == count, parts.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("\(option) '\(text)': expected \(count) positive comma-separated integers")
        }
        return parts
    }

    /// Times `baseline` and `candidate` alternately, `repeats` times after one warm-up each, so that drift
    /// on a shared machine hits both alike. Returns their median times and the median of the paired
    /// ratios candidate / baseline.
    private func paired(baseline: () -> Void, candidate: () -> Void) -> (baseline: Double, candidate: Double, ratio: Double) {
        func seconds(_ body: () -> Void) -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        }
        baseline()
        candidate()
        var b: [Double] = [], c: [Double] = [], r: [Double] = []
        for _ in 0 ..< repeats {
            b.append(seconds(baseline))
            c.append(seconds(candidate))
            r.append(c.last! / b.last!)
        }
        func median(_ x: [Double]) -> Double { x.sorted()[x.count / 2] }
        return (median(b), median(c), median(r))
    }

    private func benchLinear(n: Int, inFeatures c: Int, outFeatures oc: Int) {
        var rng = RNG(seed: 1)
        let x = Tensor(zeros: [n, c]), w = Tensor(zeros: [oc, c]), b = Tensor(zeros: [oc])
        let y = Tensor(zeros: [n, oc]), dy = Tensor(zeros: [n, oc])
        let dx = Tensor(zeros: [n, c]), dw = Tensor(zeros: [oc, c]), db = Tensor(zeros: [oc])
        for t in [x, w, b, dy] { rng.fillNormal(t, std: 0.02) }
        let flops = 3 * 2 * Double(n) * Double(c) * Double(oc)

        // Baseline: the same three products as raw cblas_sgemm calls, threaded by OpenBLAS itself.
        let t = paired(baseline: {
            openblas_set_num_threads(Int32(Parallel.threads))
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(oc), Int32(c), 1, x.data, Int32(c), w.data, Int32(c), 0, y.data, Int32(oc))
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(c), Int32(oc), 1, dy.data, Int32(oc), w.data, Int32(c), 1, dx.data, Int32(c))
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(oc), Int32(c), Int32(n), 1, dy.data, Int32(oc), x.data, Int32(c), 1, dw.data, Int32(c))
            openblas_set_num_threads(1)
        }, candidate: {
            linearForward(out: y, inp: x, weight: w, bias: b)
            linearBackward(dinp: dx, dweight: dw, dbias: db, dout: dy, inp: x, weight: w)
        })
        print(String(format: "linear fwd+bwd  (N=%d, in=%d, out=%d)  raw sgemm x3: %.1f ms %.1f GFLOP/s | linear: %.1f ms %.1f GFLOP/s | linear reaches %.1f%% of raw sgemm",
                     n, c, oc, t.baseline * 1e3, flops / t.baseline * 1e-9, t.candidate * 1e3, flops / t.candidate * 1e-9, 100 / t.ratio))
    }

    private func benchAttention(batch: Int, heads: Int, length t: Int, headDim d: Int, causal: Bool) {
        var rng = RNG(seed: 2)
        let width = heads * d
        let shape = AttentionShape(batch: batch, queryLength: t, keyLength: t, heads: heads, headDim: d, causal: causal)
        let qkv = Tensor(zeros: [batch, t, 3 * width]), dqkv = Tensor(zeros: [batch, t, 3 * width])
        let out = Tensor(zeros: [batch, t, width]), dout = Tensor(zeros: [batch, t, width])
        let probs = Tensor(zeros: [batch, heads, t, t]), scratch = Tensor(zeros: [shape.backwardScratchCount])
        rng.fillNormal(qkv, std: 1)
        rng.fillNormal(dout, std: 1)
        let (q, k, v) = (HeadSlice(qkv), HeadSlice(qkv, column: width), HeadSlice(qkv, column: 2 * width))
        let (dq, dk, dv) = (HeadSlice(dqkv), HeadSlice(dqkv, column: width), HeadSlice(dqkv, column: 2 * width))
        let kernel = {
            attentionForward(out: out, probs: probs, q: q, k: k, v: v, keyMask: nil, shape: shape)
            attentionBackward(dq: dq, dk: dk, dv: dv, scratch: scratch, dout: dout, probs: probs, q: q, k: k, v: v, shape: shape)
        }
        // Baseline: only the six GEMMs per (batch, head) that the kernel contains, on the same operands and threads.
        let gemms = {
            Parallel.indexedChunks(batch * heads) { thread, pairs in
                let ds = scratch.data + thread * t * t
                for pair in pairs {
                    let b = pair / heads, h = pair % heads
                    let p = probs.data + pair * t * t
                    let off = b * t * 3 * width + h * d, ld = 3 * width
                    let o = out.data + b * t * width + h * d, dop = dout.data + b * t * width + h * d
                    gemm(transA: false, transB: true, m: t, n: t, k: d, alpha: 1, a: qkv.data + off, lda: ld, b: qkv.data + off + width, ldb: ld, beta: 0, c: p, ldc: t)
                    gemm(transA: false, transB: false, m: t, n: d, k: t, alpha: 1, a: p, lda: t, b: qkv.data + off + 2 * width, ldb: ld, beta: 0, c: o, ldc: width)
                    gemm(transA: true, transB: false, m: t, n: d, k: t, alpha: 1, a: p, lda: t, b: dop, ldb: width, beta: 1, c: dqkv.data + off + 2 * width, ldc: ld)
                    gemm(transA: false, transB: true, m: t, n: t, k: d, alpha: 1, a: dop, lda: width, b: qkv.data + off + 2 * width, ldb: ld, beta: 0, c: ds, ldc: t)
                    gemm(transA: false, transB: false, m: t, n: d, k: t, alpha: 1, a: ds, lda: t, b: qkv.data + off + width, ldb: ld, beta: 1, c: dqkv.data + off, ldc: ld)
                    gemm(transA: true, transB: false, m: t, n: d, k: t, alpha: 1, a: ds, lda: t, b: qkv.data + off, ldb: ld, beta: 1, c: dqkv.data + off + width, ldc: ld)
                }
            }
        }
        let times = paired(baseline: gemms, candidate: kernel)
        print(String(format: "attention fwd+bwd (B=%d, heads=%d, T=%d, d=%d, %@)  its 6 GEMMs alone: %.1f ms | attention: %.1f ms | attention / GEMMs = %.2fx",
                     batch, heads, t, d, causal ? "causal" : "no mask", times.baseline * 1e3, times.candidate * 1e3, times.ratio))
    }
}

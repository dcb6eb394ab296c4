import CVectorMath

/// Elementwise kernels: GELU (erf), SiLU, the SwiGLU product, dropout and the residual add. The exp-based
/// ones run in C (CVectorMath) on chunks split over the threads.

/// Elements per chunk before elementwise work is split over threads.
@usableFromInline let elementwiseGrain = 1 << 15

/// out = 0.5 * x * (1 + erf(x / sqrt 2)), the exact GELU (erf to 1.5e-7). out and inp have the same shape.
public func geluForward(out: Tensor, inp: Tensor) {
    out.expectSameShape(inp, "geluForward out vs inp")
    Parallel.chunks(inp.count, grain: elementwiseGrain) { r in
        xt_gelu_forward(out.data + r.lowerBound, inp.data + r.lowerBound, r.count)
    }
}

/// dinp += dout * (Phi(x) + x * phi(x)), Phi and phi the standard normal CDF and density; with
/// `overwrite`, dinp = that product (its old contents are not read).
public func geluBackward(dinp: Tensor, dout: Tensor, inp: Tensor, overwrite: Bool = false) {
    dinp.expectSameShape(inp, "geluBackward dinp vs inp"); dout.expectSameShape(inp, "geluBackward dout vs inp")
    Parallel.chunks(inp.count, grain: elementwiseGrain) { r in
        xt_gelu_backward(dinp.data + r.lowerBound, dout.data + r.lowerBound, inp.data + r.lowerBound, r.count, overwrite ? 0 : 1)
    }
}

/// out = x * sigmoid(x).
public func siluForward(out: Tensor, inp: Tensor) {
    out.expectSameShape(inp, "siluForward out vs inp")
    Parallel.chunks(inp.count, grain: elementwiseGrain) { r in
        xt_silu_forward(out.data + r.lowerBound, inp.data + r.lowerBound, r.count)
    }
}

/// dinp += dout * sigmoid(x) * (1 + x * (1 - sigmoid(x))).
public func siluBackward(dinp: Tensor, dout: Tensor, inp: Tensor) {
    dinp.expectSameShape(inp, "siluBackward dinp vs inp"); dout.expectSameShape(inp, "siluBackward dout vs inp")
    Parallel.chunks(inp.count, grain: elementwiseGrain) { r in
        xt_silu_backward(dinp.data + r.lowerBound, dout.data + r.lowerBound, inp.data + r.lowerBound, r.count)
    }
}

/// The gated FFN product of LLaMA's MLP: out (N, F) = silu(gate) * up, all three the same shape.
public func swigluForward(out: Tensor, gate: Tensor, up: Tensor) {
    out.expectSameShape(gate, "swigluForward out vs gate"); up.expectSameShape(gate, "swigluForward up vs gate")
    Parallel.chunks(gate.count, grain: elementwiseGrain) { r in
        xt_swiglu_forward(out.data + r.lowerBound, gate.data + r.lowerBound, up.data + r.lowerBound, r.count)
    }
}

/// dgate += dout * up * silu'(gate), dup += dout * silu(gate); with `overwrite`, = instead of +=.
public func swigluBackward(dgate: Tensor, dup: Tensor, dout: Tensor, gate: Tensor, up: Tensor, overwrite: Bool = false) {
    for (t, name) in [(dgate, "dgate"), (dup, "dup"), (dout, "dout"), (up, "up")] {
        t.expectSameShape(gate, "swigluBackward \(name) vs gate")
    }
    Parallel.chunks(gate.count, grain: elementwiseGrain) { r in
        let i = r.lowerBound
        xt_swiglu_backward(dgate.data + i, dup.data + i, dout.data + i, gate.data + i, up.data + i, r.count, overwrite ? 0 : 1)
    }
}

/// Where a dropout mask comes from. The rows of the masked (rows, columns) tensor are the positions of
/// consecutive sequences `length` rows long, the first of them global sample `firstSample`; element
/// (sample, position, column) draws Philox block (sample << 40 | position << 24 | column / 4) of `stream`.
/// A sequence's mask therefore does not depend on how its batch was padded or split over ranks.
public struct DropoutMask: Sendable, Equatable {
    public let stream: RandomStream
    public let length: Int
    public let firstSample: Int

    public init(_ stream: RandomStream, length: Int = 1, firstSample: Int = 0) {
        precondition(length > 0 && length <= 1 << 16, "DropoutMask: sequence length \(length) outside 1...65536")
        self.stream = stream
        self.length = length
        self.firstSample = firstSample
    }
}

/// Inverted dropout: out = inp * keep / (1 - p), keep = (uniform >= p) drawn as `mask` says, so
/// backward regenerates the same mask instead of storing it. p = 0 copies.
public func dropoutForward(out: Tensor, inp: Tensor, p: Float, mask: DropoutMask) {
    out.expectSameShape(inp, "dropoutForward out vs inp")
    applyDropoutMask(out: out, inp: inp, p: p, mask: mask, accumulate: false)
}

/// dinp += dout * keep / (1 - p) with the forward pass's `mask`.
public func dropoutBackward(dinp: Tensor, dout: Tensor, p: Float, mask: DropoutMask) {
    dinp.expectSameShape(dout, "dropoutBackward dinp vs dout")
    applyDropoutMask(out: dinp, inp: dout, p: p, mask: mask, accumulate: true)
}

private func applyDropoutMask(out: Tensor, inp: Tensor, p: Float, mask: DropoutMask, accumulate: Bool) {
    precondition(p >= 0 && p < 1, "dropout: probability \(p) is outside [0, 1)")
    let scale = 1 / (1 - p), (rows, columns) = (inp.rows, inp.columns)
    precondition(columns < 1 << 26, "dropout: \(columns) columns exceed the mask's counter layout")
    Parallel.chunks(rows, grain: max(1, elementwiseGrain / max(1, columns))) { range in
        for row in range {
            let sample = UInt64(mask.firstSample + row / mask.length), position = UInt64(row % mask.length)
            let x = inp.data + row * columns, y = out.data + row * columns
            for block in 0 ..< (columns + 3) / 4 {
                let words = Philox.block(key: mask.stream.seed, stream: mask.stream.stream, index: sample << 40 | position << 24 | UInt64(block))
                for j in 0 ..< min(4, columns - 4 * block) {
                    let c = 4 * block + j
                    let kept = p == 0 || Philox.unitFloat(words[j]) >= p ? x[c] * scale : 0
                    y[c] = accumulate ? y[c] + kept : kept
                }
            }
        }
    }
}

/// out = a + b, all the same shape.
public func residualForward(out: Tensor, a: Tensor, b: Tensor) {
    out.expectSameShape(a, "residualForward out vs a"); b.expectSameShape(a, "residualForward b vs a")
    Parallel.chunks(a.count, grain: elementwiseGrain) { range in
        for i in range { out.data[i] = a.data[i] + b.data[i] }
    }
}

/// da += dout and db += dout.
public func residualBackward(da: Tensor, db: Tensor, dout: Tensor) {
    accumulate(into: da, dout)
    accumulate(into: db, dout)
}

/// acc += x, the same shape.
public func accumulate(into acc: Tensor, _ x: Tensor) {
    acc.expectSameShape(x, "accumulate acc vs x")
    Parallel.chunks(x.count, grain: elementwiseGrain) { range in
        for i in range { acc.data[i] += x.data[i] }
    }
}

import Foundation

/// Softmax over rows, and cross-entropy over logits fused with its softmax in backward.

/// out (N, C) = softmax of each row of inp (N, C).
public func softmaxForward(out: Tensor, inp: Tensor) {
    out.expectSameShape(inp, "softmaxForward out vs inp")
    let c = inp.columns
    Parallel.chunks(inp.rows, grain: max(1, 8192 / max(c, 1))) { rows in
        for r in rows { softmaxRow(out.data + r * c, inp.data + r * c, c) }
    }
}

/// dinp (N, C) += out * (dout - sum(dout * out)) per row, from the forward output.
public func softmaxBackward(dinp: Tensor, dout: Tensor, out: Tensor) {
    dinp.expectSameShape(out, "softmaxBackward dinp vs out"); dout.expectSameShape(out, "softmaxBackward dout vs out")
    let c = out.columns
    Parallel.chunks(out.rows, grain: max(1, 8192 / max(c, 1))) { rows in
        for r in rows {
            let y = out.data + r * c, dy = dout.data + r * c, dx = dinp.data + r * c
            let dot = rowDot(y, dy, c)
            for j in 0 ..< c { dx[j] += y[j] * (dy[j] - dot) }
        }
    }
}

/// y (c) = softmax(x (c)); y may be x.
@inlinable
func softmaxRow(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ c: Int) {
    let sum = rowExpSum(y, x, c, shift: rowMax(x, c))
    rowScale(y, c, by: 1 / sum)
}

/// The label value whose positions count for nothing (PyTorch's and Hugging Face's -100).
public let ignoreIndex: Int32 = -100

/// losses (N) = logsumexp(logits row) - logits[target] for each row of logits (N, V), 0 where the target
/// is `ignoreIndex`. Returns the mean over the counted rows, weighted by `weights` (N) when given (0 if
/// nothing counts), and the total weight of the counted rows (their number when unweighted).
@discardableResult
public func crossEntropyForward(losses: Tensor, logits: Tensor, targets: [Int32], weights: [Float]? = nil) -> (loss: Float, weight: Double) {
    let n = logits.rows, v = logits.columns
    losses.expect([n], "crossEntropyForward losses")
    precondition(targets.count == n, "crossEntropyForward: \(targets.count) targets for logits \(logits.shape)")
    precondition(weights.map { $0.count == n } ?? true, "crossEntropyForward: \(weights?.count ?? 0) weights for logits \(logits.shape)")
    targets.withUnsafeBufferPointer { targets in
        for (i, t) in targets.enumerated() {
            precondition(t == ignoreIndex || (t >= 0 && Int(t) < v), "crossEntropyForward: target \(t) at row \(i) is outside the vocabulary of \(v)")
        }
        Parallel.chunks(n, grain: max(1, 8192 / max(v, 1))) { rows in
            for r in rows {
                guard targets[r] != ignoreIndex else { losses.data[r] = 0; continue }
                let x = logits.data + r * v
                let m = rowMax(x, v)
                losses.data[r] = (m + log(rowExpSum(x, v, shift: m))) - x[Int(targets[r])]
            }
        }
    }
    var total = 0.0, weight = 0.0
    for r in 0 ..< n where targets[r] != ignoreIndex {
        let w = Double(weights?[r] ?? 1)
        total += w * Double(losses.data[r])
        weight += w
    }
    return (weight == 0 ? 0 : Float(total / weight), weight)
}

/// dlogits (N, V) += scale * weight of the row * (softmax(logits row) - onehot(target)) for counted rows
/// (weight 1 when `weights` is nil); for the weighted mean loss, scale = dloss / total weight.
public func crossEntropyBackward(dlogits: Tensor, logits: Tensor, targets: [Int32], weights: [Float]? = nil, scale: Float) {
    dlogits.expectSameShape(logits, "crossEntropyBackward dlogits vs logits")
    let n = logits.rows, v = logits.columns
    precondition(targets.count == n, "crossEntropyBackward: \(targets.count) targets for logits \(logits.shape)")
    precondition(weights.map { $0.count == n } ?? true, "crossEntropyBackward: \(weights?.count ?? 0) weights for logits \(logits.shape)")
    targets.withUnsafeBufferPointer { targets in
        Parallel.chunks(n, grain: max(1, 8192 / max(v, 1))) { rows in
            for r in rows where targets[r] != ignoreIndex {
                let x = logits.data + r * v, dx = dlogits.data + r * v
                let m = rowMax(x, v), g = scale * (weights?[r] ?? 1)
                rowAddScaledExp(dx, x, v, shift: m, scale: g / rowExpSum(x, v, shift: m))
                dx[Int(targets[r])] -= g
            }
        }
    }
}

/// LayerNorm (ViT, Q-Former) and RMSNorm (decoder), per row of the last dimension.

/// out (N, C) = (inp - mean) * rstd * weight + bias per row; mean (N) and rstd (N) are kept for backward.
public func layerNormForward(out: Tensor, mean: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, eps: Float) {
    let n = inp.rows, c = inp.columns
    out.expectSameShape(inp, "layerNormForward out vs inp")
    weight.expect([c], "layerNormForward weight"); bias.expect([c], "layerNormForward bias")
    precondition(mean.count == n && rstd.count == n, "layerNormForward: mean \(mean.shape) and rstd \(rstd.shape) need \(n) elements for inp \(inp.shape)")
    Parallel.chunks(n, grain: max(1, 8192 / max(c, 1))) { rows in
        for r in rows {
            let x = inp.data + r * c, y = out.data + r * c
            let m = rowSum(x, c) / Float(c)
            let s = 1 / (rowSquaredDeviation(x, shift: m, c) / Float(c) + eps).squareRoot()
            for j in 0 ..< c { y[j] = (x[j] - m) * s * weight.data[j] + bias.data[j] }
            mean.data[r] = m
            rstd.data[r] = s
        }
    }
}

/// Accumulates dinp (N, C), dweight (C) += sum of dout * xhat, dbias (C) += sum of dout; nil ones are skipped.
public func layerNormBackward(dinp: Tensor?, dweight: Tensor?, dbias: Tensor?,
                              dout: Tensor, inp: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor) {
    let n = inp.rows, c = inp.columns
    dout.expectSameShape(inp, "layerNormBackward dout vs inp")
    if let dinp {
        dinp.expectSameShape(inp, "layerNormBackward dinp vs inp")
        Parallel.chunks(n, grain: max(1, 8192 / max(c, 1))) { rows in
            for r in rows {
                let x = inp.data + r * c, dy = dout.data + r * c, dx = dinp.data + r * c
                let m = mean.data[r], s = rstd.data[r]
                // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight.
                let gMean = rowDot(dy, weight.data, c) / Float(c)
                let gxMean = rowDotCentered(dy, weight.data, x, shift: m, c) * s / Float(c)
                for j in 0 ..< c { dx[j] += s * (dy[j] * weight.data[j] - gMean - (x[j] - m) * s * gxMean) }
            }
        }
    }
    if dweight != nil || dbias != nil {
        if let dweight { dweight.expect([c], "layerNormBackward dweight") }
        if let dbias { dbias.expect([c], "layerNormBackward dbias") }
        Parallel.chunks(c, grain: max(16, (1 << 16) / max(1, n))) { cols in
            for r in 0 ..< n {
                let x = inp.data + r * c, dy = dout.data + r * c
                let m = mean.data[r], s = rstd.data[r]
                if let dweight { for j in cols { dweight.data[j] += dy[j] * (x[j] - m) * s } }
                if let dbias { for j in cols { dbias.data[j] += dy[j] } }
            }
        }
    }
}

/// out (N, C) = inp * rstd * weight with rstd = 1 / sqrt(mean(inp^2) + eps) per row, kept in rstd (N).
public func rmsNormForward(out: Tensor, rstd: Tensor, inp: Tensor, weight: Tensor, eps: Float) {
    let n = inp.rows, c = inp.columns
    out.expectSameShape(inp, "rmsNormForward out vs inp")
    weight.expect([c], "rmsNormForward weight")
    precondition(rstd.count == n, "rmsNormForward: rstd \(rstd.shape) needs \(n) elements for inp \(inp.shape)")
    Parallel.chunks(n, grain: max(1, 8192 / max(c, 1))) { rows in
        for r in rows {
            let x = inp.data + r * c, y = out.data + r * c
            let s = 1 / (rowDot(x, x, c) / Float(c) + eps).squareRoot()
            for j in 0 ..< c { y[j] = x[j] * s * weight.data[j] }
            rstd.data[r] = s
        }
    }
}

/// Accumulates dinp (N, C) += rstd * (g - xhat * mean(g * xhat)) with g = dout * weight, and
/// dweight (C) += sum of dout * xhat; nil ones are skipped.
public func rmsNormBackward(dinp: Tensor?, dweight: Tensor?, dout: Tensor, inp: Tensor, weight: Tensor, rstd: Tensor) {
    let n = inp.rows, c = inp.columns
    dout.expectSameShape(inp, "rmsNormBackward dout vs inp")
    if let dinp {
        dinp.expectSameShape(inp, "rmsNormBackward dinp vs inp")
        Parallel.chunks(n, grain: max(1, 8192 / max(c, 1))) { rows in
            for r in rows {
                let x = inp.data + r * c, dy = dout.data + r * c, dx = dinp.data + r * c
                let s = rstd.data[r]
                let gxMean = rowDotCentered(dy, weight.data, x, shift: 0, c) * s / Float(c)
                for j in 0 ..< c { dx[j] += s * (dy[j] * weight.data[j] - x[j] * s * gxMean) }
            }
        }
    }
    if let dweight {
        dweight.expect([c], "rmsNormBackward dweight")
        Parallel.chunks(c, grain: max(16, (1 << 16) / max(1, n))) { cols in
            for r in 0 ..< n {
                let x = inp.data + r * c, dy = dout.data + r * c, s = rstd.data[r]
                for j in cols { dweight.data[j] += dy[j] * x[j] * s }
            }
        }
    }
}

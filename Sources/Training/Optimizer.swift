import Foundation
import Models
import Tensors

/// The learning-rate schedule: linear warmup to the peak over `warmup` steps, then cosine decay to
/// `minimum` at the last step (or constant at the peak).
public struct Schedule: Sendable {
    public let warmup: Int
    public let total: Int
    public let minimum: Double
    public let cosine: Bool

    public init(warmup: Int, total: Int, minimum: Double, cosine: Bool = true) {
        self.warmup = warmup
        self.total = total
        self.minimum = minimum
        self.cosine = cosine
    }

    /// The rate for the update of step `step` (0-based): peak * (step + 1) / warmup during warmup, then
    /// minimum + (peak - minimum) * (1 + cos(pi * p)) / 2 with p = (step - warmup) / (total - warmup - 1).
    public func rate(step: Int, peak: Double) -> Double {
        if step < warmup { return peak * Double(step + 1) / Double(warmup) }
        guard cosine else { return peak }
        let span = max(1, total - warmup - 1)
        let progress = min(1, Double(step - warmup) / Double(span))
        return minimum + (peak - minimum) * 0.5 * (1 + cos(Double.pi * progress))
    }
}

/// AdamW (Loshchilov & Hutter) with PyTorch's update: decoupled decay p -= lr * wd * p (matrices and
/// embeddings only), then m, v moments with bias correction, p -= lr * m_hat / (sqrt(v_hat) + eps).
/// Its moments have the layout of the model's gradient buffer, so the update is one pass over it.
public final class AdamW {
    public let beta1: Double, beta2: Double, eps: Double, weightDecay: Double
    /// First and second moments, laid out like `Parameters.grads`.
    public let m: TensorStorage, v: TensorStorage
    /// Updates taken so far (the bias corrections use step + 1).
    public var step = 0

    public init(parameters: Parameters, beta1: Double, beta2: Double, eps: Double, weightDecay: Double) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        m = TensorStorage(count: parameters.grads.count)
        v = TensorStorage(count: parameters.grads.count)
    }

    /// One update of every trainable parameter; `rates` gives each part's learning rate for this step.
    /// The gradients are read times `gradientScale` (gradient clipping's factor), without a pass of their own.
    public func update(_ parameters: Parameters, rates: [ModelPart: Double], gradientScale: Float = 1) {
        step += 1
        let c1 = Float(1 / (1 - pow(beta1, Double(step)))), c2 = Float(1 / (1 - pow(beta2, Double(step))))
        let (b1, b2, e) = (Float(beta1), Float(beta2), Float(eps))
        for spec in parameters.specs {
            guard let g = spec.gradOffset, let rate = rates[spec.part] else { continue }
            let lr = Float(rate), decay = spec.decays ? Float(1 - rate * weightDecay) : 1
            let p = parameters.values.base + spec.offset, grad = parameters.grads.base + g
            let mp = m.base + g, vp = v.base + g
            Parallel.chunks(spec.count, grain: 1 << 15) { range in
                for i in range {
                    let gi = grad[i] * gradientScale
                    mp[i] = b1 * mp[i] + (1 - b1) * gi
                    vp[i] = b2 * vp[i] + (1 - b2) * gi * gi
                    p[i] = p[i] * decay - lr * (mp[i] * c1) / ((vp[i] * c2).squareRoot() + e)
                }
            }
        }
    }
}

/// The global L2 norm of all gradients (Double partial sums over fixed chunks: deterministic).
public func gradientNorm(_ parameters: Parameters) -> Double {
    let g = parameters.grads
    let chunks = Parallel.partition(g.count, grain: 1 << 16)
    var partial = [Double](repeating: 0, count: chunks.count)
    partial.withUnsafeMutableBufferPointer { out in
        Parallel.indexedChunks(g.count, grain: 1 << 16) { chunk, range in
            var s = 0.0
            for i in range { s += Double(g.base[i]) * Double(g.base[i]) }
            out[chunk] = s
        }
    }
    return partial.reduce(0, +).squareRoot()
}

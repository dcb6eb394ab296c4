import Foundation

/// Rotary position embeddings, half-split ("rotate_half", GPT-NeoX / Hugging Face Llama): within each
/// head, element i pairs with element i + d/2 and the pair turns by position * base^(-2i/d).

/// cos and sin of every (position, frequency) angle, each (maxPositions, headDim / 2).
public struct RotaryTable {
    public let headDim: Int
    public let maxPositions: Int
    public let cos: Tensor
    public let sin: Tensor

    public init(headDim: Int, maxPositions: Int, base: Double = 10_000) {
        precondition(headDim % 2 == 0 && headDim > 0, "RotaryTable: head dimension \(headDim) must be even")
        self.headDim = headDim
        self.maxPositions = maxPositions
        let half = headDim / 2
        cos = Tensor(zeros: [maxPositions, half])
        sin = Tensor(zeros: [maxPositions, half])
        for pos in 0 ..< maxPositions {
            for i in 0 ..< half {
                // Hugging Face rounds the frequency and the angle to Float32 before cos/sin; do the same.
                let frequency = Float(1 / Foundation.pow(base, Double(2 * i) / Double(headDim)))
                let angle = Double(Float(pos) * frequency)
                cos.data[pos * half + i] = Float(Foundation.cos(angle))
                sin.data[pos * half + i] = Float(Foundation.sin(angle))
            }
        }
    }
}

/// Rotates every head of x (B, T, H*d) in place; token t sits at position positionOffset + t.
public func rotaryForward(x: Tensor, heads: Int, table: RotaryTable, positionOffset: Int = 0) {
    rotate(x, heads: heads, table: table, positionOffset: positionOffset, sinSign: 1)
}

/// The backward of `rotaryForward`: turns the gradient dx (B, T, H*d) back by the same angles, in place.
public func rotaryBackward(dx: Tensor, heads: Int, table: RotaryTable, positionOffset: Int = 0) {
    rotate(dx, heads: heads, table: table, positionOffset: positionOffset, sinSign: -1)
}

private func rotate(_ x: Tensor, heads: Int, table: RotaryTable, positionOffset: Int, sinSign: Float) {
    let d = table.headDim, half = d / 2
    precondition(x.rank == 3 && x.shape[2] == heads * d, "rotary: expected (B, T, \(heads) * \(d)), got \(x.shape)")
    let t = x.shape[1]
    precondition(positionOffset >= 0 && positionOffset + t <= table.maxPositions,
                 "rotary: positions \(positionOffset)..<\(positionOffset + t) exceed the table's \(table.maxPositions)")
    Parallel.chunks(x.shape[0] * t, grain: max(1, 4096 / max(1, heads * d))) { rows in
        for row in rows {
            let pos = positionOffset + row % t
            let c = table.cos.data + pos * half, s = table.sin.data + pos * half
            for head in 0 ..< heads {
                let x1 = x.data + row * heads * d + head * d, x2 = x1 + half
                for i in 0 ..< half {
                    let a = x1[i], b = x2[i], sn = sinSign * s[i]
                    x1[i] = a * c[i] - b * sn
                    x2[i] = b * c[i] + a * sn
                }
            }
        }
    }
}

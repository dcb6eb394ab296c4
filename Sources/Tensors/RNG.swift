import Foundation

/// Philox4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3"): a counter-based
/// generator. Block `i` of a stream is a pure function of (key, stream, i), so any element can be
/// regenerated, in any order, on any thread.
public enum Philox {
    /// The four 32-bit words of block `counter` (low 64 bits: `index`, high 64 bits: `stream`) under `key`.
    @inlinable
    public static func block(key: UInt64, stream: UInt64, index: UInt64) -> SIMD4<UInt32> {
        var c0 = UInt32(truncatingIfNeeded: index), c1 = UInt32(truncatingIfNeeded: index >> 32)
        var c2 = UInt32(truncatingIfNeeded: stream), c3 = UInt32(truncatingIfNeeded: stream >> 32)
        var k0 = UInt32(truncatingIfNeeded: key), k1 = UInt32(truncatingIfNeeded: key >> 32)
        for round in 0 ..< 10 {
            if round > 0 {
                k0 &+= 0x9E37_79B9
                k1 &+= 0xBB67_AE85
            }
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
        }
        return SIMD4(c0, c1, c2, c3)
    }

    /// A uniform Float in [0, 1) from the top 24 bits of a word.
    @inlinable
    public static func unitFloat(_ word: UInt32) -> Float {
        Float(word >> 8) * (1.0 / 16_777_216.0)
    }
}

/// A random stream: everything drawn from it is a function of (seed, stream) and the element index.
public struct RandomStream: Sendable, Equatable {
    public let seed: UInt64
    public let stream: UInt64

    public init(seed: UInt64, stream: UInt64) {
        self.seed = seed
        self.stream = stream
    }

    /// The uniform Float in [0, 1) for element `index` of this stream.
    @inlinable
    public func uniform(_ index: Int) -> Float {
        let words = Philox.block(key: seed, stream: stream, index: UInt64(index >> 2))
        return Philox.unitFloat(words[index & 3])
    }
}

/// The training run's random number generator. Its whole state is (seed, next stream), so a checkpoint
/// that saves `state` and restores it continues with exactly the same numbers.
public struct RNG: Sendable {
    public struct State: Codable, Equatable, Sendable {
        public var seed: UInt64
        public var nextStream: UInt64
        public init(seed: UInt64, nextStream: UInt64) {
            self.seed = seed
            self.nextStream = nextStream
        }
    }

    public private(set) var state: State

    public init(seed: UInt64) { state = State(seed: seed, nextStream: 0) }

    public init(state: State) { self.state = state }

    /// A fresh stream; each draw (an initialisation, a dropout mask) takes its own.
    public mutating func nextStream() -> RandomStream {
        defer { state.nextStream &+= 1 }
        return RandomStream(seed: state.seed, stream: state.nextStream)
    }

    /// Fills `tensor` with uniform values in [low, high).
    public mutating func fillUniform(_ tensor: Tensor, low: Float, high: Float) {
        let stream = nextStream()
        let p = tensor.data
        for block in 0 ..< (tensor.count + 3) / 4 {
            let words = Philox.block(key: stream.seed, stream: stream.stream, index: UInt64(block))
            for j in 0 ..< min(4, tensor.count - 4 * block) {
                p[4 * block + j] = low + (high - low) * Philox.unitFloat(words[j])
            }
        }
    }

    /// Fills `tensor` with normal values of the given mean and standard deviation (Box-Muller).
    public mutating func fillNormal(_ tensor: Tensor, mean: Float = 0, std: Float) {
        let stream = nextStream()
        let p = tensor.data
        for block in 0 ..< (tensor.count + 1) / 2 {
            let words = Philox.block(key: stream.seed, stream: stream.stream, index: UInt64(block))
            // Two 32-bit uniforms from four words; u1 in (0, 1] keeps the logarithm finite.
            let u1 = (Double(UInt64(words[0]) << 32 | UInt64(words[1])) + 1) / 18_446_744_073_709_551_616.0
            let u2 = Double(UInt64(words[2]) << 32 | UInt64(words[3])) / 18_446_744_073_709_551_616.0
            let r = (-2 * Foundation.log(u1)).squareRoot()
            p[2 * block] = mean + std * Float(r * cos(2 * Double.pi * u2))
            if 2 * block + 1 < tensor.count { p[2 * block + 1] = mean + std * Float(r * sin(2 * Double.pi * u2)) }
        }
    }
}

import Foundation

/// XXH64 (Yann Collet's xxHash, 64-bit), streaming: the content hash of shards and checkpoints.
public struct XXHash64 {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87, p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let p3: UInt64 = 0x1656_67B1_9E37_79F9, p4: UInt64 = 0x85EB_CA77_C2B2_AE63, p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private var v1, v2, v3, v4: UInt64
    private let seed: UInt64
    private var buffer = [UInt8]()
    private var length: UInt64 = 0

    public init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ Self.p1 &+ Self.p2
        v2 = seed &+ Self.p2
        v3 = seed
        v4 = seed &- Self.p1
        buffer.reserveCapacity(32)
    }

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) static func read64(_ p: UnsafeRawPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        length += UInt64(bytes.count)
        var offset = 0
        if !buffer.isEmpty {
            let take = min(32 - buffer.count, bytes.count)
            buffer.append(contentsOf: UnsafeRawBufferPointer(start: base, count: take))
            offset = take
            guard buffer.count == 32 else { return }
            buffer.withUnsafeBytes { stripe($0.baseAddress!, 0) }
            buffer.removeAll(keepingCapacity: true)
        }
        while offset + 32 <= bytes.count {
            stripe(base, offset)
            offset += 32
        }
        buffer.append(contentsOf: UnsafeRawBufferPointer(start: base + offset, count: bytes.count - offset))
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    @inline(__always) private mutating func stripe(_ p: UnsafeRawPointer, _ offset: Int) {
        v1 = Self.round(v1, Self.read64(p, offset))
        v2 = Self.round(v2, Self.read64(p, offset + 8))
        v3 = Self.round(v3, Self.read64(p, offset + 16))
        v4 = Self.round(v4, Self.read64(p, offset + 24))
    }

    public func finalize() -> UInt64 {
        var h: UInt64
        if length >= 32 {
            h = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
            for v in [v1, v2, v3, v4] { h = (h ^ Self.round(0, v)) &* Self.p1 &+ Self.p4 }
        } else {
            h = seed &+ Self.p5
        }
        h &+= length
        buffer.withUnsafeBytes { raw in
            let p = raw.baseAddress
            var i = 0
            while i + 8 <= raw.count {
                h = Self.rotl(h ^ Self.round(0, Self.read64(p!, i)), 27) &* Self.p1 &+ Self.p4
                i += 8
            }
            if i + 4 <= raw.count {
                h = Self.rotl(h ^ (UInt64(UInt32(littleEndian: p!.loadUnaligned(fromByteOffset: i, as: UInt32.self))) &* Self.p1), 23) &* Self.p2 &+ Self.p3
                i += 4
            }
            while i < raw.count {
                h = Self.rotl(h ^ (UInt64(raw[i]) &* Self.p5), 11) &* Self.p1
                i += 1
            }
        }
        h ^= h >> 33; h &*= Self.p2
        h ^= h >> 29; h &*= Self.p3
        h ^= h >> 32
        return h
    }

    /// The hash of `bytes`, as a 16-digit hex string (the form index files store).
    public static func hex<C: ContiguousBytes>(_ bytes: C) -> String {
        var hasher = XXHash64()
        bytes.withUnsafeBytes { hasher.update($0) }
        return hasher.hexDigest
    }

    public var hexDigest: String {
        let s = String(finalize(), radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}

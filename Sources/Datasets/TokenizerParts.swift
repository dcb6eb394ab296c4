import Foundation

/// Byte strings -> ids, for longest-prefix and every-prefix matching (user-defined symbols, added tokens,
/// unigram pieces). The root's children are a table; deeper edges are hashed.
struct ByteTrie {
    private var rootChildren = [Int32](repeating: -1, count: 256)
    private var children = PairTable()
    /// The id ending at each node, or -1.
    private var values: [Int32] = [-1]

    var isEmpty: Bool { values.count == 1 }

    @inline(__always) private func child(_ node: Int32, _ byte: UInt8) -> Int32 {
        node == 0 ? rootChildren[Int(byte)] : children[UInt64(node) << 8 | UInt64(byte)].map { Int32($0) } ?? -1
    }

    mutating func insert<C: Collection<UInt8>>(_ key: C, _ id: Int32) {
        var node: Int32 = 0
        for b in key {
            var next = child(node, b)
            if next < 0 {
                next = Int32(values.count)
                values.append(-1)
                if node == 0 { rootChildren[Int(b)] = next } else { children[UInt64(node) << 8 | UInt64(b)] = UInt64(next) }
            }
            node = next
        }
        values[Int(node)] = id
    }

    /// Calls `body(length, id)` for every key that is a prefix of `bytes[from...]`, shortest first.
    @inline(__always) func forEachPrefix(_ bytes: UnsafeBufferPointer<UInt8>, from: Int, _ body: (Int, Int32) -> Void) {
        var node: Int32 = 0, i = from
        while i < bytes.count {
            node = child(node, bytes[i])
            if node < 0 { return }
            i += 1
            if values[Int(node)] >= 0 { body(i - from, values[Int(node)]) }
        }
    }

    /// The longest key that is a prefix of `bytes[from...]`: (length, id), or nil.
    @inline(__always) func longestPrefix(_ bytes: UnsafeBufferPointer<UInt8>, from: Int) -> (length: Int, id: Int32)? {
        guard from < bytes.count, rootChildren[Int(bytes[from])] >= 0 else { return nil }
        var best: (Int, Int32)?
        forEachPrefix(bytes, from: from) { best = ($0, $1) }
        return best
    }
}

/// Bytes in the UTF-8 sequence that starts with `lead` (1 for a stray continuation byte).
@inline(__always) func utf8Length(_ lead: UInt8) -> Int {
    lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4
}

/// The byte-fallback piece of `byte`: `<0x00>` ... `<0xFF>`.
func bytePieceName(_ byte: UInt8) -> String { String(format: "<0x%02X>", byte) }

/// The byte a piece `<0xAB>` stands for, or nil.
func bytePieceValue<C: Collection<UInt8>>(_ piece: C) -> UInt8? {
    let p = Array(piece)
    guard p.count == 6, p[0] == 0x3C, p[1] == 0x30, p[2] == 0x78, p[5] == 0x3E else { return nil }
    return UInt8(String(decoding: p[3 ..< 5], as: UTF8.self), radix: 16)
}

/// Byte-pair merging of a sequence of symbols: a heap of candidate pairs (lowest rank first, the
/// leftmost among equal ranks) over a linked list, O(n log n). SentencePiece BPE (ranks from piece
/// scores) and Hugging Face BPE (ranks from the merges list) both run on it.
struct PairMerges {
    struct Symbol {
        var id: Int32
        /// Byte offset of the symbol in the text.
        var start: Int32
        var prev: Int32, next: Int32
        /// Never merges (a user-defined symbol).
        var frozen: Bool
    }

    /// (left id << 32 | right id) -> (rank << 32 | merged id); bit 63 marks a merged piece to be split
    /// again (SentencePiece's unused pieces).
    private(set) var table = PairTable()
    static let resplitFlag: UInt64 = 1 << 63

    var isEmpty: Bool { table.count == 0 }

    @inline(__always) static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    /// Adds a merge; a later merge of the same pair replaces an earlier one.
    mutating func add(_ left: Int32, _ right: Int32, merged: Int32, rank: Int, resplit: Bool = false) {
        table[Self.key(left, right)] = UInt64(rank) << 32 | UInt64(UInt32(merged)) | (resplit ? Self.resplitFlag : 0)
    }

    /// Merges `symbols` (linked in order, 0 first) in place. A removed symbol gets start -1. When a pair
    /// whose merged piece is marked to be split again is queued, `resplit[merged]` records its two halves.
    /// Words up to this many symbols are merged by scanning an array of pair ranks instead of a heap.
    static let scanLimit = 48

    func apply(_ symbols: inout [Symbol], heap: inout PairHeap, resplit: inout [Int32: (Int32, Int32)]) {
        guard symbols.count > 1 else { return }
        /// The merge of `left` and its next symbol as (rank << 32 | merged id), or nil.
        func pair(_ left: Int32) -> UInt64? {
            let l = symbols[Int(left)]
            guard l.next >= 0, !l.frozen else { return nil }
            let r = symbols[Int(l.next)]
            guard !r.frozen, let v = table[Self.key(l.id, r.id)] else { return nil }
            if v & Self.resplitFlag != 0 { resplit[Int32(truncatingIfNeeded: v)] = (l.id, r.id) }
            return v & ~Self.resplitFlag
        }
        func merge(_ left: Int32, into merged: Int32) {
            let l = symbols[Int(left)], right = l.next, r = symbols[Int(right)]
            symbols[Int(left)].id = merged
            symbols[Int(left)].next = r.next
            if r.next >= 0 { symbols[Int(r.next)].prev = left }
            symbols[Int(right)].start = -1
        }
        if symbols.count <= Self.scanLimit {
            // The lowest rank wins; scanning in order keeps the leftmost of equal ranks.
            withUnsafeTemporaryAllocation(of: UInt64.self, capacity: symbols.count) { ranks in
                for i in 0 ..< symbols.count { ranks[i] = pair(Int32(i)) ?? .max }
                while true {
                    var best = UInt64.max, at: Int32 = -1, s: Int32 = 0
                    while s >= 0 {
                        if ranks[Int(s)] >> 32 < best >> 32 { best = ranks[Int(s)]; at = s }
                        s = symbols[Int(s)].next
                    }
                    guard at >= 0 else { return }
                    merge(at, into: Int32(truncatingIfNeeded: best))
                    let previous = symbols[Int(at)].prev
                    if previous >= 0 { ranks[Int(previous)] = pair(previous) ?? .max }
                    ranks[Int(at)] = pair(at) ?? .max
                }
            }
            return
        }
        heap.removeAll()
        func push(_ left: Int32) {
            guard let v = pair(left) else { return }
            heap.push(rank: UInt32(truncatingIfNeeded: v >> 32), position: left, merged: Int32(truncatingIfNeeded: v))
        }
        for i in 0 ..< symbols.count - 1 { push(Int32(i)) }
        while let (left, merged) = heap.pop() {
            let l = symbols[Int(left)]
            guard l.start >= 0, l.next >= 0 else { continue }
            let r = symbols[Int(l.next)]
            guard let v = table[Self.key(l.id, r.id)], Int32(truncatingIfNeeded: v) == merged else { continue }
            merge(left, into: merged)
            if l.prev >= 0 { push(l.prev) }
            push(left)
        }
    }
}

/// A binary min-heap of (rank, position) with the merged id; kept between words to reuse its storage.
struct PairHeap {
    private var keys: [UInt64] = []
    private var merged: [Int32] = []

    mutating func removeAll() {
        keys.removeAll(keepingCapacity: true)
        merged.removeAll(keepingCapacity: true)
    }

    mutating func push(rank: UInt32, position: Int32, merged id: Int32) {
        keys.append(UInt64(rank) << 32 | UInt64(UInt32(position)))
        merged.append(id)
        var i = keys.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard keys[i] < keys[parent] else { break }
            keys.swapAt(i, parent)
            merged.swapAt(i, parent)
            i = parent
        }
    }

    /// The lowest (rank, position): (position, merged id).
    mutating func pop() -> (Int32, Int32)? {
        guard let top = keys.first else { return nil }
        let id = merged[0]
        let lastKey = keys.removeLast(), lastMerged = merged.removeLast()
        if !keys.isEmpty {
            keys[0] = lastKey
            merged[0] = lastMerged
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < keys.count, keys[l] < keys[m] { m = l }
                if r < keys.count, keys[r] < keys[m] { m = r }
                if m == i { break }
                keys.swapAt(i, m)
                merged.swapAt(i, m)
                i = m
            }
        }
        return (Int32(truncatingIfNeeded: top), id)
    }
}

/// An open-addressing hash map UInt64 -> UInt64 (linear probing, multiplicative hash) for the merge
/// table and trie edges, looked up in the inner loops: several times faster than `Dictionary`.
struct PairTable {
    private static let empty = UInt64.max
    private var keys = [UInt64](repeating: PairTable.empty, count: 16)
    private var values = [UInt64](repeating: 0, count: 16)
    private(set) var count = 0

    @inline(__always) private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & (keys.count - 1)
    }

    subscript(key: UInt64) -> UInt64? {
        @inline(__always) get {
            var i = slot(key)
            while true {
                let k = keys[i]
                if k == key { return values[i] }
                if k == Self.empty { return nil }
                i = (i + 1) & (keys.count - 1)
            }
        }
        set {
            precondition(key != Self.empty && newValue != nil, "PairTable: reserved key or removal")
            if 2 * (count + 1) > keys.count { grow() }
            var i = slot(key)
            while keys[i] != Self.empty && keys[i] != key { i = (i + 1) & (keys.count - 1) }
            if keys[i] == Self.empty { count += 1 }
            keys[i] = key
            values[i] = newValue!
        }
    }

    private mutating func grow() {
        let old = zip(keys, values).filter { $0.0 != Self.empty }
        keys = [UInt64](repeating: Self.empty, count: keys.count * 2)
        values = [UInt64](repeating: 0, count: keys.count)
        count = 0
        for (k, v) in old { self[k] = v }
    }
}

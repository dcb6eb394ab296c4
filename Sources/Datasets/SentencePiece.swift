import Foundation

/// A SentencePiece model (a `.model` file: a serialized `ModelProto`), BPE or unigram, that encodes and
/// decodes as the `sentencepiece` library does: normalization (a precompiled charsmap or identity),
/// whitespace as `▁`, `add_dummy_prefix`, user-defined symbols kept whole, control symbols invisible,
/// unknown characters as byte pieces (byte fallback) or one `<unk>` per run.
public final class SentencePieceModel: Sendable {
    enum PieceType: Int { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }
    enum Algorithm { case bpe, unigram }

    let pieces: [[UInt8]]
    let scores: [Float]
    let types: [PieceType]
    let algorithm: Algorithm
    let normalizer: SentencePieceNormalizer
    let unkID: Int32
    /// The trainer's bos/eos/pad ids (-1 when the model has none).
    let bosID: Int32, eosID: Int32, padID: Int32
    /// byte -> id of its `<0xAB>` piece; empty without byte fallback.
    let byteIDs: [Int32]
    let unknownSurface: [UInt8]
    /// Normal, user-defined and unused pieces (what the encoder can produce), then the rest.
    let ids: [[UInt8]: Int32]
    let reservedIDs: [[UInt8]: Int32]
    /// BPE: one-character pieces by their UTF-8 bytes packed in a UInt32, and the merges.
    let charIDs: [UInt32: Int32]
    let asciiIDs: [Int32]
    let merges: PairMerges
    /// No encodable piece has `▁` after another character.
    let wordsMergeAlone: Bool
    /// Unigram: every piece the lattice may use, and the score range of normal pieces.
    let pieceTrie: ByteTrie
    let minScore: Float, maxScore: Float

    public var vocabSize: Int { pieces.count }

    /// Parses a `.model` file.
    public convenience init(contentsOf url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else { throw DataError("\(url.path): cannot read") }
        try self.init([UInt8](data), place: url.path)
    }

    /// Parses a serialized `ModelProto`; `place` names it in errors.
    public init(_ bytes: [UInt8], place: String) throws {
        var pieces: [[UInt8]] = [], scores: [Float] = [], types: [PieceType] = []
        var trainer: [Int: ProtobufReader.Value] = [:], normalizerSpec: [Int: ProtobufReader.Value] = [:]
        var message = ProtobufReader(bytes[...], place: place)
        func fields(_ data: ArraySlice<UInt8>, _ name: String) throws -> [Int: ProtobufReader.Value] {
            var reader = ProtobufReader(data, place: "\(place): \(name)"), out: [Int: ProtobufReader.Value] = [:]
            while let (field, value) = try reader.next() { out[field] = value }
            return out
        }
        while let (field, value) = try message.next() {
            switch field {
            case 1:
                guard let data = value.data else { throw DataError("\(place): pieces[\(pieces.count)] is not a message") }
                let piece = try fields(data, "pieces[\(pieces.count)]")
                guard let text = piece[1]?.data, !text.isEmpty else { throw DataError("\(place): pieces[\(pieces.count)] has no piece text") }
                let rawType = piece[3]?.int ?? PieceType.normal.rawValue
                guard let type = PieceType(rawValue: rawType) else { throw DataError("\(place): pieces[\(pieces.count)] has unknown type \(rawType)") }
                pieces.append(Array(text))
                scores.append(piece[2]?.float ?? 0)
                types.append(type)
            case 2: trainer = try fields(value.data ?? [], "trainer_spec")
            case 3: normalizerSpec = try fields(value.data ?? [], "normalizer_spec")
            case 5:
                let denormalizer = try fields(value.data ?? [], "denormalizer_spec")
                if let map = denormalizer[2]?.data, !map.isEmpty {
                    throw DataError("\(place): a denormalizer_spec with a precompiled charsmap is not supported")
                }
            default: break
            }
        }
        guard !pieces.isEmpty else { throw DataError("\(place): no pieces; not a SentencePiece model") }
        let modelType = trainer[3]?.int ?? 1
        switch modelType {
        case 1: algorithm = .unigram
        case 2: algorithm = .bpe
        default:
            let name = [3: "WORD", 4: "CHAR"][modelType] ?? "\(modelType)"
            throw DataError("\(place): SentencePiece model_type \(name) is not supported (supported: UNIGRAM, BPE)")
        }
        if trainer[24]?.bool == true { throw DataError("\(place): treat_whitespace_as_suffix is not supported") }
        let byteFallback = trainer[35]?.bool ?? false

        var ids: [[UInt8]: Int32] = [:], reserved: [[UInt8]: Int32] = [:], userTrie = ByteTrie(), pieceTrie = ByteTrie()
        var byteIDs = [Int32](repeating: -1, count: 256), charIDs: [UInt32: Int32] = [:], unk: Int32 = -1
        var minScore = Float.greatestFiniteMagnitude, maxScore = Float.leastNormalMagnitude
        for (i, (piece, type)) in zip(pieces, types).enumerated() {
            let id = Int32(i)
            let encodable = type == .normal || type == .userDefined || type == .unused
            guard (encodable ? ids[piece] : reserved[piece]) == nil else {
                throw DataError("\(place): piece '\(String(decoding: piece, as: UTF8.self))' is defined twice")
            }
            if encodable {
                ids[piece] = id
                pieceTrie.insert(piece, id)
                if piece.count == utf8Length(piece[0]), piece.count <= 4 { charIDs[Self.packed(piece[...])] = id }
            } else {
                reserved[piece] = id
            }
            switch type {
            case .userDefined: userTrie.insert(piece, id)
            case .unknown: unk = id
            case .byte:
                guard byteFallback else { throw DataError("\(place): byte piece '\(String(decoding: piece, as: UTF8.self))' but byte_fallback is off") }
                guard let b = bytePieceValue(piece) else { throw DataError("\(place): byte piece '\(String(decoding: piece, as: UTF8.self))' is not <0xHH>") }
                byteIDs[Int(b)] = id
            case .normal:
                minScore = min(minScore, scores[i])
                maxScore = max(maxScore, scores[i])
            default: break
            }
        }
        guard unk >= 0 else { throw DataError("\(place): no unknown piece (<unk>)") }
        if byteFallback, let missing = byteIDs.firstIndex(of: -1) {
            throw DataError("\(place): byte_fallback is on but piece \(bytePieceName(UInt8(missing))) is missing")
        }
        var merges = PairMerges()
        if algorithm == .bpe {
            // Every way two encodable pieces concatenate into a third is a merge, ranked by the third's score.
            let ranks = Dictionary(zip(Set(scores).sorted(by: >), 0...), uniquingKeysWith: { a, _ in a })
            for (piece, id) in ids where piece.count > 1 {
                for cut in 1 ..< piece.count {
                    guard let left = ids[Array(piece[..<cut])], let right = ids[Array(piece[cut...])] else { continue }
                    merges.add(left, right, merged: id, rank: ranks[scores[Int(id)]]!, resplit: types[Int(id)] == .unused)
                }
            }
        }
        self.pieces = pieces
        self.scores = scores
        self.types = types
        self.ids = ids
        self.reservedIDs = reserved
        self.charIDs = charIDs
        asciiIDs = (0 ..< 128).map { charIDs[UInt32($0)] ?? -1 }
        wordsMergeAlone = ids.keys.allSatisfy { piece in
            var k = 0
            while piece[k...].starts(with: Self.space) { k += 3 }
            return !(k ..< piece.count).contains { piece[$0...].starts(with: Self.space) }
        }
        self.merges = merges
        self.pieceTrie = pieceTrie
        self.minScore = minScore
        self.maxScore = maxScore
        self.byteIDs = byteFallback ? byteIDs : []
        unkID = unk
        func specialID(_ field: Int, _ defaultID: Int) -> Int32 {
            let id = trainer[field]?.int ?? defaultID
            return id >= 0 && id < pieces.count ? Int32(id) : -1
        }
        bosID = specialID(41, 1)
        eosID = specialID(42, 2)
        padID = specialID(43, -1)
        unknownSurface = Array(trainer[44]?.data ?? Array(" \u{2047} ".utf8)[...])
        normalizer = try SentencePieceNormalizer(normalizerSpec, userSymbols: userTrie, place: place)
    }

    @inline(__always) static func packed<C: Collection<UInt8>>(_ bytes: C) -> UInt32 {
        bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// The id of a piece (any type), or nil.
    public func id(of piece: String) -> Int32? {
        let bytes = Array(piece.utf8)
        return reservedIDs[bytes] ?? ids[bytes]
    }

    public func encode(_ text: String) -> [Int32] {
        let normalized = normalizer.normalize(Array(text.utf8))
        return normalized.withUnsafeBufferPointer { b in
            let pieces = algorithm == .bpe ? bpe(b) : viterbi(b)
            var out: [Int32] = []
            out.reserveCapacity(pieces.count)
            var previousUnknown = false
            for (i, (id, start)) in pieces.enumerated() {
                let unknown = id == unkID
                if unknown, !byteIDs.isEmpty {
                    let end = i + 1 < pieces.count ? pieces[i + 1].start : b.count
                    for byte in b[start ..< end] { out.append(byteIDs[Int(byte)]) }
                } else if !(unknown && previousUnknown) {
                    out.append(id)
                }
                previousUnknown = unknown
            }
            return out
        }
    }

    /// BPE over the normalized text: (id, byte offset) of each final piece, unknown characters as `<unk>`.
    /// When no piece has a `▁` after another character, no merge crosses the start of a `▁` run that
    /// follows other text, so each such word is merged on its own (the same result, faster).
    private func bpe(_ b: UnsafeBufferPointer<UInt8>) -> [(id: Int32, start: Int)] {
        var out: [(id: Int32, start: Int)] = [], symbols: [PairMerges.Symbol] = []
        var heap = PairHeap(), resplit: [Int32: (Int32, Int32)] = [:]
        out.reserveCapacity(b.count / 2)
        var start = 0
        if wordsMergeAlone {
            var i = 3
            while i + 3 <= b.count {
                if b[i] == 0xE2, b[i + 1] == 0x96, b[i + 2] == 0x81, !(b[i - 3] == 0xE2 && b[i - 2] == 0x96 && b[i - 1] == 0x81) {
                    bpe(b, start ..< i, &symbols, &heap, &resplit, into: &out)
                    start = i
                    i += 3
                } else {
                    i += 1
                }
            }
        }
        bpe(b, start ..< b.count, &symbols, &heap, &resplit, into: &out)
        return out
    }

    private func bpe(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ symbols: inout [PairMerges.Symbol], _ heap: inout PairHeap,
                     _ resplit: inout [Int32: (Int32, Int32)], into out: inout [(id: Int32, start: Int)]) {
        symbols.removeAll(keepingCapacity: true)
        var i = range.lowerBound
        while i < range.upperBound {
            let n = Int32(symbols.count)
            if let (length, id) = normalizer.userSymbols.longestPrefix(UnsafeBufferPointer(rebasing: b[..<range.upperBound]), from: i) {
                symbols.append(.init(id: id, start: Int32(i), prev: n - 1, next: n + 1, frozen: true))
                i += length
            } else {
                let length = min(utf8Length(b[i]), range.upperBound - i)
                let id = b[i] < 0x80 ? asciiIDs[Int(b[i])] : charIDs[Self.packed(b[i ..< i + length])] ?? -1
                symbols.append(.init(id: id, start: Int32(i), prev: n - 1, next: n + 1, frozen: false))
                i += length
            }
        }
        guard !symbols.isEmpty else { return }
        symbols[symbols.count - 1].next = -1
        merges.apply(&symbols, heap: &heap, resplit: &resplit)
        var s: Int32 = 0
        while s >= 0 {
            let symbol = symbols[Int(s)]
            let end = symbol.next >= 0 ? Int(symbols[Int(symbol.next)].start) : range.upperBound
            var id = symbol.id
            if id < 0 { id = reservedIDs[Array(b[Int(symbol.start) ..< end])] ?? unkID }
            var offset = Int(symbol.start)
            func emit(_ id: Int32) {
                if types[Int(id)] == .unused, let (left, right) = resplit[id] {
                    emit(left)
                    emit(right)
                } else {
                    out.append((id, offset))
                    offset += pieces[Int(id)].count
                }
            }
            emit(id)
            s = symbol.next
        }
    }

    /// Unigram: the best-scoring segmentation (Viterbi over every piece that matches at each character);
    /// a character no piece covers is `<unk>`, scored 10 below the lowest piece; user-defined symbols
    /// score above any other segmentation.
    private func viterbi(_ b: UnsafeBufferPointer<UInt8>) -> [(id: Int32, start: Int)] {
        struct Node { var score: Float = 0; var start = -1; var id: Int32 = -1 }
        var best = [Node](repeating: Node(), count: b.count + 1)
        let unknownScore = minScore - 10
        var start = 0
        while start < b.count {
            let here = best[start].score
            let characterLength = min(utf8Length(b[start]), b.count - start)
            var covered = false
            pieceTrie.forEachPrefix(b, from: start) { length, id in
                let type = types[Int(id)]
                if type == .unused { return }
                let end = start + length
                if type == .userDefined {
                    // As the library computes it: (length * max_score - 0.1) in double precision.
                    let candidate = Double(Float(length) * maxScore) - 0.1 + Double(here)
                    if best[end].start < 0 || candidate > Double(best[end].score) { best[end] = Node(score: Float(candidate), start: start, id: id) }
                } else {
                    let candidate = scores[Int(id)] + here
                    if best[end].start < 0 || candidate > best[end].score { best[end] = Node(score: candidate, start: start, id: id) }
                }
                if length == characterLength { covered = true }
            }
            if !covered {
                let candidate = unknownScore + here, end = start + characterLength
                if best[end].start < 0 || candidate > best[end].score { best[end] = Node(score: candidate, start: start, id: unkID) }
            }
            start += characterLength
        }
        var out: [(id: Int32, start: Int)] = []
        var end = b.count
        while end > 0 {
            out.append((best[end].id, best[end].start))
            end = best[end].start
        }
        return out.reversed()
    }

    /// Text of the ids as the library decodes them: control pieces vanish, `<unk>` is the unknown surface
    /// (" ⁇ "), `▁` is a space (the first one dropped when the model adds a dummy prefix), runs of byte
    /// pieces are UTF-8 (each invalid byte one U+FFFD). Ids outside the vocabulary decode as `<unk>`.
    public func decode(_ ids: [Int32]) -> String {
        var text: [UInt8] = [], bytes: [UInt8] = []
        var expectSpace = true, spaceSeen = false
        let stripsFirstSpace = normalizer.addDummyPrefix || normalizer.removeExtraWhitespaces
        for raw in ids {
            let id = raw >= 0 && Int(raw) < pieces.count ? Int(raw) : Int(unkID)
            if types[id] == .byte {
                bytes.append(bytePieceValue(pieces[id]) ?? 0)
                continue
            }
            Self.appendBytes(&bytes, to: &text)
            if spaceSeen || !text.isEmpty { expectSpace = false }
            spaceSeen = false
            switch types[id] {
            case .control: break
            case .unknown: text += unknownSurface
            default:
                var piece = pieces[id][...]
                if expectSpace, stripsFirstSpace, piece.starts(with: Self.space) {
                    piece = piece.dropFirst(3)
                    spaceSeen = !normalizer.removeExtraWhitespaces
                }
                var i = piece.startIndex
                while i < piece.endIndex {
                    if piece[i...].starts(with: Self.space) {
                        text.append(0x20)
                        i += 3
                    } else {
                        text.append(piece[i])
                        i += 1
                    }
                }
            }
        }
        Self.appendBytes(&bytes, to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    static let space: [UInt8] = [0xE2, 0x96, 0x81]

    /// Appends byte pieces as the library does: each valid UTF-8 character as is, each byte of an
    /// invalid sequence as U+FFFD. Empties `bytes`.
    static func appendBytes(_ bytes: inout [UInt8], to text: inout [UInt8]) {
        var i = 0
        while i < bytes.count {
            let n = validUTF8Length(bytes, i)
            if n == 0 {
                text += [0xEF, 0xBF, 0xBD]
                i += 1
            } else {
                text += bytes[i ..< i + n]
                i += n
            }
        }
        bytes.removeAll(keepingCapacity: true)
    }

    /// Length of the well-formed UTF-8 character at `i`, or 0.
    static func validUTF8Length(_ b: [UInt8], _ i: Int) -> Int {
        let lead = b[i]
        if lead < 0x80 { return 1 }
        let n = lead >= 0xC0 && lead < 0xE0 ? 2 : lead >= 0xE0 && lead < 0xF0 ? 3 : lead >= 0xF0 && lead < 0xF8 ? 4 : 0
        guard n > 0, i + n <= b.count, b[i + 1 ..< i + n].allSatisfy({ $0 & 0xC0 == 0x80 }) else { return 0 }
        var scalar = UInt32(lead) & (0xFF >> (n + 1))
        for byte in b[i + 1 ..< i + n] { scalar = scalar << 6 | UInt32(byte & 0x3F) }
        let lowest: UInt32 = [0, 0, 0x80, 0x800, 0x10000][n]
        guard scalar >= lowest, scalar < 0xD800 || (scalar >= 0xE000 && scalar <= 0x10FFFF) else { return 0 }
        return n
    }
}

/// SentencePiece's normalizer: the longest rule of the precompiled charsmap (a Darts double-array trie
/// over UTF-8 and a blob of NUL-terminated replacements) at each position, user-defined symbols left
/// alone, spaces as `▁`, optionally a dummy `▁` prefix and extra whitespace removed.
struct SentencePieceNormalizer {
    let addDummyPrefix: Bool, removeExtraWhitespaces: Bool, escapeWhitespaces: Bool
    let userSymbols: ByteTrie
    private let units: [UInt32]
    private let replacements: [UInt8]

    init(_ spec: [Int: ProtobufReader.Value], userSymbols: ByteTrie, place: String) throws {
        addDummyPrefix = spec[3]?.bool ?? true
        removeExtraWhitespaces = spec[4]?.bool ?? true
        escapeWhitespaces = spec[5]?.bool ?? true
        self.userSymbols = userSymbols
        let map = Array(spec[2]?.data ?? [])
        if map.isEmpty {
            units = []
            replacements = []
        } else {
            guard map.count >= 4 else { throw DataError("\(place): normalizer_spec.precompiled_charsmap is truncated") }
            let trieBytes = Int(UInt32(map[0]) | UInt32(map[1]) << 8 | UInt32(map[2]) << 16 | UInt32(map[3]) << 24)
            guard trieBytes % 4 == 0, trieBytes > 0, 4 + trieBytes <= map.count else {
                throw DataError("\(place): normalizer_spec.precompiled_charsmap has a trie of \(trieBytes) bytes in \(map.count)")
            }
            units = stride(from: 4, to: 4 + trieBytes, by: 4).map { UInt32(map[$0]) | UInt32(map[$0 + 1]) << 8 | UInt32(map[$0 + 2]) << 16 | UInt32(map[$0 + 3]) << 24 }
            replacements = Array(map[(4 + trieBytes)...])
        }
    }

    /// The longest charsmap rule at `from`: (bytes matched, offset of its replacement), or nil.
    private func rule(_ b: UnsafeBufferPointer<UInt8>, from: Int) -> (Int, Int)? {
        guard !units.isEmpty else { return nil }
        @inline(__always) func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }
        var node = offset(units[0]), best: (Int, Int)?
        for i in from ..< b.count {
            node ^= Int(b[i])
            guard node < units.count else { break }
            let unit = units[node]
            guard unit & (1 << 31 | 0xFF) == UInt32(b[i]) else { break }
            node ^= offset(unit)
            if unit >> 8 & 1 == 1, node < units.count { best = (i - from + 1, Int(units[node] & 0x7FFF_FFFF)) }
        }
        return best
    }

    /// What the text at `from` normalizes to, as a range of `b` (when unchanged) or of the replacements,
    /// and the bytes it consumes.
    @inline(__always) private func prefix(_ b: UnsafeBufferPointer<UInt8>, _ from: Int) -> (replaced: Bool, range: Range<Int>, consumed: Int) {
        if let (length, _) = userSymbols.longestPrefix(b, from: from) { return (false, from ..< from + length, length) }
        if let (length, offset) = rule(b, from: from), offset < replacements.count {
            let end = replacements[offset...].firstIndex(of: 0) ?? replacements.count
            return (true, offset ..< end, length)
        }
        let length = min(utf8Length(b[from]), b.count - from)
        return (false, from ..< from + length, length)
    }

    func normalize(_ input: [UInt8]) -> [UInt8] {
        input.withUnsafeBufferPointer { b in
            replacements.withUnsafeBufferPointer { r in
                var i = 0
                if removeExtraWhitespaces {
                    while i < b.count {
                        let p = prefix(b, i)
                        let source = p.replaced ? r : b
                        guard p.range.count == 1, source[p.range.lowerBound] == 0x20 else { break }
                        i += p.consumed
                    }
                }
                guard i < b.count else { return [] }
                var out: [UInt8] = []
                out.reserveCapacity(b.count * 3 / 2 + 3)
                let space: [UInt8] = escapeWhitespaces ? SentencePieceModel.space : [0x20]
                if addDummyPrefix { out += space }
                var previousSpace = removeExtraWhitespaces
                while i < b.count {
                    let p = prefix(b, i)
                    let source = p.replaced ? r : b
                    var start = p.range.lowerBound
                    while previousSpace, start < p.range.upperBound, source[start] == 0x20 { start += 1 }
                    if start < p.range.upperBound {
                        for k in start ..< p.range.upperBound {
                            if source[k] == 0x20 { out += space } else { out.append(source[k]) }
                        }
                        previousSpace = source[p.range.upperBound - 1] == 0x20
                    }
                    i += p.consumed
                    if !removeExtraWhitespaces { previousSpace = false }
                }
                if removeExtraWhitespaces {
                    while out.count >= space.count, Array(out.suffix(space.count)) == space { out.removeLast(space.count) }
                }
                return out
            }
        }
    }
}

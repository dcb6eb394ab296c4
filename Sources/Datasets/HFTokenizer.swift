import Foundation

/// A Hugging Face `tokenizer.json` with a BPE model, encoded and decoded as the `tokenizers` library
/// does, as far as two families need: byte-level BPE (GPT-2 and LLaMA-3: ByteLevel pre-tokenizer,
/// optionally after LLaMA-3's Split regex, ByteLevel decoder) and SentencePiece-style BPE with byte
/// fallback (Prepend/Replace normalizers or a Metaspace pre-tokenizer; Replace, ByteFallback, Fuse,
/// Strip or Metaspace decoders). Added tokens are split off first. Anything else is refused by name.
public final class HFTokenizer: Sendable {
    struct AddedToken {
        let id: Int32
        let content: [UInt8]
        let lstrip: Bool, rstrip: Bool
    }

    enum Normalizer {
        case prepend([UInt8])
        case replace([UInt8], with: [UInt8])
    }

    enum PrependScheme: String { case always, first, never }

    enum PreTokenizer {
        case byteLevel(addPrefixSpace: Bool, regex: Bool)
        case split(SplitPattern)
        case metaspace(replacement: [UInt8], prepend: PrependScheme, split: Bool)
    }

    enum Decoder {
        case byteLevel
        case replace(String, with: String)
        case byteFallback
        case fuse
        case strip(Character, start: Int, stop: Int)
        case metaspace(replacement: Character, prepend: Bool)
    }

    let normalizers: [Normalizer]
    let preTokenizers: [PreTokenizer]
    let decoders: [Decoder]
    /// The model sees byte-level characters (a ByteLevel pre-tokenizer is last).
    let byteLevel: Bool
    let vocab: [[UInt8]: Int32]
    /// With ignore_merges: a word's raw bytes -> its token, when the vocabulary has it whole.
    let wordIDs: [[UInt8]: Int32]
    /// id -> token text (model vocabulary and added tokens); nil for unused ids.
    let tokens: [String?]
    let merges: PairMerges
    /// Single-character tokens by scalar value; byte-level: byte -> id of its character.
    let charIDs: [UInt32: Int32]
    let asciiIDs: [Int32]
    let byteLevelIDs: [Int32]
    /// byte -> id of `<0xAB>` (byte fallback), else empty.
    let byteIDs: [Int32]
    let unkID: Int32?
    let fuseUnknown: Bool, ignoreMerges: Bool
    let added: [AddedToken]
    /// Added tokens matched in the raw text, and those matched after normalization.
    let rawAdded: ByteTrie, normalizedAdded: ByteTrie

    public var vocabSize: Int { tokens.count }

    public convenience init(contentsOf url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else { throw DataError("\(url.path): cannot read") }
        try self.init(data, place: url.path)
    }

    public init(_ data: Data, place: String) throws {
        guard let object = try? JSONSerialization.jsonObject(with: data), let json = object as? [String: Any] else {
            throw DataError("\(place): not a JSON object; not a tokenizer.json")
        }
        func fail(_ path: String, _ what: String) -> DataError { DataError("\(place): \(path): \(what)") }
        guard let model = json["model"] as? [String: Any] else { throw fail("model", "missing") }
        let type = model["type"] as? String ?? "(missing)"
        guard type == "BPE" else { throw fail("model.type", "\(type) is not supported (supported: BPE)") }
        for key in ["dropout", "continuing_subword_prefix", "end_of_word_suffix"] where !(model[key] is NSNull || model[key] == nil) {
            throw fail("model.\(key)", "\(model[key]!) is not supported (only null)")
        }
        guard let vocabJSON = model["vocab"] as? [String: Any] else { throw fail("model.vocab", "must be an object of token: id") }
        var vocab: [[UInt8]: Int32] = [:], tokens: [Int32: String] = [:]
        for (token, value) in vocabJSON {
            guard let id = value as? Int, id >= 0, id < Int(Int32.max) else { throw fail("model.vocab.\(token)", "must be a non-negative id") }
            vocab[Array(token.utf8)] = Int32(id)
            tokens[Int32(id)] = token
        }
        var merges = PairMerges()
        for (rank, merge) in (model["merges"] as? [Any] ?? []).enumerated() {
            let parts: [String]
            if let pair = merge as? [String] { parts = pair } else if let line = merge as? String {
                parts = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else { throw fail("model.merges[\(rank)]", "must be \"a b\" or [\"a\", \"b\"]") }
            guard parts.count == 2, let left = vocab[Array(parts[0].utf8)], let right = vocab[Array(parts[1].utf8)],
                  let merged = vocab[Array((parts[0] + parts[1]).utf8)] else {
                throw fail("model.merges[\(rank)]", "\(parts) is not a pair of tokens whose concatenation is in the vocabulary")
            }
            merges.add(left, right, merged: merged, rank: rank)
        }
        if let unk = model["unk_token"] as? String {
            guard let id = vocab[Array(unk.utf8)] else { throw fail("model.unk_token", "'\(unk)' is not in the vocabulary") }
            unkID = id
        } else {
            unkID = nil
        }
        fuseUnknown = model["fuse_unk"] as? Bool ?? false
        ignoreMerges = model["ignore_merges"] as? Bool ?? false
        var byteIDs = [Int32]()
        if model["byte_fallback"] as? Bool ?? false {
            byteIDs = (0 ... 255).map { vocab[Array(bytePieceName(UInt8($0)).utf8)] ?? -1 }
        }
        self.byteIDs = byteIDs

        var added: [AddedToken] = [], raw = ByteTrie(), normalized = ByteTrie()
        for (i, entry) in (json["added_tokens"] as? [[String: Any]] ?? []).enumerated() {
            guard let id = entry["id"] as? Int, id >= 0, let content = entry["content"] as? String, !content.isEmpty else {
                throw fail("added_tokens[\(i)]", "needs an id and a non-empty content")
            }
            if entry["single_word"] as? Bool ?? false { throw fail("added_tokens[\(i)].single_word", "true is not supported") }
            let token = AddedToken(id: Int32(id), content: Array(content.utf8), lstrip: entry["lstrip"] as? Bool ?? false, rstrip: entry["rstrip"] as? Bool ?? false)
            added.append(token)
            if entry["normalized"] as? Bool ?? false { normalized.insert(token.content, token.id) } else { raw.insert(token.content, token.id) }
            tokens[Int32(id)] = content
        }
        self.added = added
        rawAdded = raw
        normalizedAdded = normalized

        func flattened(_ value: Any?, _ path: String, _ list: String) throws -> [(path: String, object: [String: Any])] {
            guard let value, !(value is NSNull) else { return [] }
            guard let object = value as? [String: Any], let type = object["type"] as? String else { throw fail(path, "must be an object with a type") }
            guard type == "Sequence" else { return [(path, object)] }
            return try (object[list] as? [Any] ?? []).enumerated().flatMap { try flattened($1, "\(path).\(list)[\($0)]", list) }
        }
        func string(_ object: [String: Any], _ key: String, _ path: String) throws -> String {
            guard let s = object[key] as? String else { throw fail("\(path).\(key)", "must be a string") }
            return s
        }
        func pattern(_ object: [String: Any], _ path: String) throws -> String {
            guard let p = object["pattern"] as? [String: Any] else { throw fail("\(path).pattern", "missing") }
            guard let s = p["String"] as? String else { throw fail("\(path).pattern", "\(p.keys.sorted()) is not supported (only String)") }
            return s
        }
        func character(_ s: String, _ path: String) throws -> Character {
            guard s.count == 1 else { throw fail(path, "must be one character") }
            return s.first!
        }
        func prependScheme(_ object: [String: Any], _ path: String) throws -> PrependScheme {
            if let scheme = object["prepend_scheme"] as? String {
                guard let s = PrependScheme(rawValue: scheme) else { throw fail("\(path).prepend_scheme", "'\(scheme)' is not always, first or never") }
                return s
            }
            return object["add_prefix_space"] as? Bool ?? true ? .always : .never
        }

        normalizers = try flattened(json["normalizer"], "normalizer", "normalizers").map { path, n in
            switch n["type"] as! String {
            case "Prepend": return .prepend(Array(try string(n, "prepend", path).utf8))
            case "Replace": return .replace(Array(try pattern(n, path).utf8), with: Array(try string(n, "content", path).utf8))
            case let other: throw fail("\(path).type", "normalizer \(other) is not supported (supported: Prepend, Replace, Sequence)")
            }
        }
        preTokenizers = try flattened(json["pre_tokenizer"], "pre_tokenizer", "pretokenizers").map { path, p in
            switch p["type"] as! String {
            case "ByteLevel": return .byteLevel(addPrefixSpace: p["add_prefix_space"] as? Bool ?? true, regex: p["use_regex"] as? Bool ?? true)
            case "Split":
                guard let regex = (p["pattern"] as? [String: Any])?["Regex"] as? String, let split = SplitPattern(regex) else {
                    throw fail("\(path).pattern", "only the GPT-2 and LLaMA-3 regexes are supported")
                }
                guard p["behavior"] as? String == "Isolated", p["invert"] as? Bool != true else {
                    throw fail(path, "only behavior Isolated without invert is supported")
                }
                return .split(split)
            case "Metaspace":
                let replacement = try string(p, "replacement", path)
                _ = try character(replacement, "\(path).replacement")
                return .metaspace(replacement: Array(replacement.utf8), prepend: try prependScheme(p, path), split: p["split"] as? Bool ?? true)
            case let other: throw fail("\(path).type", "pre-tokenizer \(other) is not supported (supported: ByteLevel, Split, Metaspace, Sequence)")
            }
        }
        decoders = try flattened(json["decoder"], "decoder", "decoders").map { path, d in
            switch d["type"] as! String {
            case "ByteLevel": return .byteLevel
            case "Replace": return .replace(try pattern(d, path), with: try string(d, "content", path))
            case "ByteFallback": return .byteFallback
            case "Fuse": return .fuse
            case "Strip": return .strip(try character(try string(d, "content", path), "\(path).content"), start: d["start"] as? Int ?? 0, stop: d["stop"] as? Int ?? 0)
            case "Metaspace":
                return .metaspace(replacement: try character(try string(d, "replacement", path), "\(path).replacement"), prepend: try prependScheme(d, path) != .never)
            case let other: throw fail("\(path).type", "decoder \(other) is not supported (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence)")
            }
        }
        for (i, p) in preTokenizers.enumerated() {
            if case .byteLevel = p, i != preTokenizers.count - 1 { throw fail("pre_tokenizer", "ByteLevel must come last") }
        }
        if case .byteLevel = preTokenizers.last { byteLevel = true } else { byteLevel = false }

        var charIDs: [UInt32: Int32] = [:]
        for (token, id) in vocab {
            let scalars = String(decoding: token, as: UTF8.self).unicodeScalars
            if scalars.count == 1 { charIDs[scalars.first!.value] = id }
        }
        byteLevelIDs = ByteLevel.characters.map { charIDs[$0.value] ?? -1 }
        self.charIDs = charIDs
        asciiIDs = (0 ..< 128).map { charIDs[UInt32($0)] ?? -1 }
        self.vocab = vocab
        wordIDs = !ignoreMerges ? [:] : !byteLevel ? vocab : Dictionary(vocab.compactMap { token, id in
            ByteLevel.decode(String(decoding: token, as: UTF8.self)).map { ($0, id) } }, uniquingKeysWith: min)
        self.merges = merges
        let size = Int(max(tokens.keys.max() ?? -1, -1)) + 1
        var list = [String?](repeating: nil, count: size)
        for (id, token) in tokens { list[Int(id)] = token }
        self.tokens = list
    }

    /// The id of a token (added or in the vocabulary), or nil.
    public func id(of token: String) -> Int32? {
        let bytes = Array(token.utf8)
        return added.first { $0.content == bytes }?.id ?? vocab[bytes]
    }

    public func encode(_ text: String) -> [Int32] {
        var out: [Int32] = [], scratch = Scratch()
        let bytes = Array(text.utf8)
        bytes.withUnsafeBufferPointer { b in
            for segment in Self.split(b, 0 ..< b.count, by: added, in: rawAdded) {
                switch segment {
                case .token(let id): out.append(id)
                case .text(let range):
                    let normalized = normalize(Array(b[range]))
                    normalized.withUnsafeBufferPointer { n in
                        for part in Self.split(n, 0 ..< n.count, by: added, in: normalizedAdded) {
                            switch part {
                            case .token(let id): out.append(id)
                            case .text(let r): encodeWords(n, r, atStart: range.lowerBound == 0 && r.lowerBound == 0, into: &out, scratch: &scratch)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    enum Segment { case text(Range<Int>), token(Int32) }

    /// Splits at added tokens (leftmost, then longest), widening a match over the whitespace it strips;
    /// empty text segments are dropped.
    static func split(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, by added: [AddedToken], in trie: ByteTrie) -> [Segment] {
        guard !trie.isEmpty else { return range.isEmpty ? [] : [.text(range)] }
        var out: [Segment] = [], start = range.lowerBound, i = start
        while i < range.upperBound {
            guard let (length, id) = trie.longestPrefix(b, from: i) else { i += 1; continue }
            let token = added.first { $0.id == id }!
            var left = i, right = i + length
            if token.lstrip { while left > start, let w = whitespaceBefore(b, left, floor: start) { left = w } }
            if token.rstrip { while right < range.upperBound, let w = whitespaceAfter(b, right) { right = w } }
            if left > start { out.append(.text(start ..< left)) }
            out.append(.token(id))
            start = right
            i = right
        }
        if start < range.upperBound { out.append(.text(start ..< range.upperBound)) }
        return out
    }

    /// Where the whitespace character ending at `end` starts, or nil.
    private static func whitespaceBefore(_ b: UnsafeBufferPointer<UInt8>, _ end: Int, floor: Int) -> Int? {
        var s = end - 1
        while s > floor, b[s] & 0xC0 == 0x80 { s -= 1 }
        return scalar(b, s).value.properties.isWhitespace ? s : nil
    }

    private static func whitespaceAfter(_ b: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        let (c, n) = scalar(b, start)
        return c.properties.isWhitespace ? start + n : nil
    }

    @inline(__always) static func scalar(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> (value: Unicode.Scalar, length: Int) {
        let lead = b[i]
        if lead < 0x80 { return (Unicode.Scalar(lead), 1) }
        let n = min(utf8Length(lead), b.count - i)
        var v = UInt32(lead) & (0xFF >> (n + 1))
        for k in 1 ..< max(n, 1) { v = v << 6 | UInt32(b[i + k] & 0x3F) }
        return (Unicode.Scalar(v) ?? "\u{FFFD}", n)
    }

    private func normalize(_ text: [UInt8]) -> [UInt8] {
        var s = text
        for n in normalizers {
            switch n {
            case .prepend(let p): if !s.isEmpty { s = p + s }
            case .replace(let pattern, let content): s = Self.replacing(s, pattern, content)
            }
        }
        return s
    }

    static func replacing(_ s: [UInt8], _ pattern: [UInt8], _ content: [UInt8]) -> [UInt8] {
        guard !pattern.isEmpty, s.count >= pattern.count else { return s }
        var out: [UInt8] = [], i = 0
        out.reserveCapacity(s.count)
        while i < s.count {
            if s[i] == pattern[0], i + pattern.count <= s.count, s[i ..< i + pattern.count].elementsEqual(pattern) {
                out += content
                i += pattern.count
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }

    /// Storage reused from word to word within one `encode`.
    struct Scratch {
        var symbols: [PairMerges.Symbol] = []
        var heap = PairHeap()
        var resplit: [Int32: (Int32, Int32)] = [:]
    }

    /// Pre-tokenizes `b[range]` and appends the BPE ids of each word. Words are ranges of `buffers`:
    /// the text, and the text a pre-tokenizer rewrote (prefix space, `▁`).
    private func encodeWords(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, atStart: Bool, into out: inout [Int32], scratch: inout Scratch) {
        var buffers = [Array(b[range])]
        var words: [(buffer: Int, range: Range<Int>, atStart: Bool)] = [(0, 0 ..< range.count, atStart)]
        func rewritten(_ bytes: [UInt8]) -> Int {
            buffers.append(bytes)
            return buffers.count - 1
        }
        for p in preTokenizers {
            var next: [(buffer: Int, range: Range<Int>, atStart: Bool)] = []
            for (buffer, r, first) in words {
                switch p {
                case .byteLevel(let addPrefixSpace, let regex):
                    var (k, w) = (buffer, r)
                    if addPrefixSpace, buffers[buffer][r.lowerBound] != 0x20 {
                        k = rewritten([0x20] + buffers[buffer][r])
                        w = 0 ..< r.count + 1
                    }
                    if regex {
                        for (n, piece) in SplitPattern.gpt2.split(buffers[k][w]).enumerated() { next.append((k, piece, first && n == 0)) }
                    } else {
                        next.append((k, w, first))
                    }
                case .split(let pattern):
                    for (n, piece) in pattern.split(buffers[buffer][r]).enumerated() { next.append((buffer, piece, first && n == 0)) }
                case .metaspace(let replacement, let prepend, let split):
                    var w = Self.replacing(Array(buffers[buffer][r]), [0x20], replacement)
                    if prepend == .always || (prepend == .first && first), !w.starts(with: replacement) { w = replacement + w }
                    let k = rewritten(w)
                    if split {
                        var start = 0
                        for i in 1 ..< max(w.count, 1) where w[i...].starts(with: replacement) {
                            next.append((k, start ..< i, first && start == 0))
                            start = i
                        }
                        next.append((k, start ..< w.count, first && start == 0))
                    } else {
                        next.append((k, 0 ..< w.count, first))
                    }
                }
            }
            words = next.filter { !$0.range.isEmpty }
        }
        for (buffer, r, _) in words {
            buffers[buffer].withUnsafeBufferPointer { bpe(UnsafeBufferPointer(rebasing: $0[r]), into: &out, scratch: &scratch) }
        }
    }

    /// BPE of one word: its characters (byte-level characters, or bytes of a character missing from the
    /// vocabulary with byte fallback, or `<unk>`) merged by rank.
    private func bpe(_ b: UnsafeBufferPointer<UInt8>, into out: inout [Int32], scratch: inout Scratch) {
        if ignoreMerges, let id = wordIDs[Array(b)] {
            out.append(id)
            return
        }
        scratch.symbols.removeAll(keepingCapacity: true)
        func add(_ id: Int32, _ start: Int) {
            let n = Int32(scratch.symbols.count)
            scratch.symbols.append(.init(id: id, start: Int32(start), prev: n - 1, next: n + 1, frozen: false))
        }
        var i = 0, previousUnknown = false
        while i < b.count {
            if byteLevel {
                if byteLevelIDs[Int(b[i])] >= 0 { add(byteLevelIDs[Int(b[i])], i) }
                i += 1
                continue
            }
            let (c, n) = Self.scalar(b, i)
            defer { i += n }
            if let id = c.value < 128 ? asciiIDs[Int(c.value)] : charIDs[c.value], id >= 0 {
                add(id, i)
                previousUnknown = false
            } else if !byteIDs.isEmpty, b[i ..< i + n].allSatisfy({ byteIDs[Int($0)] >= 0 }) {
                for k in i ..< i + n { add(byteIDs[Int(b[k])], k) }
                previousUnknown = false
            } else if let unk = unkID {
                if !(fuseUnknown && previousUnknown) { add(unk, i) }
                previousUnknown = true
            }
        }
        guard !scratch.symbols.isEmpty else { return }
        scratch.symbols[scratch.symbols.count - 1].next = -1
        merges.apply(&scratch.symbols, heap: &scratch.heap, resplit: &scratch.resplit)
        var s: Int32 = 0
        while s >= 0 {
            out.append(scratch.symbols[Int(s)].id)
            s = scratch.symbols[Int(s)].next
        }
    }

    /// Text of the ids through the decoder chain, special tokens included; unknown ids are skipped.
    public func decode(_ ids: [Int32]) -> String {
        var parts = ids.compactMap { $0 >= 0 && Int($0) < tokens.count ? tokens[Int($0)] : nil }
        for d in decoders {
            switch d {
            case .byteLevel:
                parts = [String(decoding: parts.flatMap { ByteLevel.decode($0) ?? Array($0.utf8) }, as: UTF8.self)]
            case .replace(let pattern, let content):
                parts = parts.map { $0.replacingOccurrences(of: pattern, with: content) }
            case .byteFallback:
                var out: [String] = [], bytes: [UInt8] = []
                func flush() {
                    guard !bytes.isEmpty else { return }
                    if let s = String(validating: bytes, as: UTF8.self) { out.append(s) } else { out += Array(repeating: "\u{FFFD}", count: bytes.count) }
                    bytes.removeAll()
                }
                for p in parts {
                    if let b = bytePieceValue(Array(p.utf8)) { bytes.append(b) } else { flush(); out.append(p) }
                }
                flush()
                parts = out
            case .fuse:
                parts = [parts.joined()]
            case .strip(let c, let start, let stop):
                parts = parts.map { p in
                    var s = Substring(p)
                    for _ in 0 ..< start where s.first == c { s = s.dropFirst() }
                    for _ in 0 ..< stop where s.last == c { s = s.dropLast() }
                    return String(s)
                }
            case .metaspace(let replacement, let prepend):
                parts = parts.enumerated().map { i, p in
                    String(p.unicodeScalars.compactMap { c -> Character? in
                        Character(c) == replacement ? (i == 0 && prepend ? nil : " ") : Character(c)
                    })
                }
            }
        }
        return parts.joined()
    }
}

/// GPT-2's byte-to-character map: printable bytes stand for themselves, the others for characters from
/// U+0100 on, so every byte string is a printable string.
enum ByteLevel {
    static let characters: [Unicode.Scalar] = {
        var extra: UInt32 = 0
        return (0 ... 255).map { (b: UInt32) -> Unicode.Scalar in
            if (33 ... 126).contains(b) || (161 ... 172).contains(b) || (174 ... 255).contains(b) { return Unicode.Scalar(b)! }
            defer { extra += 1 }
            return Unicode.Scalar(256 + extra)!
        }
    }()

    static let bytes: [UInt32: UInt8] = Dictionary(uniqueKeysWithValues: characters.enumerated().map { ($1.value, UInt8($0)) })

    /// The bytes a byte-level token stands for, or nil when it has another character.
    static func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        for c in token.unicodeScalars {
            guard let b = bytes[c.value] else { return nil }
            out.append(b)
        }
        return out
    }
}

/// The pre-tokenizer regexes of GPT-2 and LLaMA-3, matched by hand over Unicode scalars (letters \p{L},
/// numbers \p{N}, whitespace \s), with the regex engine's leftmost-first alternation and backtracking.
enum SplitPattern {
    case gpt2, llama3

    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(_ regex: String) {
        switch regex {
        case Self.gpt2Regex: self = .gpt2
        case Self.llama3Regex: self = .llama3
        default: return nil
        }
    }

    enum Class: UInt8 { case letter, number, space, other }

    static let asciiClasses: [Class] = (0 ..< 128).map { b in
        let c = Unicode.Scalar(UInt8(b))
        return c.properties.isWhitespace ? .space : c.properties.isAlphabetic ? .letter : (48 ... 57).contains(b) ? .number : .other
    }

    @inline(__always) static func classify(_ c: Unicode.Scalar) -> Class {
        if c.value < 128 { return asciiClasses[Int(c.value)] }
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return c.properties.isWhitespace ? .space : .other
        }
    }

    /// The byte ranges (indices of `text`) of the pieces the regex splits `text` into; it matches every
    /// character.
    func split(_ text: ArraySlice<UInt8>) -> [Range<Int>] {
        var starts: [Int] = [], classes: [Class] = [], values: [UInt32] = []
        starts.reserveCapacity(text.count + 1)
        classes.reserveCapacity(text.count)
        values.reserveCapacity(text.count)
        text.withUnsafeBufferPointer { b in
            var i = 0
            while i < b.count {
                let (c, n) = HFTokenizer.scalar(b, i)
                starts.append(text.startIndex + i)
                classes.append(Self.classify(c))
                values.append(c.value)
                i += n
            }
        }
        starts.append(text.endIndex)
        let n = classes.count
        func run(_ from: Int, _ cls: Class, limit: Int = .max) -> Int {
            var j = from
            while j < n, classes[j] == cls, j - from < limit { j += 1 }
            return j
        }
        func isNewline(_ k: Int) -> Bool { values[k] == 10 || values[k] == 13 }
        func lower(_ k: Int) -> UInt32 { values[k] >= 65 && values[k] <= 90 ? values[k] + 32 : values[k] }
        /// The end of a contraction ('s 't 're 've 'm 'll 'd) at `i`, or nil.
        func contraction(_ i: Int, caseless: Bool) -> Int? {
            guard values[i] == 39, i + 1 < n else { return nil }
            let a = caseless ? lower(i + 1) : values[i + 1]
            if [115, 116, 109, 100].contains(a) { return i + 2 }
            guard i + 2 < n else { return nil }
            let b = caseless ? lower(i + 2) : values[i + 2]
            return (a == 114 && b == 101) || (a == 118 && b == 101) || (a == 108 && b == 108) ? i + 3 : nil
        }
        /// `\s+(?!\S)|\s+` at `i` (a whitespace character).
        func whitespace(_ i: Int) -> Int {
            let j = run(i, .space)
            return j == n || j - i < 2 ? j : j - 1
        }
        var out: [Range<Int>] = []
        var i = 0
        while i < n {
            var end: Int
            switch self {
            case .gpt2:
                if let e = contraction(i, caseless: false) {
                    end = e
                } else if values[i] == 32, i + 1 < n, classes[i + 1] != .space {
                    end = run(i + 1, classes[i + 1])
                } else if classes[i] != .space {
                    end = run(i, classes[i])
                } else {
                    end = whitespace(i)
                }
            case .llama3:
                if let e = contraction(i, caseless: true) {
                    end = e
                } else if classes[i] != .letter, classes[i] != .number, !isNewline(i), i + 1 < n, classes[i + 1] == .letter {
                    end = run(i + 1, .letter)
                } else if classes[i] == .letter {
                    end = run(i, .letter)
                } else if classes[i] == .number {
                    end = run(i, .number, limit: 3)
                } else if classes[i] == .other || (values[i] == 32 && i + 1 < n && classes[i + 1] == .other) {
                    end = run(values[i] == 32 ? i + 1 : i, .other)
                    while end < n, isNewline(end) { end += 1 }
                } else {
                    let j = run(i, .space)
                    if let lastNewline = (i ..< j).last(where: isNewline) { end = lastNewline + 1 } else { end = whitespace(i) }
                }
            }
            out.append(starts[i] ..< starts[end])
            i = end
        }
        return out
    }
}

import Foundation

/// What turns a dataset's text into ids: the byte tokenizer, a SentencePiece `.model` or a Hugging Face
/// `tokenizer.json`, with the ids its template tokens (`SpecialToken`) map to. A dataset stores the file
/// and the map; its identity is the file's XXH64.
public struct Tokenizer: Sendable {
    public enum Model: Sendable {
        case byte(ByteTokenizer)
        case sentencePiece(SentencePieceModel)
        case huggingFace(HFTokenizer)
    }

    public let model: Model
    /// The tokenizer file's bytes (the byte tokenizer's: its canonical JSON).
    public let file: Data
    public let identity: String
    /// Template token -> id.
    public let specials: [SpecialToken: Int32]
    private let specialOf: [Int32: SpecialToken]

    /// The byte tokenizer with its fixed special ids: what the bundled data uses.
    public static let byte: Tokenizer = {
        let byte = ByteTokenizer()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Tokenizer(model: .byte(byte), file: try! encoder.encode(byte), identity: byte.identity,
                         specials: Dictionary(uniqueKeysWithValues: SpecialToken.allCases.map { ($0, $0.rawValue) }))
    }()

    private init(model: Model, file: Data, identity: String, specials: [SpecialToken: Int32]) {
        self.model = model
        self.file = file
        self.identity = identity
        self.specials = specials
        specialOf = Dictionary(specials.map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// "byte", "sentencepiece" or "hf-json": what a dataset index records.
    public var kind: String {
        switch model {
        case .byte: return "byte"
        case .sentencePiece: return "sentencepiece"
        case .huggingFace: return "hf-json"
        }
    }

    /// The name of the copy a dataset keeps.
    public var fileName: String {
        if case .sentencePiece = model { return "tokenizer.model" }
        return "tokenizer.json"
    }

    public var vocabSize: Int { model.vocabSize }

    public func encode(_ text: String) -> [Int32] { model.encode(text) }

    /// The text of `ids` exactly as the tokenizer's reference library decodes them.
    public func decode(_ ids: [Int32]) -> String { model.decode(ids) }

    /// The text of `ids` for people: template tokens spelled as the template does (`<eob>`, `<image>`),
    /// the runs between them decoded.
    public func render(_ ids: [Int32]) -> String {
        var out = "", run: [Int32] = []
        for id in ids {
            if let special = specialOf[id] {
                out += decode(run) + special.text
                run.removeAll()
            } else {
                run.append(id)
            }
        }
        return out + decode(run)
    }

    /// The id of a template token.
    public func id(_ token: SpecialToken) -> Int32 { specials[token]! }

    /// The id of a token given by its text (a piece or added token), or nil.
    public func id(of token: String) -> Int32? { model.id(of: token) }

    /// Loads a SentencePiece `.model` or a Hugging Face `tokenizer.json` and maps the template tokens:
    /// `overrides` (name -> token text or id, e.g. "eou" -> "<TOKEN_103167>") first; else bos, eos and pad
    /// are the model's (a SentencePiece model's trainer ids, or `<s>`, `</s>`, `<pad>`; pad falls back to
    /// eos), and the others are looked up by their template spelling.
    public static func load(_ url: URL, overrides: [String: String] = [:]) throws -> Tokenizer {
        guard let data = FileManager.default.contents(atPath: url.path) else { throw DataError("\(url.path): cannot read the tokenizer") }
        return try load(data, place: url.path, overrides: overrides)
    }

    /// `load(_:overrides:)` on a file's bytes; `place` names it in errors.
    public static func load(_ data: Data, place: String, overrides: [String: String] = [:]) throws -> Tokenizer {
        let model = try Model(data, place: place)
        let names = Set(SpecialToken.allCases.map(\.name))
        if let unknown = overrides.keys.sorted().first(where: { !names.contains($0) }) {
            throw DataError("special token '\(unknown)' is not a template token (expected one of \(SpecialToken.allCases.map(\.name).joined(separator: ", ")))")
        }
        let partial = Tokenizer(model: model, file: data, identity: "", specials: [:])
        var specials: [SpecialToken: Int32] = [:]
        for token in SpecialToken.allCases {
            if let value = overrides[token.name] {
                guard let id = Int32(value).flatMap({ $0 >= 0 && Int($0) < partial.vocabSize ? $0 : nil }) ?? partial.id(of: value) else {
                    throw DataError("\(place): --special \(token.name)=\(value): no such token or id in this tokenizer")
                }
                specials[token] = id
            } else if let id = partial.defaultID(token) {
                specials[token] = id
            }
        }
        let missing = SpecialToken.allCases.filter { specials[$0] == nil && $0 != .pad }
        if specials[.pad] == nil { specials[.pad] = specials[.eos] }
        guard missing.isEmpty else {
            throw DataError("\(place): the template's " + missing.map { "\($0.text) (\($0.name))" }.joined(separator: ", ")
                + " are not tokens of this tokenizer; map each with --special NAME=TOKEN or NAME=ID, e.g. --special \(missing[0].name)=<|endoftext|>")
        }
        return Tokenizer(model: model, file: data, identity: identity(kind: partial.kind, data), specials: specials)
    }

    /// Reloads a dataset's tokenizer from its stored file and special-token map.
    public init(kind: String, file data: Data, specials names: [String: Int32], place: String) throws {
        if kind == "byte" {
            guard let byte = try? JSONDecoder().decode(ByteTokenizer.self, from: data) else { throw DataError("\(place): missing or not a tokenizer") }
            self.init(model: .byte(byte), file: data, identity: byte.identity, specials: Tokenizer.byte.specials)
            return
        }
        guard kind == "sentencepiece" || kind == "hf-json" else {
            throw DataError("\(place): tokenizer kind '\(kind)' is not supported (expected byte, sentencepiece or hf-json)")
        }
        let model = try Model(data, place: place)
        var specials: [SpecialToken: Int32] = [:]
        for token in SpecialToken.allCases {
            guard let id = names[token.name] else { throw DataError("\(place): the index maps no id to the template token \(token.name)") }
            specials[token] = id
        }
        self.init(model: model, file: data, identity: Self.identity(kind: kind, data), specials: specials)
        guard self.kind == kind else { throw DataError("\(place): the index says a \(kind) tokenizer, the file is \(self.kind)") }
    }

    /// The tokenizer as a checkpoint keeps it: its kind, template ids and file (base64 in JSON).
    public struct Stored: Codable, Sendable {
        public var kind: String
        public var identity: String
        public var specials: [String: Int32]
        public var file: Data
    }

    public var stored: Stored {
        Stored(kind: kind, identity: identity, specials: Dictionary(uniqueKeysWithValues: specials.map { ($0.name, $1) }), file: file)
    }

    /// Rebuilds a stored tokenizer; `place` names its holder in errors.
    public init(_ stored: Stored, place: String) throws {
        try self.init(kind: stored.kind, file: stored.file, specials: stored.specials, place: place)
        guard identity == stored.identity else { throw DataError("\(place): the tokenizer's identity \(identity) differs from the recorded \(stored.identity)") }
    }

    private static func identity(kind: String, _ data: Data) -> String { kind + "-" + XXHash64.hex(data) }

    private func defaultID(_ token: SpecialToken) -> Int32? {
        if case .sentencePiece(let sp) = model {
            switch token {
            case .bos where sp.bosID >= 0: return sp.bosID
            case .eos where sp.eosID >= 0: return sp.eosID
            case .pad where sp.padID >= 0: return sp.padID
            default: break
            }
        }
        return id(of: token.text)
    }
}

extension Tokenizer.Model {
    /// A SentencePiece model or a tokenizer.json, told apart by the first byte (a JSON object starts with `{`).
    public init(_ data: Data, place: String) throws {
        if data.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) == UInt8(ascii: "{") {
            self = .huggingFace(try HFTokenizer(data, place: place))
        } else {
            self = .sentencePiece(try SentencePieceModel([UInt8](data), place: place))
        }
    }

    public var vocabSize: Int {
        switch self {
        case .byte(let t): return t.vocabSize
        case .sentencePiece(let t): return t.vocabSize
        case .huggingFace(let t): return t.vocabSize
        }
    }

    public func encode(_ text: String) -> [Int32] {
        switch self {
        case .byte(let t): return t.encode(text)
        case .sentencePiece(let t): return t.encode(text)
        case .huggingFace(let t): return t.encode(text)
        }
    }

    public func decode(_ ids: [Int32]) -> String {
        switch self {
        case .byte(let t): return t.decode(ids)
        case .sentencePiece(let t): return t.decode(ids)
        case .huggingFace(let t): return t.decode(ids)
        }
    }

    public func id(of token: String) -> Int32? {
        switch self {
        case .byte(let t): return t.specials[token]
        case .sentencePiece(let t): return t.id(of: token)
        case .huggingFace(let t): return t.id(of: token)
        }
    }
}

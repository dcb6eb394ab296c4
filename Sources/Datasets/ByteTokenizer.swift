import Foundation

/// The special tokens of the conversation template and of images; the raw values are the byte
/// tokenizer's ids (other tokenizers map them, see `Tokenizer.specials`).
public enum SpecialToken: Int32, CaseIterable, Codable, Sendable {
    case pad = 0, bos = 1, eos = 2, image = 3
    case user = 4, bot = 5, endOfUser = 6, endOfBot = 7

    /// Its name in a dataset index and in `--special NAME=TOKEN`.
    public var name: String {
        switch self {
        case .pad: return "pad"
        case .bos: return "bos"
        case .eos: return "eos"
        case .image: return "image"
        case .user: return "user"
        case .bot: return "bot"
        case .endOfUser: return "eou"
        case .endOfBot: return "eob"
        }
    }

    /// How the token is spelled in the template: `<|User|>: {instruction}<eou>\n<|Bot|>: {answer}<eob>\n`.
    public var text: String {
        switch self {
        case .pad: return "<pad>"
        case .bos: return "<s>"
        case .eos: return "</s>"
        case .image: return "<image>"
        case .user: return "<|User|>"
        case .bot: return "<|Bot|>"
        case .endOfUser: return "<eou>"
        case .endOfBot: return "<eob>"
        }
    }
}

/// A byte-level tokenizer: ids 0...15 are special tokens (8...15 reserved), 16...271 are the UTF-8 bytes.
/// It serves the bundled data; its identity is stored with each dataset and checked against the model.
public struct ByteTokenizer: Codable, Equatable, Sendable {
    public static let byteOffset: Int32 = 16
    public let kind: String
    public let vocabSize: Int
    public let specials: [String: Int32]

    public init() {
        kind = "byte"
        vocabSize = 256 + Int(Self.byteOffset)
        specials = Dictionary(uniqueKeysWithValues: SpecialToken.allCases.map { ($0.text, $0.rawValue) })
    }

    public func encode(_ text: String) -> [Int32] { text.utf8.map { Int32($0) + Self.byteOffset } }

    /// Text of the ids; special tokens are spelled out, invalid UTF-8 is replaced.
    public func decode(_ ids: [Int32]) -> String {
        var out = "", bytes = [UInt8]()
        func flush() {
            out += String(decoding: bytes, as: UTF8.self)
            bytes.removeAll()
        }
        for id in ids {
            if id >= Self.byteOffset, id < Self.byteOffset + 256 {
                bytes.append(UInt8(id - Self.byteOffset))
            } else {
                flush()
                out += SpecialToken(rawValue: id)?.text ?? "<\(id)>"
            }
        }
        flush()
        return out
    }

    /// The identity recorded in a dataset's index: the canonical JSON's XXH64.
    public var identity: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return "byte-" + XXHash64.hex(try! encoder.encode(self))
    }
}

import Foundation

/// A reader of the protobuf wire format: walks a message's fields (number + value) without a schema.
/// Enough for SentencePiece's `ModelProto`; unknown fields are the caller's to skip.
struct ProtobufReader {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }

    private let bytes: ArraySlice<UInt8>
    private var offset: Int
    /// Names the file and message in errors.
    private let place: String

    init(_ bytes: ArraySlice<UInt8>, place: String) {
        self.bytes = bytes
        offset = bytes.startIndex
        self.place = place
    }

    private func fail(_ what: String) -> DataError {
        DataError("\(place): corrupt protobuf: \(what) at byte \(offset - bytes.startIndex)")
    }

    private mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard offset < bytes.endIndex else { throw fail("truncated varint") }
            guard shift < 64 else { throw fail("varint longer than 10 bytes") }
            let b = bytes[offset]
            offset += 1
            value |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return value }
            shift += 7
        }
    }

    private mutating func take(_ n: Int, _ what: String) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.endIndex - offset else { throw fail("\(what) of \(n) bytes runs past the end") }
        defer { offset += n }
        return bytes[offset ..< offset + n]
    }

    /// The next field, or nil at the end of the message.
    mutating func next() throws -> (field: Int, value: Value)? {
        guard offset < bytes.endIndex else { return nil }
        let key = try varint()
        let field = Int(key >> 3)
        guard field > 0 else { throw fail("field number 0") }
        switch key & 7 {
        case 0: return (field, .varint(try varint()))
        case 1: return (field, .fixed64(try take(8, "fixed64").reversed().reduce(0) { $0 << 8 | UInt64($1) }))
        case 2:
            let length = try varint()
            guard length <= UInt64(Int.max) else { throw fail("length \(length)") }
            return (field, .bytes(try take(Int(length), "length-delimited field \(field)")))
        case 5: return (field, .fixed32(try take(4, "fixed32").reversed().reduce(0) { $0 << 8 | UInt32($1) }))
        default: throw fail("wire type \(key & 7) (field \(field)) is not one of 0, 1, 2, 5")
        }
    }
}

extension ProtobufReader.Value {
    var int: Int? { if case .varint(let v) = self { return Int(Int32(truncatingIfNeeded: v)) } else { return nil } }
    var bool: Bool? { if case .varint(let v) = self { return v != 0 } else { return nil } }
    var float: Float? { if case .fixed32(let v) = self { return Float(bitPattern: v) } else { return nil } }
    var data: ArraySlice<UInt8>? { if case .bytes(let b) = self { return b } else { return nil } }
    var string: String? { data.flatMap { String(validating: $0, as: UTF8.self) } }
}

import Foundation

/// A bad dataset, input file or record: the message names the file and the shard, frame, record or line.
public struct DataError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What a record is; it decides nothing in training but is counted and reported.
public enum RecordKind: UInt8, CaseIterable, Codable, Sendable {
    case text = 0, caption = 1, conversation = 2, interleaved = 3

    public var name: String { String(describing: self) }
}

/// An RGB image, 8 bits per channel, rows top to bottom, pixels interleaved (HWC).
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "RGBImage: \(pixels.count) bytes for \(width)x\(height)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// One training example: token ids, which tokens are loss targets, and the images whose placeholder
/// runs (each `queries` image tokens long) start at `imagePositions`.
public struct Record: Equatable, Sendable {
    public var kind: RecordKind
    public var tokens: [Int32]
    /// loss[t]: token t is a target (predicted from the tokens before it).
    public var loss: [Bool]
    public var images: [RGBImage]
    public var imagePositions: [Int]

    public init(kind: RecordKind, tokens: [Int32], loss: [Bool], images: [RGBImage] = [], imagePositions: [Int] = []) {
        self.kind = kind
        self.tokens = tokens
        self.loss = loss
        self.images = images
        self.imagePositions = imagePositions
    }

    /// Binary layout (little-endian): u8 kind, u8 0, u16 images, u32 tokens; the ids (u16 or u32);
    /// the loss bits, ceil(tokens / 8) bytes; u32 placeholder start per image; side*side*3 bytes per image.
    public func encode(into out: inout [UInt8], tokenWidth: Int) {
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        out.append(kind.rawValue)
        out.append(0)
        put(UInt16(images.count))
        put(UInt32(tokens.count))
        for t in tokens { tokenWidth == 2 ? put(UInt16(t)) : put(UInt32(t)) }
        var bits = [UInt8](repeating: 0, count: (tokens.count + 7) / 8)
        for (i, on) in loss.enumerated() where on { bits[i >> 3] |= 1 << (i & 7) }
        out.append(contentsOf: bits)
        for p in imagePositions { put(UInt32(p)) }
        for image in images { out.append(contentsOf: image.pixels) }
    }

    /// Parses one record; `where` names it in errors (e.g. "shard-00001.zst frame 3 record 17").
    public static func decode(_ bytes: UnsafeRawBufferPointer, tokenWidth: Int, imageSide: Int, where place: @autoclosure () -> String) throws -> Record {
        var offset = 0
        func need(_ n: Int) throws {
            if offset + n > bytes.count { throw DataError("\(place()): record truncated (needs \(offset + n) bytes, has \(bytes.count))") }
        }
        func get<T: FixedWidthInteger>(_: T.Type) throws -> T {
            try need(MemoryLayout<T>.size)
            defer { offset += MemoryLayout<T>.size }
            return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        guard let kind = RecordKind(rawValue: try get(UInt8.self)) else { throw DataError("\(place()): unknown record kind \(bytes[0])") }
        _ = try get(UInt8.self)
        let imageCount = Int(try get(UInt16.self)), tokenCount = Int(try get(UInt32.self))
        try need(tokenCount * tokenWidth)
        let tokens = try (0 ..< tokenCount).map { _ in tokenWidth == 2 ? Int32(try get(UInt16.self)) : Int32(bitPattern: try get(UInt32.self)) }
        try need((tokenCount + 7) / 8)
        let loss = (0 ..< tokenCount).map { bytes[offset + ($0 >> 3)] & (1 << ($0 & 7)) != 0 }
        offset += (tokenCount + 7) / 8
        let positions = try (0 ..< imageCount).map { _ in Int(try get(UInt32.self)) }
        let side = imageSide * imageSide * 3
        try need(imageCount * side)
        let images = (0 ..< imageCount).map { i in
            RGBImage(width: imageSide, height: imageSide, pixels: Array(bytes[(offset + i * side) ..< (offset + (i + 1) * side)]))
        }
        offset += imageCount * side
        guard offset == bytes.count else { throw DataError("\(place()): \(bytes.count - offset) bytes after the record's end") }
        return Record(kind: kind, tokens: tokens, loss: loss, images: images, imagePositions: positions)
    }
}

/// Builds a record piece by piece: text, special tokens and images, each a loss target or not.
public struct RecordBuilder {
    public let tokenizer: Tokenizer
    /// Placeholder tokens per image (the model's query count).
    public let queries: Int
    public private(set) var record: Record

    public init(kind: RecordKind, tokenizer: Tokenizer, queries: Int) {
        self.tokenizer = tokenizer
        self.queries = queries
        record = Record(kind: kind, tokens: [], loss: [])
    }

    public mutating func text(_ s: String, loss: Bool) {
        let ids = tokenizer.encode(s)
        record.tokens += ids
        record.loss += [Bool](repeating: loss, count: ids.count)
    }

    public mutating func special(_ token: SpecialToken, loss: Bool) {
        record.tokens.append(tokenizer.id(token))
        record.loss.append(loss)
    }

    /// `queries` image placeholders, never loss targets.
    public mutating func image(_ image: RGBImage) {
        record.imagePositions.append(record.tokens.count)
        record.images.append(image)
        record.tokens += [Int32](repeating: tokenizer.id(.image), count: queries)
        record.loss += [Bool](repeating: false, count: queries)
    }

    /// Several images, numbered as the selection data numbers them: `Image 1: [image]\nImage 2: [image]\n`, no loss.
    public mutating func numberedImages(_ images: [RGBImage]) {
        for (i, image) in images.enumerated() {
            text("Image \(i + 1): ", loss: false)
            self.image(image)
            text("\n", loss: false)
        }
    }

    /// The template up to the answer: `<|User|>: {instruction}<eou>\n<|Bot|>:`, no loss.
    public mutating func prompt(user: String) {
        special(.user, loss: false)
        text(": " + user, loss: false)
        special(.endOfUser, loss: false)
        text("\n", loss: false)
        special(.bot, loss: false)
        text(":", loss: false)
    }

    /// One turn of the conversation template `<|User|>: {instruction}<eou>\n<|Bot|>: {answer}<eob>\n`; the
    /// loss covers the answer and its `<eob>`. The answer is the tail of ": {answer}" encoded whole, after the
    /// colon's own tokens (": blue" -> ":", " blue"), so that its words are the tokens they are in running text.
    public mutating func turn(user: String, bot: String) {
        prompt(user: user)
        let colon = tokenizer.encode(":"), joint = tokenizer.encode(": " + bot)
        let answer = joint.starts(with: colon) ? Array(joint.dropFirst(colon.count)) : tokenizer.encode(" " + bot)
        record.tokens += answer
        record.loss += [Bool](repeating: true, count: answer.count)
        special(.endOfBot, loss: true)
        text("\n", loss: false)
    }
}

import Foundation
import Tensors

/// `index.json`: what a dataset directory holds. Written last, atomically, so a directory with an index
/// is complete.
public struct DatasetIndex: Codable, Equatable, Sendable {
    public struct Shard: Codable, Equatable, Sendable {
        public var file: String
        public var bytes: Int
        public var records: Int
        /// XXH64 of the whole shard file.
        public var xxh64: String
        /// Records in each zstd frame, in order.
        public var frameRecords: [Int]
    }

    public struct TokenizerInfo: Codable, Equatable, Sendable {
        public var kind: String
        public var identity: String
        public var vocabSize: Int
        public var file: String
        /// Template token name (`SpecialToken.name`) -> id; absent in older byte-tokenizer datasets.
        public var specials: [String: Int32]?
    }

    public static let currentVersion = 1
    public var format = "xtrain-shards"
    public var version = DatasetIndex.currentVersion
    public var tokenizer: TokenizerInfo
    /// Bytes per token id: 2 when the vocabulary fits in 16 bits, else 4.
    public var tokenWidth: Int
    /// Images are stored preprocessed, imageSide x imageSide RGB.
    public var imageSide: Int
    /// Placeholder tokens per image: must equal the model's num_query_tokens.
    public var imageQueries: Int
    public var records: Int
    public var kinds: [String: Int]
    public var shards: [Shard]
    /// What generated the records, when a generator did (`shapes selection 1`: the shapes world's selection
    /// task, format 1); `data synth --if-missing` makes a task again when its generator changed.
    public var generator: String?
}

/// Writes a dataset directory. Everything goes to `DIR.partial-PID` first; `finish` writes the index
/// last and renames the directory into place, so a failed run leaves no dataset behind (and never
/// touches an existing one).
public final class DatasetWriter {
    public let directory: URL
    let partial: URL
    let tokenizer: Tokenizer
    let imageSide: Int, imageQueries: Int, tokenWidth: Int
    private let shardBytes: Int, blockBytes: Int
    private var shard: ShardWriter?
    private var shards: [DatasetIndex.Shard] = []
    private var kinds: [String: Int] = [:]
    private var finished = false
    let generator: String?

    public init(directory: URL, tokenizer: Tokenizer, imageSide: Int = 224, imageQueries: Int, shardBytes: Int = 64 << 20, blockBytes: Int = 1 << 20,
                generator: String? = nil) throws {
        self.directory = directory
        self.generator = generator
        self.tokenizer = tokenizer
        self.imageSide = imageSide
        self.imageQueries = imageQueries
        self.shardBytes = shardBytes
        self.blockBytes = blockBytes
        tokenWidth = tokenizer.vocabSize <= 65536 ? 2 : 4
        if FileManager.default.fileExists(atPath: directory.path) {
            throw DataError("\(directory.path): already exists; remove it or choose another --out")
        }
        partial = directory.deletingLastPathComponent().appendingPathComponent(directory.lastPathComponent + ".partial-\(getpid())")
        try? FileManager.default.removeItem(at: partial)
        do { try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: true) } catch {
            throw DataError("\(partial.path): cannot create (\(error.localizedDescription))")
        }
    }

    deinit {
        if !finished { try? FileManager.default.removeItem(at: partial) }
    }

    public func add(_ record: Record) throws {
        precondition(record.images.allSatisfy { $0.width == imageSide && $0.height == imageSide }, "DatasetWriter: images must be \(imageSide)x\(imageSide)")
        if shard == nil {
            shard = try ShardWriter(url: partial.appendingPathComponent(String(format: "shard-%05d.zst", shards.count)), blockBytes: blockBytes)
        }
        var bytes: [UInt8] = []
        record.encode(into: &bytes, tokenWidth: tokenWidth)
        try shard!.add(bytes)
        kinds[record.kind.name, default: 0] += 1
        if shard!.bytesWritten >= shardBytes { try closeShard() }
    }

    private func closeShard() throws {
        guard let s = shard else { return }
        shard = nil
        let hash = try s.finish()
        shards.append(.init(file: s.url.lastPathComponent, bytes: s.bytesWritten, records: s.frameRecords.reduce(0, +), xxh64: hash, frameRecords: s.frameRecords))
    }

    /// Closes the last shard, writes a copy of the tokenizer file and index.json, and moves the directory into place.
    @discardableResult
    public func finish() throws -> DatasetIndex {
        try closeShard()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try tokenizer.file.write(to: partial.appendingPathComponent(tokenizer.fileName))
        let specials = Dictionary(uniqueKeysWithValues: tokenizer.specials.map { ($0.name, $1) })
        let index = DatasetIndex(tokenizer: .init(kind: tokenizer.kind, identity: tokenizer.identity, vocabSize: tokenizer.vocabSize, file: tokenizer.fileName, specials: specials),
                                 tokenWidth: tokenWidth, imageSide: imageSide, imageQueries: imageQueries,
                                 records: shards.reduce(0) { $0 + $1.records }, kinds: kinds, shards: shards, generator: generator)
        let url = partial.appendingPathComponent("index.json")
        let temporary = partial.appendingPathComponent(".index.json.tmp")
        try encoder.encode(index).write(to: temporary)
        guard rename(temporary.path, url.path) == 0, rename(partial.path, directory.path) == 0 else {
            throw DataError("\(directory.path): cannot move the finished dataset into place (\(String(cString: strerror(errno))))")
        }
        finished = true
        return index
    }
}

/// A dataset directory opened for reading: records by global index, frames cached one per shard.
public final class Dataset {
    public let directory: URL
    public let index: DatasetIndex
    public let tokenizer: Tokenizer
    private var readers: [ShardReader?]
    private let shardStarts: [Int]
    private let frameStarts: [[Int]]
    private var cache: [(frame: Int, block: [UInt8], records: [Range<Int>])?]

    public init(_ directory: URL) throws {
        self.directory = directory
        let url = directory.appendingPathComponent("index.json")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw DataError("\(url.path): missing; not a dataset directory (or an unfinished one)")
        }
        do { index = try JSONDecoder().decode(DatasetIndex.self, from: data) } catch let error as DecodingError {
            throw DataError("\(url.path): \(error.jsonPathDescription())")
        }
        guard index.format == "xtrain-shards", index.version == DatasetIndex.currentVersion else {
            throw DataError("\(url.path): format '\(index.format)' version \(index.version) is not supported (expected xtrain-shards version \(DatasetIndex.currentVersion))")
        }
        let tokenizerURL = directory.appendingPathComponent(index.tokenizer.file)
        guard let tokenizerData = FileManager.default.contents(atPath: tokenizerURL.path) else {
            throw DataError("\(tokenizerURL.path): missing or not a tokenizer")
        }
        let specials = index.tokenizer.specials ?? Dictionary(uniqueKeysWithValues: SpecialToken.allCases.map { ($0.name, $0.rawValue) })
        let tokenizer = try Tokenizer(kind: index.tokenizer.kind, file: tokenizerData, specials: specials, place: tokenizerURL.path)
        guard tokenizer.identity == index.tokenizer.identity else {
            throw DataError("\(tokenizerURL.path): identity \(tokenizer.identity) differs from the index's \(index.tokenizer.identity)")
        }
        self.tokenizer = tokenizer
        var starts: [Int] = [], total = 0
        for (i, shard) in index.shards.enumerated() {
            let path = directory.appendingPathComponent(shard.file).path
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
            guard let size else { throw DataError("\(path): shard \(i) is missing") }
            guard size == shard.bytes else { throw DataError("\(path): \(size) bytes, the index says \(shard.bytes) (truncated or replaced)") }
            guard shard.frameRecords.reduce(0, +) == shard.records else { throw DataError("\(url.path): shards[\(i)].frameRecords do not add up to its records") }
            starts.append(total)
            total += shard.records
        }
        guard total == index.records else { throw DataError("\(url.path): records \(index.records) differ from the shards' sum \(total)") }
        shardStarts = starts
        frameStarts = index.shards.map { shard in shard.frameRecords.reduce(into: [0]) { $0.append($0.last! + $1) } }
        readers = Array(repeating: nil, count: index.shards.count)
        cache = Array(repeating: nil, count: index.shards.count)
    }

    public var count: Int { index.records }

    /// Whether `other` was tokenized by the same tokenizer, with the same template ids.
    public func sharesTokenizer(with other: Dataset) -> Bool {
        tokenizer.identity == other.tokenizer.identity && tokenizer.specials == other.tokenizer.specials
    }

    /// Throws unless the data fits a model with this vocabulary and image placeholder count.
    public func checkCompatible(vocabSize: Int, imageQueries: Int, imageTokenIndex: Int) throws {
        let url = directory.appendingPathComponent("index.json").path
        guard index.tokenizer.vocabSize <= vocabSize else {
            throw DataError("\(url): tokenizer \(index.tokenizer.identity) has \(index.tokenizer.vocabSize) tokens, more than the model's vocab_size \(vocabSize)")
        }
        guard index.imageQueries == imageQueries else {
            throw DataError("\(url): imageQueries is \(index.imageQueries) but the model has num_query_tokens \(imageQueries); prepare the data with --queries \(imageQueries)")
        }
        guard imageTokenIndex == Int(tokenizer.id(.image)) else {
            throw DataError("\(url): the tokenizer's image placeholder is id \(tokenizer.id(.image)) but the model's image_token_index is \(imageTokenIndex)")
        }
    }

    private func reader(_ shard: Int) throws -> ShardReader {
        if let r = readers[shard] { return r }
        let r = try ShardReader(url: directory.appendingPathComponent(index.shards[shard].file))
        guard r.frameCount == index.shards[shard].frameRecords.count else {
            throw DataError("\(r.url.path): \(r.frameCount) frames, the index says \(index.shards[shard].frameRecords.count)")
        }
        readers[shard] = r
        return r
    }

    /// Record `i` of the dataset (0 ..< count). Not thread-safe: one reader thread per `Dataset`.
    /// The last decompressed frame of each shard is kept, and only the wanted record is decoded.
    public func record(_ i: Int) throws -> Record {
        precondition(i >= 0 && i < count, "Dataset.record: \(i) outside 0..<\(count)")
        var shard = 0
        while shard + 1 < shardStarts.count, shardStarts[shard + 1] <= i { shard += 1 }
        let local = i - shardStarts[shard]
        let starts = frameStarts[shard]
        var lo = 0, hi = starts.count - 1
        while hi - lo > 1 { let mid = (lo + hi) / 2; if starts[mid] <= local { lo = mid } else { hi = mid } }
        if cache[shard]?.frame != lo {
            let (block, records) = try frame(shard, lo)
            cache[shard] = (lo, block, records)
        }
        let (_, block, records) = cache[shard]!
        return try decode(block, records[local - starts[lo]], shard: shard, frame: lo, record: local - starts[lo])
    }

    /// Frame `frame` of shard `shard`, decompressed, with its records' byte ranges; its record count
    /// checked against the index.
    private func frame(_ shard: Int, _ frame: Int) throws -> (block: [UInt8], records: [Range<Int>]) {
        let r = try reader(shard)
        let block = try r.block(frame)
        let records = try r.recordRanges(block, frame: frame)
        let expected = index.shards[shard].frameRecords[frame]
        guard records.count == expected else {
            throw DataError("\(r.url.path): frame \(frame) holds \(records.count) records, the index says \(expected)")
        }
        return (block, records)
    }

    private func decode(_ block: [UInt8], _ range: Range<Int>, shard: Int, frame: Int, record: Int) throws -> Record {
        try block.withUnsafeBytes { raw in
            try Record.decode(UnsafeRawBufferPointer(rebasing: raw[range]), tokenWidth: index.tokenWidth, imageSide: index.imageSide,
                              where: "\(directory.appendingPathComponent(index.shards[shard].file).path) frame \(frame) record \(record)")
        }
    }

    /// Decompresses every frame once on the calling thread; returns the decompressed bytes.
    public func decompressAll() throws -> Int {
        var bytes = 0
        for i in index.shards.indices {
            let r = try reader(i)
            for frame in 0 ..< r.frameCount { bytes += try r.block(frame).count }
        }
        return bytes
    }

    /// Checks every shard's hash, every frame's checksum and every record; `progress` gets records done.
    public func verify(progress: (Int) -> Void = { _ in }) throws {
        var done = 0
        for (i, shard) in index.shards.enumerated() {
            let r = try reader(i)
            let hash = r.contentHash()
            guard hash == shard.xxh64 else {
                throw DataError("\(r.url.path): content hash \(hash) differs from the index's \(shard.xxh64) (shard \(i) is corrupt)")
            }
            for f in 0 ..< r.frameCount {
                let (block, ranges) = try frame(i, f)
                for (n, range) in ranges.enumerated() {
                    let record = try decode(block, range, shard: i, frame: f, record: n)
                    if let bad = record.tokens.firstIndex(where: { $0 < 0 || Int($0) >= index.tokenizer.vocabSize }) {
                        throw DataError("\(r.url.path): frame \(f) record \(n): token \(record.tokens[bad]) outside the vocabulary of \(index.tokenizer.vocabSize)")
                    }
                    for p in record.imagePositions where p + index.imageQueries > record.tokens.count {
                        throw DataError("\(r.url.path): frame \(f) record \(n): image placeholders at \(p) run past the \(record.tokens.count) tokens")
                    }
                }
                done += ranges.count
                progress(done)
            }
        }
    }
}


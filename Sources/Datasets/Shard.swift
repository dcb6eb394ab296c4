import CZstd
import Foundation

/// A shard: independent zstd frames (content checksums on), each a block of length-prefixed records,
/// then the zstd seekable-format seek table in a final skippable frame. `zstd -t` and `zstd -d` accept
/// it; a reader jumps to any frame from the seek table without decompressing the others.
enum SeekTable {
    static let skippableMagic: UInt32 = 0x184D_2A5E
    static let seekableMagic: UInt32 = 0x8F92_EAB1
    static let footerSize = 9
}

/// Writes one shard file; `finish` flushes the last block and appends the seek table.
final class ShardWriter {
    let url: URL
    private let handle: FileHandle
    private let context: OpaquePointer
    private let blockBytes: Int
    private var block: [UInt8] = []
    private var blockRecords = 0
    private var frames: [(compressed: UInt32, decompressed: UInt32)] = []
    private(set) var frameRecords: [Int] = []
    private var hasher = XXHash64()
    private(set) var bytesWritten = 0

    init(url: URL, blockBytes: Int, level: Int32 = 3) throws {
        guard FileManager.default.createFile(atPath: url.path, contents: nil), let handle = FileHandle(forWritingAtPath: url.path) else {
            throw DataError("\(url.path): cannot create shard")
        }
        self.url = url
        self.handle = handle
        self.blockBytes = blockBytes
        context = ZSTD_createCCtx()
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
    }

    deinit { ZSTD_freeCCtx(context) }

    var records: Int { frameRecords.reduce(0, +) + blockRecords }

    func add(_ encoded: [UInt8]) throws {
        withUnsafeBytes(of: UInt32(encoded.count).littleEndian) { block.append(contentsOf: $0) }
        block.append(contentsOf: encoded)
        blockRecords += 1
        if block.count >= blockBytes { try flushBlock() }
    }

    private func flushBlock() throws {
        guard blockRecords > 0 else { return }
        var out = [UInt8](repeating: 0, count: ZSTD_compressBound(block.count))
        let size = out.withUnsafeMutableBytes { dst in block.withUnsafeBytes { src in
            ZSTD_compress2(context, dst.baseAddress, dst.count, src.baseAddress, src.count)
        } }
        guard ZSTD_isError(size) == 0 else { throw DataError("\(url.path): zstd: \(String(cString: ZSTD_getErrorName(size)))") }
        try write(Array(out[0 ..< size]))
        frames.append((UInt32(size), UInt32(block.count)))
        frameRecords.append(blockRecords)
        block.removeAll(keepingCapacity: true)
        blockRecords = 0
    }

    private func write(_ bytes: [UInt8]) throws {
        try handle.write(contentsOf: bytes)
        bytes.withUnsafeBytes { hasher.update($0) }
        bytesWritten += bytes.count
    }

    /// Writes the last block and the seek table, flushes to disk and closes; returns the file's XXH64.
    func finish() throws -> String {
        try flushBlock()
        var table: [UInt8] = []
        func put(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { table.append(contentsOf: $0) } }
        put(SeekTable.skippableMagic)
        put(UInt32(frames.count * 8 + SeekTable.footerSize))
        for f in frames { put(f.compressed); put(f.decompressed) }
        put(UInt32(frames.count))
        table.append(0)  // descriptor: no per-frame checksums in the table (each frame carries its own)
        put(SeekTable.seekableMagic)
        try write(table)
        try handle.synchronize()
        try handle.close()
        return hasher.hexDigest
    }
}

/// Reads frames of a shard through its seek table; every frame's zstd checksum is verified on read.
final class ShardReader {
    let url: URL
    let name: String
    private let data: Data
    private let frameOffsets: [Int]
    private let frameSizes: [(compressed: Int, decompressed: Int)]
    private let context: OpaquePointer

    init(url: URL) throws {
        self.url = url
        name = url.lastPathComponent
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw DataError("\(url.path): cannot read shard (\(error.localizedDescription))")
        }
        self.data = data
        func u32(_ offset: Int) -> UInt32 {
            data.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
        }
        let path = url.path
        guard data.count >= SeekTable.footerSize + 8, u32(data.count - 4) == SeekTable.seekableMagic else {
            throw DataError("\(path): no seek table at the end (truncated or not an xtrain shard)")
        }
        let frames = Int(u32(data.count - 9))
        let tableStart = data.count - SeekTable.footerSize - frames * 8 - 8
        guard tableStart >= 0, u32(tableStart) == SeekTable.skippableMagic, Int(u32(tableStart + 4)) == frames * 8 + SeekTable.footerSize else {
            throw DataError("\(path): corrupt seek table (\(frames) frames do not fit the file)")
        }
        var offsets: [Int] = [], sizes: [(Int, Int)] = [], offset = 0
        for i in 0 ..< frames {
            offsets.append(offset)
            let entry = tableStart + 8 + i * 8
            sizes.append((Int(u32(entry)), Int(u32(entry + 4))))
            offset += Int(u32(entry))
        }
        guard offset == tableStart else {
            throw DataError("\(path): the seek table's frames cover \(offset) bytes but the data is \(tableStart) bytes (truncated or corrupt)")
        }
        frameOffsets = offsets
        frameSizes = sizes
        context = ZSTD_createDCtx()
    }

    deinit { ZSTD_freeDCtx(context) }

    var frameCount: Int { frameOffsets.count }

    /// The decompressed block of frame `index`, its checksum verified.
    func block(_ index: Int) throws -> [UInt8] {
        let (compressed, decompressed) = frameSizes[index]
        var out = [UInt8](repeating: 0, count: decompressed)
        let result = out.withUnsafeMutableBytes { dst in data.withUnsafeBytes { src in
            ZSTD_decompressDCtx(context, dst.baseAddress, dst.count, src.baseAddress! + frameOffsets[index], compressed)
        } }
        guard ZSTD_isError(result) == 0 else {
            throw DataError("\(url.path): frame \(index): \(String(cString: ZSTD_getErrorName(result)))")
        }
        guard result == decompressed else {
            throw DataError("\(url.path): frame \(index): decompressed to \(result) bytes, the seek table says \(decompressed)")
        }
        return out
    }

    /// The byte ranges of the length-prefixed records in `block`, the decompressed frame `index`.
    func recordRanges(_ block: [UInt8], frame index: Int) throws -> [Range<Int>] {
        try block.withUnsafeBytes { raw in
            var ranges: [Range<Int>] = [], offset = 0
            while offset < raw.count {
                guard offset + 4 <= raw.count else { throw DataError("\(url.path): frame \(index): truncated record length") }
                let length = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                guard offset + 4 + length <= raw.count else {
                    throw DataError("\(url.path): frame \(index) record \(ranges.count): length \(length) overruns the block")
                }
                ranges.append((offset + 4) ..< (offset + 4 + length))
                offset += 4 + length
            }
            return ranges
        }
    }

    /// XXH64 of the whole file.
    func contentHash() -> String { XXHash64.hex(data) }
}

import Foundation
import Tensors

/// The safetensors format: an 8-byte little-endian header length, a JSON header
/// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the raw
/// little-endian tensor bytes, offsets counted from the end of the header.
public final class SafetensorsFile {
    public struct Entry: Sendable {
        public let dtype: String
        public let shape: [Int]
        public let begin: Int
        public let end: Int
    }

    public let url: URL
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    /// Maps the file and parses its header; errors name the file and what is malformed.
    public init(_ url: URL) throws {
        self.url = url
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw ModelError("\(url.path): cannot read (\(error.localizedDescription))")
        }
        guard data.count >= 8 else { throw ModelError("\(url.path): too short for a safetensors header") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw ModelError("\(url.path): header length \(headerLength) exceeds the file size \(data.count)")
        }
        dataStart = 8 + Int(headerLength)
        guard let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8 ..< dataStart)) as? [String: Any] else {
            throw ModelError("\(url.path): the header is not a JSON object")
        }
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = value as? [String: String] ?? [:]
                continue
            }
            guard let fields = value as? [String: Any], let dtype = fields["dtype"] as? String,
                  let shape = fields["shape"] as? [Int], let offsets = fields["data_offsets"] as? [Int], offsets.count == 2 else {
                throw ModelError("\(url.path): tensor '\(name)' has a malformed header entry")
            }
            guard let width = SafetensorsFile.byteWidth[dtype] else {
                throw ModelError("\(url.path): tensor '\(name)' has unsupported dtype \(dtype) (supported: F32, F16, BF16, I64, I32)")
            }
            let entry = Entry(dtype: dtype, shape: shape, begin: offsets[0], end: offsets[1])
            guard entry.begin >= 0, entry.end - entry.begin == shape.reduce(1, *) * width, dataStart + entry.end <= data.count else {
                throw ModelError("\(url.path): tensor '\(name)' \(dtype) \(shape) has data offsets \(offsets) that do not fit its size or the file")
            }
            entries[name] = entry
        }
        self.entries = entries
        self.metadata = metadata
    }

    static let byteWidth = ["F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4]

    public var names: [String] { entries.keys.sorted() }

    /// Copies tensor `name` into `destination` as Float32, converting F16 and BF16; the shapes must match.
    public func read(_ name: String, into destination: Tensor) throws {
        guard let entry = entries[name] else { throw ModelError("\(url.path): tensor '\(name)' is missing") }
        guard entry.shape == destination.shape else {
            throw ModelError("\(url.path): tensor '\(name)' has shape \(entry.shape), expected \(destination.shape)")
        }
        let out = destination.data
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let base = raw.baseAddress! + dataStart + entry.begin
            let count = destination.count
            switch entry.dtype {
            case "F32":
                for i in 0 ..< count { out[i] = Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case "BF16":
                for i in 0 ..< count { out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
            case "F16":
                for i in 0 ..< count { out[i] = halfToFloat(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case "I64":
                for i in 0 ..< count { out[i] = Float(Int64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
            default:
                for i in 0 ..< count { out[i] = Float(Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
            }
        }
    }

    /// Tensor `name` as a new Float32 tensor of its stored shape.
    public func tensor(_ name: String) throws -> Tensor {
        guard let entry = entries[name] else { throw ModelError("\(url.path): tensor '\(name)' is missing") }
        let t = Tensor(zeros: entry.shape)
        try read(name, into: t)
        return t
    }

    /// An integer tensor (I64 or I32), flattened.
    public func integers(_ name: String) throws -> [Int] {
        guard let entry = entries[name], entry.dtype == "I64" || entry.dtype == "I32" else {
            throw ModelError("\(url.path): integer tensor '\(name)' is missing")
        }
        let width = entry.dtype == "I64" ? 8 : 4, count = entry.shape.reduce(1, *)
        return data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let base = raw.baseAddress! + dataStart + entry.begin
            return (0 ..< count).map { i in
                width == 8 ? Int(Int64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
                    : Int(Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
            }
        }
    }

    /// Writes `tensors` as F32 safetensors: to a temporary file in the same folder, flushed, then renamed.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = ["format": "pt"], to url: URL) throws {
        var header: [String: Any] = ["__metadata__": metadata]
        var offset = 0
        for (name, tensor) in tensors {
            header[name] = ["dtype": "F32", "shape": tensor.shape, "data_offsets": [offset, offset + 4 * tensor.count]] as [String: Any]
            offset += 4 * tensor.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var bytes = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(json)
        for (_, tensor) in tensors {
            bytes.append(UnsafeBufferPointer(start: tensor.data, count: tensor.count))
        }
        try writeAtomically(bytes, to: url)
    }
}

/// Writes `data` to a temporary file next to `url`, flushes it to disk, then renames it over `url`, so
/// a crash leaves either the old file or the new one, never a partial one.
public func writeAtomically(_ data: Data, to url: URL) throws {
    let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    guard FileManager.default.createFile(atPath: temporary.path, contents: nil),
          let handle = FileHandle(forWritingAtPath: temporary.path) else {
        throw ModelError("\(temporary.path): cannot create")
    }
    do {
        try handle.write(contentsOf: data)
        try handle.synchronize()
        try handle.close()
    } catch {
        try? FileManager.default.removeItem(at: temporary)
        throw ModelError("\(url.path): cannot write (\(error.localizedDescription))")
    }
    guard rename(temporary.path, url.path) == 0 else {
        let reason = String(cString: strerror(errno))
        try? FileManager.default.removeItem(at: temporary)
        throw ModelError("\(url.path): cannot rename the temporary file into place (\(reason))")
    }
}

/// IEEE half precision to Float32.
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h >> 15) << 31, exponent = UInt32(h >> 10) & 0x1f, mantissa = UInt32(h) & 0x3ff
    switch exponent {
    case 0:  // zero or subnormal: mantissa * 2^-24
        return Float(bitPattern: sign) + (sign != 0 ? -1 : 1) * Float(mantissa) * 0x1p-24
    case 0x1f:
        return Float(bitPattern: sign | 0x7f80_0000 | mantissa << 13)
    default:
        return Float(bitPattern: sign | (exponent + 112) << 23 | mantissa << 13)
    }
}

import CH5IO
import Foundation
import Tensors

/// A checkpoint file in HDF5: Float32 datasets with fletcher32 checksums (verified by HDF5 on every read)
/// and string attributes on the root group. Readable with h5py.
final class H5File {
    let path: String
    private let handle: xt_h5_file

    private init(path: String, handle: xt_h5_file) {
        self.path = path
        self.handle = handle
    }

    deinit { _ = xt_h5_close(handle) }

    private static func message(_ buffer: [CChar]) -> String { String(cString: buffer) }

    static func create(_ path: String) throws -> H5File {
        var error = [CChar](repeating: 0, count: 512)
        let h = xt_h5_create(path, &error, 512)
        guard h >= 0 else { throw TrainingError("\(path): \(message(error))") }
        return H5File(path: path, handle: h)
    }

    static func open(_ path: String) throws -> H5File {
        var error = [CChar](repeating: 0, count: 512)
        let h = xt_h5_open_read(path, &error, 512)
        guard h >= 0 else {
            let exists = FileManager.default.fileExists(atPath: path)
            throw TrainingError("\(path): \(exists ? "not a readable HDF5 file" : "no such file")")
        }
        return H5File(path: path, handle: h)
    }

    func write(_ name: String, _ data: UnsafePointer<Float>, shape: [Int]) throws {
        var error = [CChar](repeating: 0, count: 512)
        let dims = shape.map { Int64($0) }
        guard xt_h5_write_floats(handle, name, data, Int32(dims.count), dims, &error, 512) == 0 else {
            throw TrainingError("\(path): \(H5File.message(error))")
        }
    }

    func write(_ name: String, _ tensor: Tensor) throws { try write(name, tensor.data, shape: tensor.shape) }

    /// The stored shape of dataset `name`, or nil if it is missing.
    func shape(_ name: String) -> [Int]? {
        var rank: Int32 = 0
        var dims = [Int64](repeating: 0, count: 8)
        var error = [CChar](repeating: 0, count: 512)
        guard xt_h5_shape(handle, name, &rank, &dims, &error, 512) == 0 else { return nil }
        return dims.prefix(Int(rank)).map { Int($0) }
    }

    func read(_ name: String, into data: UnsafeMutablePointer<Float>, count: Int) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard xt_h5_read_floats(handle, name, data, Int64(count), &error, 512) == 0 else {
            throw TrainingError("\(path): \(H5File.message(error))")
        }
    }

    func setString(_ name: String, _ value: String) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard xt_h5_write_string(handle, name, value, &error, 512) == 0 else { throw TrainingError("\(path): \(H5File.message(error))") }
    }

    func string(_ name: String) -> String? {
        let length = xt_h5_read_string(handle, name, nil, 0)
        guard length >= 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(length) + 1)
        _ = xt_h5_read_string(handle, name, &buffer, Int64(buffer.count))
        return String(cString: buffer)
    }

    func flush() throws {
        guard xt_h5_flush(handle) == 0 else { throw TrainingError("\(path): flush failed") }
    }
}

/// A training failure the user can act on: bad recipe, bad checkpoint, diverged run.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

import CBLAS
import CHDF5
import CZstd
import XCTest

/// The system libraries link and answer: OpenBLAS, zstd, HDF5.
final class SystemLibrariesTests: XCTestCase {
    func testOpenBLASMultiplies() {
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [5, 6, 7, 8]
        var c = [Float](repeating: 0, count: 4)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1, a, 2, b, 2, 0, &c, 2)
        XCTAssertEqual(c, [19, 22, 43, 50])
    }

    func testZstdRoundTrip() {
        XCTAssertGreaterThanOrEqual(ZSTD_versionNumber(), 10400)
        let input = [UInt8](repeating: 42, count: 10_000)
        var compressed = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let size = ZSTD_compress(&compressed, compressed.count, input, input.count, 3)
        XCTAssertEqual(ZSTD_isError(size), 0)
        var output = [UInt8](repeating: 0, count: input.count)
        let restored = ZSTD_decompress(&output, output.count, compressed, size)
        XCTAssertEqual(restored, input.count)
        XCTAssertEqual(output, input)
    }

    func testHDF5Version() {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        XCTAssertGreaterThanOrEqual(H5get_libversion(&major, &minor, &release), 0)
        XCTAssertGreaterThanOrEqual(major * 100 + minor, 110)
    }
}

import CImageCodecs
import Foundation

/// Reading image files and CLIP's preprocessing, matching Pillow.
public enum ImageProcessing {
    /// Decodes a PNG or JPEG file (chosen by its first bytes) to RGB.
    public static func load(_ url: URL) throws -> RGBImage {
        guard let handle = FileHandle(forReadingAtPath: url.path) else {
            throw DataError("\(url.path): cannot open image (missing or unreadable)")
        }
        let magic = [UInt8](handle.readData(ofLength: 4))
        try? handle.close()
        var image = xt_image()
        let status: Int32
        if magic.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            status = xt_decode_png(url.path, &image)
        } else if magic.starts(with: [0xFF, 0xD8]) {
            status = xt_decode_jpeg(url.path, &image)
        } else {
            throw DataError("\(url.path): not a PNG or JPEG file")
        }
        defer { xt_image_free(&image) }
        guard status == 0 else {
            let message = withUnsafeBytes(of: image.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw DataError("\(url.path): \(message)")
        }
        let count = Int(image.width) * Int(image.height) * 3
        return RGBImage(width: Int(image.width), height: Int(image.height), pixels: Array(UnsafeBufferPointer(start: image.pixels, count: count)))
    }

    /// Writes `image` as a PNG file (through a temporary file renamed into place).
    public static func savePNG(_ image: RGBImage, to url: URL) throws {
        let partial = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())")
        var pixels = image.pixels
        let status = pixels.withUnsafeMutableBufferPointer { buffer -> (Int32, String) in
            var out = xt_image()
            (out.width, out.height, out.pixels) = (Int32(image.width), Int32(image.height), buffer.baseAddress)
            let status = xt_encode_png(partial.path, &out)
            return (status, withUnsafeBytes(of: out.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
        }
        guard status.0 == 0 else {
            try? FileManager.default.removeItem(at: partial)
            throw DataError("\(url.path): \(status.1)")
        }
        guard rename(partial.path, url.path) == 0 else { throw DataError("\(url.path): cannot rename into place") }
    }

    /// CLIP's preprocessing: resize so the short side is `side` (the long side to int(side * long / short))
    /// with bicubic filtering, then crop the centre `side` x `side` (offsets rounded down).
    public static func clipResizeAndCrop(_ image: RGBImage, side: Int = 224) -> RGBImage {
        let (w, h) = (image.width, image.height)
        let (newW, newH) = w <= h ? (side, Int(Double(side) * Double(h) / Double(w))) : (Int(Double(side) * Double(w) / Double(h)), side)
        let resized = resizeBicubic(image, width: newW, height: newH)
        let top = (newH - side) / 2, left = (newW - side) / 2
        var pixels = [UInt8](repeating: 0, count: side * side * 3)
        for y in 0 ..< side {
            let src = ((top + y) * newW + left) * 3
            pixels.replaceSubrange((y * side * 3) ..< ((y + 1) * side * 3), with: resized.pixels[src ..< src + side * 3])
        }
        return RGBImage(width: side, height: side, pixels: pixels)
    }

    /// Pillow's `Image.resize(size, BICUBIC)` for 8-bit RGB: a separable convolution with the a = -0.5
    /// cubic kernel widened by the scale when shrinking, horizontal pass first (over the rows the vertical
    /// pass needs), coefficients in 22-bit fixed point, each pass rounded and clipped to 8 bits.
    public static func resizeBicubic(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        if width == image.width && height == image.height { return image }
        let vertical = coefficients(inSize: image.height, outSize: height)
        let firstRow = vertical.bounds[0].start
        let lastRow = vertical.bounds[height - 1].start + vertical.bounds[height - 1].count
        var current = image
        var rowOffset = 0
        if width != image.width {
            let horizontal = coefficients(inSize: image.width, outSize: width)
            let rows = lastRow - firstRow
            var out = [UInt8](repeating: 0, count: width * rows * 3)
            image.pixels.withUnsafeBufferPointer { src in
                for y in 0 ..< rows {
                    let row = (firstRow + y) * image.width * 3
                    for x in 0 ..< width {
                        let (start, count, k) = horizontal.bounds[x]
                        var acc = (Int32(1) << 21, Int32(1) << 21, Int32(1) << 21)
                        for i in 0 ..< count {
                            let p = row + (start + i) * 3, c = horizontal.weights[k + i]
                            acc.0 += Int32(src[p]) * c
                            acc.1 += Int32(src[p + 1]) * c
                            acc.2 += Int32(src[p + 2]) * c
                        }
                        let o = (y * width + x) * 3
                        (out[o], out[o + 1], out[o + 2]) = (clip8(acc.0), clip8(acc.1), clip8(acc.2))
                    }
                }
            }
            current = RGBImage(width: width, height: rows, pixels: out)
            rowOffset = firstRow
        }
        if height == image.height && rowOffset == 0 && current.height == height { return current }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        current.pixels.withUnsafeBufferPointer { src in
            for y in 0 ..< height {
                let (start, count, k) = vertical.bounds[y]
                for x in 0 ..< width * 3 {
                    var acc = Int32(1) << 21
                    for i in 0 ..< count { acc += Int32(src[(start - rowOffset + i) * width * 3 + x]) * vertical.weights[k + i] }
                    out[y * width * 3 + x] = clip8(acc)
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    @inline(__always)
    private static func clip8(_ acc: Int32) -> UInt8 { UInt8(clamping: acc >> 22) }

    /// For each output pixel: the first input pixel, how many contribute, and where its fixed-point
    /// weights start in `weights`.
    private static func coefficients(inSize: Int, outSize: Int) -> (bounds: [(start: Int, count: Int, k: Int)], weights: [Int32]) {
        let scale = Double(inSize) / Double(outSize), filterScale = max(scale, 1)
        let support = 2.0 * filterScale
        var bounds: [(Int, Int, Int)] = [], weights: [Int32] = []
        for x in 0 ..< outSize {
            let center = (Double(x) + 0.5) * scale
            let lo = max(Int(center - support + 0.5), 0), hi = min(Int(center + support + 0.5), inSize)
            var w = (lo ..< hi).map { cubic((Double($0) - center + 0.5) / filterScale) }
            let total = w.reduce(0, +)
            if total != 0 { w = w.map { $0 / total } }
            bounds.append((lo, hi - lo, weights.count))
            weights += w.map { Int32($0 < 0 ? -0.5 + $0 * Double(1 << 22) : 0.5 + $0 * Double(1 << 22)) }
        }
        return (bounds, weights)
    }

    /// The cubic convolution kernel with a = -0.5 (Keys), support 2.
    private static func cubic(_ x: Double) -> Double {
        let a = -0.5, x = abs(x)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }
}

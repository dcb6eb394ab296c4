/// e^x within about 2 ulp for x in [-87, 88] (inputs outside are clamped), branch-free so that loops
/// over it vectorise. Range reduction x = n ln2 + r with ln2 split in two (Cephes), then a degree-6
/// polynomial for e^r and an exponent-field scale for 2^n.
@inlinable @inline(__always)
public func fastExp(_ x: Float) -> Float {
    let x = min(max(x, -87.0), 88.0)
    let n = (x * 1.442_695_04).rounded(.toNearestOrEven)
    let r = x - n * 0.693_359_375 + n * 2.121_944_40e-4
    var p: Float = 1.987_569_150_0e-4
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    let y = p * r * r + r + 1
    return y * Float(bitPattern: UInt32(bitPattern: Int32(n) + 127) << 23)
}

/// Sixteen lanes: one AVX-512 register, or two AVX2 ones.
public typealias Float16x = SIMD16<Float>

/// `fastExp` on sixteen lanes at once. Written with the operations that compile to vector instructions
/// (the standard library's generic clamp and Float-to-Int conversion do not): the integer part is read
/// from the mantissa after adding 1.5 * 2^23, which also rounds to nearest even.
@inlinable @inline(__always)
public func fastExp(_ x: Float16x) -> Float16x {
    var x = x
    x.replace(with: -87, where: x .< -87)
    x.replace(with: 88, where: x .> 88)
    let magic = Float16x(repeating: 12_582_912)
    let t = x * 1.442_695_04 + magic
    let n = t - magic
    let r = x - n * 0.693_359_375 + n * 2.121_944_40e-4
    var p = Float16x(repeating: 1.987_569_150_0e-4)
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    let y = p * r * r + r + 1
    let exponent = (unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return y * unsafeBitCast(exponent, to: Float16x.self)
}

// Reductions over rows. The compiler may not reorder Float additions, so scalar loops reduce one element at
// a time; these keep sixteen partial results and combine them in a fixed order (deterministic).

@inlinable
func load16(_ p: UnsafePointer<Float>) -> Float16x { UnsafeRawPointer(p).loadUnaligned(as: Float16x.self) }

@inlinable
func store16(_ v: Float16x, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float16x.self) }

/// The sum of x[0..<n].
@inlinable
public func rowSum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = Float16x(), j = 0
    while j + 16 <= n { acc += load16(x + j); j += 16 }
    var s = acc.sum()
    while j < n { s += x[j]; j += 1 }
    return s
}

/// The sum of a[j] * b[j] for j < n.
@inlinable
public func rowDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = Float16x(), j = 0
    while j + 16 <= n { acc += load16(a + j) * load16(b + j); j += 16 }
    var s = acc.sum()
    while j < n { s += a[j] * b[j]; j += 1 }
    return s
}

/// The maximum of x[0..<n] (-infinity when n = 0).
@inlinable
public func rowMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = Float16x(repeating: -.infinity), j = 0
    while j + 16 <= n {
        let v = load16(x + j)
        acc.replace(with: v, where: v .> acc)
        j += 16
    }
    var m = acc[0]
    for i in 1 ..< 16 { m = Swift.max(m, acc[i]) }
    while j < n { m = Swift.max(m, x[j]); j += 1 }
    return m
}

/// y[j] = exp(x[j] - shift) for j < n, returning their sum; y may be x.
@inlinable
public func rowExpSum(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Float {
    var acc = Float16x(), j = 0
    while j + 16 <= n {
        let e = fastExp(load16(x + j) - shift)
        store16(e, y + j)
        acc += e
        j += 16
    }
    var s = acc.sum()
    while j < n { let e = fastExp(x[j] - shift); y[j] = e; s += e; j += 1 }
    return s
}

/// The sum of exp(x[j] - shift) for j < n.
@inlinable
public func rowExpSum(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Float {
    var acc = Float16x(), j = 0
    while j + 16 <= n { acc += fastExp(load16(x + j) - shift); j += 16 }
    var s = acc.sum()
    while j < n { s += fastExp(x[j] - shift); j += 1 }
    return s
}

/// y[j] += k * exp(x[j] - shift) for j < n.
@inlinable
public func rowAddScaledExp(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, shift: Float, scale k: Float) {
    var j = 0
    while j + 16 <= n { store16(load16(y + j) + k * fastExp(load16(x + j) - shift), y + j); j += 16 }
    while j < n { y[j] += k * fastExp(x[j] - shift); j += 1 }
}

/// y[j] *= k for j < n.
@inlinable
public func rowScale(_ y: UnsafeMutablePointer<Float>, _ n: Int, by k: Float) {
    for j in 0 ..< n { y[j] *= k }
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), branch-free on sixteen lanes:
/// erf(|x|) = 1 - (a1 t + ... + a5 t^5) e^(-x^2) with t = 1 / (1 + p |x|), sign restored. |x| and the
/// sign are bit operations: a lane-wise select would be compiled one lane at a time.
@inlinable @inline(__always)
public func fastErf(_ x: Float16x) -> Float16x {
    let bits = unsafeBitCast(x, to: SIMD16<UInt32>.self)
    let sign = bits & 0x8000_0000
    let a = unsafeBitCast(bits & 0x7FFF_FFFF, to: Float16x.self)
    let t = 1 / (1 + 0.327_591_1 * a)
    var poly = Float16x(repeating: 1.061_405_429)
    poly = poly * t - 1.453_152_027
    poly = poly * t + 1.421_413_741
    poly = poly * t - 0.284_496_736
    poly = poly * t + 0.254_829_592
    let y = 1 - poly * t * fastExp(-a * a)
    return unsafeBitCast(unsafeBitCast(y, to: SIMD16<UInt32>.self) ^ sign, to: Float16x.self)
}

/// `fastErf` of one value (the same arithmetic as the sixteen-lane version).
@inlinable @inline(__always)
public func fastErf(_ x: Float) -> Float { fastErf(Float16x(repeating: x))[0] }

/// Applies `body` to sixteen lanes at a time over 0..<count and to a padded last group, so every element
/// goes through the same vector arithmetic.
@inlinable @inline(__always)
func vectorized(_ range: Range<Int>, _ body: (_ start: Int, _ lanes: Int) -> Void) {
    var i = range.lowerBound
    while i + 16 <= range.upperBound { body(i, 16); i += 16 }
    if i < range.upperBound { body(i, range.upperBound - i) }
}

/// Loads `lanes` (1...16) floats, zero-padding the rest.
@inlinable @inline(__always)
func load(_ p: UnsafePointer<Float>, _ lanes: Int) -> Float16x {
    if lanes == 16 { return load16(p) }
    var v = Float16x()
    for j in 0 ..< lanes { v[j] = p[j] }
    return v
}

/// Stores the first `lanes` (1...16) floats of v.
@inlinable @inline(__always)
func store(_ v: Float16x, _ p: UnsafeMutablePointer<Float>, _ lanes: Int) {
    if lanes == 16 { store16(v, p); return }
    for j in 0 ..< lanes { p[j] = v[j] }
}

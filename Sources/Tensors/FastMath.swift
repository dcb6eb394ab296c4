import CVectorMath

/// Sixteen lanes: one AVX-512 register, or two AVX2 ones.
public typealias Float16x = SIMD16<Float>

// Reductions over rows. The compiler may not reorder Float additions, so scalar loops reduce one element at
// a time; these keep sixteen partial results and combine them in a fixed order (deterministic). The ones
// built on exp, and the maximum, run in C (CVectorMath), where the vector selects compile to whole registers.

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

/// The sum of a[j] * b[j] * (x[j] - shift) for j < n.
@inlinable
public func rowDotCentered(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ x: UnsafePointer<Float>, shift: Float, _ n: Int) -> Float {
    var acc = Float16x(), j = 0
    while j + 16 <= n { acc += load16(a + j) * load16(b + j) * (load16(x + j) - shift); j += 16 }
    var s = acc.sum()
    while j < n { s += a[j] * b[j] * (x[j] - shift); j += 1 }
    return s
}

/// The sum of (x[j] - shift)^2 for j < n.
@inlinable
public func rowSquaredDeviation(_ x: UnsafePointer<Float>, shift: Float, _ n: Int) -> Float {
    var acc = Float16x(), j = 0
    while j + 16 <= n { let d = load16(x + j) - shift; acc += d * d; j += 16 }
    var s = acc.sum()
    while j < n { s += (x[j] - shift) * (x[j] - shift); j += 1 }
    return s
}

/// The maximum of x[0..<n] (-infinity when n = 0).
@inlinable
public func rowMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float { xt_row_max(x, n) }

/// y[j] = exp(x[j] - shift) for j < n, returning their sum; y may be x.
@inlinable
public func rowExpSum(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Float {
    xt_exp_sum(y, x, n, shift)
}

/// The sum of exp(x[j] - shift) for j < n.
@inlinable
public func rowExpSum(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Float {
    xt_exp_sum(nil, x, n, shift)
}

/// y[j] += k * exp(x[j] - shift) for j < n.
@inlinable
public func rowAddScaledExp(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, shift: Float, scale k: Float) {
    xt_add_scaled_exp(y, x, n, shift, k)
}

/// y[j] *= k for j < n.
@inlinable
public func rowScale(_ y: UnsafeMutablePointer<Float>, _ n: Int, by k: Float) {
    for j in 0 ..< n { y[j] *= k }
}

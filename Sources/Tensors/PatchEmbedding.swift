/// Patch embedding: Conv2d(3, D, kernel = stride = p) as im2col + one GEMM. The weight is the Conv2d
/// weight (D, 3, p, p) viewed as (D, 3*p*p), so the column features are in (channel, ky, kx) order.

/// cols (B*P, 3*p*p) = the patches of images (B, 3, S, S), P = (S/p)^2 patches in row-major order;
/// out (B, P, D) = cols weight^T + bias. cols is kept for backward.
public func patchEmbedForward(out: Tensor, cols: Tensor, images: Tensor, weight: Tensor, bias: Tensor, patch: Int) {
    let (b, grid) = patchGrid(images, patch)
    let features = 3 * patch * patch
    cols.expect([b * grid * grid, features], "patchEmbedForward cols")
    out.expect([b, grid * grid, weight.shape[0]], "patchEmbedForward out")
    movePatches(images: images, cols: cols, patch: patch, toColumns: true)
    linearForward(out: out, inp: cols, weight: weight, bias: bias)
}

/// Accumulates dweight (D, 3*p*p), dbias (D), and, when dimages is given, dimages (B, 3, S, S) through
/// dcols (B*P, 3*p*p) scratch. Kernel = stride, so col2im is a plain scatter without overlaps.
public func patchEmbedBackward(dimages: Tensor?, dcols: Tensor?, dweight: Tensor?, dbias: Tensor?,
                               dout: Tensor, cols: Tensor, weight: Tensor, patch: Int) {
    if let dimages {
        guard let dcols else { preconditionFailure("patchEmbedBackward: dimages needs dcols scratch") }
        dcols.expectSameShape(cols, "patchEmbedBackward dcols vs cols")
        dcols.zero()
        linearBackward(dinp: dcols, dweight: dweight, dbias: dbias, dout: dout, inp: cols, weight: weight)
        movePatches(images: dimages, cols: dcols, patch: patch, toColumns: false)
    } else {
        linearBackward(dinp: nil, dweight: dweight, dbias: dbias, dout: dout, inp: cols, weight: weight)
    }
}

private func patchGrid(_ images: Tensor, _ patch: Int) -> (batch: Int, grid: Int) {
    precondition(images.rank == 4 && images.shape[1] == 3 && images.shape[2] == images.shape[3] && images.shape[2] % patch == 0,
                 "patch embedding: expected images (B, 3, S, S) with S a multiple of \(patch), got \(images.shape)")
    return (images.shape[0], images.shape[2] / patch)
}

/// Copies every patch row between images and cols (im2col when toColumns, else adds back: col2im).
private func movePatches(images: Tensor, cols: Tensor, patch p: Int, toColumns: Bool) {
    let (b, grid) = patchGrid(images, p)
    let side = grid * p, features = 3 * p * p
    Parallel.chunks(b * grid * grid, grain: 16) { patches in
        for n in patches {
            let image = n / (grid * grid), py = (n / grid) % grid, px = n % grid
            for c in 0 ..< 3 {
                for ky in 0 ..< p {
                    let src = images.data + ((image * 3 + c) * side + py * p + ky) * side + px * p
                    let dst = cols.data + n * features + (c * p + ky) * p
                    if toColumns {
                        dst.update(from: src, count: p)
                    } else {
                        for kx in 0 ..< p { src[kx] += dst[kx] }
                    }
                }
            }
        }
    }
}

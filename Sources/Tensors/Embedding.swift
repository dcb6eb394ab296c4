/// Token embedding lookup and its scatter-add backward.

/// out (N, C) = table[ids[n]] with table (V, C) and every id in 0..<V.
public func embeddingForward(out: Tensor, ids: [Int32], table: Tensor) {
    let v = table.shape[0], c = table.columns
    precondition(out.rows == ids.count && out.columns == c, "embeddingForward: out \(out.shape) does not fit \(ids.count) ids and table \(table.shape)")
    ids.withUnsafeBufferPointer { ids in
        for (n, id) in ids.enumerated() {
            precondition(id >= 0 && Int(id) < v, "embeddingForward: token id \(id) at position \(n) is outside the vocabulary of \(v)")
        }
        Parallel.chunks(ids.count, grain: max(1, 4096 / max(c, 1))) { rows in
            for n in rows { (out.data + n * c).update(from: table.data + Int(ids[n]) * c, count: c) }
        }
    }
}

/// dtable (V, C) += dout rows (N, C) scattered to their ids. Threads own blocks of columns, so repeated
/// ids are summed in token order and the result is deterministic.
public func embeddingBackward(dtable: Tensor, dout: Tensor, ids: [Int32]) {
    let c = dtable.columns
    precondition(dout.rows == ids.count && dout.columns == c, "embeddingBackward: dout \(dout.shape) does not fit \(ids.count) ids and table \(dtable.shape)")
    ids.withUnsafeBufferPointer { ids in
        Parallel.chunks(c, grain: max(16, (1 << 16) / max(1, ids.count))) { cols in
            for n in 0 ..< ids.count {
                let src = dout.data + n * c, dst = dtable.data + Int(ids[n]) * c
                for j in cols { dst[j] += src[j] }
            }
        }
    }
}

import CBLAS
import Dispatch
import Foundation

/// Deterministic parallel-for over the machine's cores.
///
/// Work is split into contiguous chunks that depend only on the item count, the grain and the thread
/// count, never on timing, so every run computes the same partial results in the same order. OpenBLAS is
/// kept single-threaded: every GEMM runs inside one of our chunks, so its threads and ours never compete
/// for the cores.
public enum Parallel {
    nonisolated(unsafe) private static var configuredThreads = defaultThreadCount()

    /// Threads used by `chunks` (the `XTRAIN_THREADS` environment variable, else the active core count).
    public static var threads: Int {
        _ = blasIsSingleThreaded
        return configuredThreads
    }

    /// Sets the thread count; call it before training, not while kernels run.
    public static func setThreads(_ count: Int) {
        precondition(count >= 1, "Parallel.setThreads: need at least one thread, got \(count)")
        _ = blasIsSingleThreaded
        configuredThreads = count
    }

    private static let blasIsSingleThreaded: Void = { openblas_set_num_threads(1) }()

    private static func defaultThreadCount() -> Int {
        if let value = ProcessInfo.processInfo.environment["XTRAIN_THREADS"], let n = Int(value), n >= 1 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// The chunk boundaries `chunks` uses: at most `threads` contiguous ranges of at least `grain` items.
    public static func partition(_ count: Int, grain: Int = 1) -> [Range<Int>] {
        let n = chunkCount(count, grain: grain)
        return (0 ..< n).map { chunk(count, n, $0) }
    }

    /// Runs `body` on contiguous chunks covering `0..<count`, concurrently, and returns when all are done.
    /// Chunks hold at least `grain` items, so small work runs inline on the caller.
    @inlinable
    public static func chunks(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        let n = chunkCount(count, grain: grain)
        if n <= 1 {
            if count > 0 { body(0 ..< count) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: n) { body(chunk(count, n, $0)) }
    }

    /// `chunks`, also telling `body` which chunk (0..<threads) it runs, e.g. to pick per-thread scratch.
    @inlinable
    public static func indexedChunks(_ count: Int, grain: Int = 1, _ body: (_ chunk: Int, _ range: Range<Int>) -> Void) {
        let n = chunkCount(count, grain: grain)
        if n <= 1 {
            if count > 0 { body(0, 0 ..< count) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: n) { body($0, chunk(count, n, $0)) }
    }

    @usableFromInline
    static func chunkCount(_ count: Int, grain: Int) -> Int {
        guard count > 0 else { return 0 }
        return min(threads, max(1, count / max(grain, 1)))
    }

    @usableFromInline
    static func chunk(_ count: Int, _ n: Int, _ i: Int) -> Range<Int> {
        (i * count / n) ..< ((i + 1) * count / n)
    }
}

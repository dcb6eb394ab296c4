import Foundation
import Tensors

/// The loader's whole position in its stream: saved in checkpoints, restored to continue exactly.
public struct LoaderState: Codable, Equatable, Sendable {
    public var seed: UInt64
    /// Samples drawn so far, over all sources and ranks (a multiple of the global batch).
    public var samples: Int
    /// Samples drawn from each source before the current length window; source s is in epoch
    /// consumed[s] / count(s).
    public var consumed: [Int]
    /// Batches per length window (1, or absent in older checkpoints: no grouping).
    public var lengthWindow: Int?
    /// The mix the samples are drawn by: each source's share, and the phases' (absent in older checkpoints).
    public var mix: Mix?

    public struct Mix: Codable, Equatable, Sendable, CustomStringConvertible {
        public var shares: [Double]
        public var phases: [Loader.Phase]

        /// The shares of `weights` and of each phase's, so that weights in proportion compare equal.
        public init(weights: [Double], phases: [Loader.Phase]) {
            let share = { (w: [Double]) in w.map { $0 / w.reduce(0, +) } }
            shares = share(weights)
            self.phases = phases.map { Loader.Phase(untilSample: $0.untilSample, weights: share($0.weights)) }
        }

        public var description: String {
            let shares = { (w: [Double]) in "[" + w.map { String(format: "%.3g", $0) }.joined(separator: ", ") + "]" }
            return "shares \(shares(self.shares))" + phases.map { " (until sample \($0.untilSample): \(shares($0.weights)))" }.joined()
        }
    }

    public init(seed: UInt64, sources: Int, lengthWindow: Int = 1, mix: Mix? = nil) {
        self.seed = seed
        samples = 0
        consumed = Array(repeating: 0, count: sources)
        self.lengthWindow = lengthWindow
        self.mix = mix
    }
}

/// A saved `LoaderState` that does not fit the loader it is given to (another seed, number of sources,
/// length window or mix): resuming from it would not continue the same stream.
public struct LoaderStateMismatch: Error, CustomStringConvertible {
    public let description: String
}

/// A batch for one rank: B sequences padded to T tokens (the longest, at most the recipe's length), labels, attention mask, and the images in
/// reading order, CLIP-normalised.
public struct LoadedBatch {
    public let batchSize: Int
    public let sequenceLength: Int
    public let tokens: [Int32]
    public let labels: [Int32]
    public let attentionMask: [Float]
    /// (n, 3, S, S), or nil when no sample of the batch has an image.
    public let images: Tensor?
    /// Which (source, record) each sequence is: for tests and inspection.
    public let samples: [(source: Int, record: Int)]
    /// The position of the first sequence in the global batch (this rank's offset).
    public let firstSample: Int
    /// Tokens that count for the loss (before the shift).
    public let labelledTokens: Int
    /// (B) each sequence's loss targets that were cut off with its record's tail (past the sequence length,
    /// or in and after an image that did not fit): data the recipe's `sequence_length` loses.
    public let cutTargets: [Int]
    /// The loader's state after this batch: save it with a checkpoint taken after this step.
    public let state: LoaderState
}

/// Deterministic, resumable, rank-sliced batches from weighted sources.
///
/// Global sample g comes from source `pick(g)` (a weighted choice from Philox(seed, g)); a source's
/// samples follow a fresh permutation each epoch, drawn from (seed, source, epoch). Global batch k is
/// samples k*G ..< (k+1)*G; rank r of R reads its slice [r*G/R, (r+1)*G/R). The order therefore depends
/// on the seed only, never on the number of ranks; and the state is three small numbers.
///
/// With a length window of W batches, the W*G samples of each window are sorted by length and cut into
/// W batches, which are then taken in a shuffled order: a window trains on the same samples as without
/// grouping, but a batch's sequences have similar lengths, so little compute goes to padding.
public final class Loader {
    public let sources: [Dataset]
    public let weights: [Double]
    public let globalBatch: Int
    public let sequenceLength: Int
    public let rank: Int, ranks: Int
    public let shuffle: Bool
    public let lengthWindow: Int
    /// Mixes that come before `weights`: phase i draws samples up to (not including) its `untilSample`.
    public let phases: [Phase]
    private(set) public var state: LoaderState
    private let cumulative: [Double]
    private let phaseCumulative: [[Double]]
    private var permutations: [(epoch: Int, order: [Int])?]
    /// The current length window: its first sample, its batches in the order they are taken (with the records
    /// when they were read to sort them), and the per-source draws after it.
    private var window: Window?
    typealias Window = (start: Int, batches: [[(pick: (source: Int, record: Int), record: Record?)]], consumed: [Int])

    /// A mix of the sources (one weight each, zero allowed, not all zero) for the samples before `untilSample`.
    public struct Phase: Codable, Equatable, Sendable {
        public let untilSample: Int
        public let weights: [Double]
        public init(untilSample: Int, weights: [Double]) {
            self.untilSample = untilSample
            self.weights = weights
        }
    }

    public init(sources: [Dataset], weights: [Double], globalBatch: Int, sequenceLength: Int, seed: UInt64,
                rank: Int = 0, ranks: Int = 1, shuffle: Bool = true, lengthWindow: Int = 1, phases: [Phase] = [],
                state: LoaderState? = nil) throws {
        guard !sources.isEmpty, sources.count == weights.count, weights.allSatisfy({ $0 > 0 }) else {
            throw DataError("loader: need one positive weight per source (got \(weights) for \(sources.count) sources)")
        }
        for (i, phase) in phases.enumerated() {
            guard phase.weights.count == sources.count, phase.weights.allSatisfy({ $0 >= 0 }), phase.weights.contains(where: { $0 > 0 }),
                  phase.untilSample > (i > 0 ? phases[i - 1].untilSample : 0) else {
                throw DataError("loader: phase \(i) (until sample \(phase.untilSample), weights \(phase.weights)) needs one non-negative weight per source, not all zero, and a later end than the phase before")
            }
        }
        guard lengthWindow > 0 else { throw DataError("loader: the length window must be at least one batch, got \(lengthWindow)") }
        guard globalBatch % ranks == 0 else { throw DataError("loader: global batch \(globalBatch) is not divisible by \(ranks) ranks") }
        for s in sources where s.count == 0 { throw DataError("\(s.directory.path): the dataset has no records") }
        let queries = Set(sources.map(\.index.imageQueries)), sides = Set(sources.map(\.index.imageSide))
        guard queries.count == 1, sides.count == 1 else {
            throw DataError("loader: sources differ in image placeholders \(queries.sorted()) or image size \(sides.sorted())")
        }
        for s in sources.dropFirst() where !s.sharesTokenizer(with: sources[0]) {
            throw DataError("loader: \(s.directory.path) was tokenized by \(s.tokenizer.identity), \(sources[0].directory.path) by \(sources[0].tokenizer.identity) (or their special tokens differ)")
        }
        self.sources = sources
        self.weights = weights
        self.globalBatch = globalBatch
        self.sequenceLength = sequenceLength
        self.rank = rank
        self.ranks = ranks
        self.shuffle = shuffle
        self.lengthWindow = lengthWindow
        self.phases = phases
        cumulative = Loader.cumulative(weights)
        phaseCumulative = phases.map { Loader.cumulative($0.weights) }
        permutations = Array(repeating: nil, count: sources.count)
        let mix = LoaderState.Mix(weights: weights, phases: phases)
        if var state {
            let saved = state.lengthWindow ?? 1
            guard state.consumed.count == sources.count, state.seed == seed, saved == lengthWindow else {
                throw LoaderStateMismatch(description: "loader: the saved state (seed \(state.seed), \(state.consumed.count) sources, length window \(saved)) does not match this loader (seed \(seed), \(sources.count) sources, length window \(lengthWindow))")
            }
            if let drawn = state.mix, drawn != mix {
                throw LoaderStateMismatch(description: "loader: the saved state was drawn with the mix \(drawn), this loader's is \(mix); resuming would draw other samples (start a new run from the checkpoint to change the mix)")
            }
            state.mix = mix
            self.state = state
        } else {
            self.state = LoaderState(seed: seed, sources: sources.count, lengthWindow: lengthWindow, mix: mix)
        }
    }

    /// The running sums of the normalised weights.
    static func cumulative(_ weights: [Double]) -> [Double] {
        let total = weights.reduce(0, +)
        return weights.reduce(into: [Double]()) { $0.append(($0.last ?? 0) + $1 / total) }
    }

    /// The source global sample g comes from: a function of g alone (the mix of g's phase), so a resumed
    /// run draws what the uninterrupted one did.
    func pick(_ g: Int) -> Int {
        guard sources.count > 1 else { return 0 }
        let u = Double(RandomStream(seed: state.seed, stream: 0x6D69_7865).uniform(g))
        let mix = phases.firstIndex { g < $0.untilSample }.map { phaseCumulative[$0] } ?? cumulative
        return mix.firstIndex { u < $0 } ?? sources.count - 1
    }

    /// The record of source s that is its k-th draw.
    func recordIndex(source s: Int, draw k: Int) -> Int {
        let n = sources[s].count, epoch = k / n
        guard shuffle else { return k % n }
        if permutations[s]?.epoch != epoch {
            permutations[s] = (epoch, Loader.permutation(n, RandomStream(seed: state.seed, stream: UInt64(s) << 32 | UInt64(epoch))))
        }
        return permutations[s]!.order[k % n]
    }

    /// A Fisher-Yates permutation of 0 ..< n from `stream`.
    static func permutation(_ n: Int, _ stream: RandomStream) -> [Int] {
        var order = Array(0 ..< n)
        for i in stride(from: n - 1, to: 0, by: -1) {
            order.swapAt(i, min(i, Int(stream.uniform(i) * Float(i + 1))))
        }
        return order
    }

    /// The next batch of this rank; advances the state by one global batch.
    public func next() throws -> LoadedBatch {
        let size = lengthWindow * globalBatch, start = state.samples - state.samples % size
        if window?.start != start { window = try draw(window: start) }
        let batch = window!.batches[(state.samples - start) / globalBatch]
        state.samples += globalBatch
        if state.samples % size == 0 { state.consumed = window!.consumed }
        let first = rank * globalBatch / ranks
        let mine = batch[first ..< ((rank + 1) * globalBatch / ranks)]
        let records = try mine.map { try $0.record ?? sources[$0.pick.source].record($0.pick.record) }
        return assemble(records, samples: mine.map(\.pick), firstSample: first)
    }

    /// The window of samples from `start` on, cut into batches: in draw order when the window is one batch
    /// (no record read yet); otherwise read, sorted by length (stably), cut, and the batches shuffled by
    /// (seed, window).
    func draw(window start: Int) throws -> Window {
        var consumed = state.consumed
        var picks: [(source: Int, record: Int)] = []
        for g in start ..< start + lengthWindow * globalBatch {
            let s = pick(g)
            picks.append((s, recordIndex(source: s, draw: consumed[s])))
            consumed[s] += 1
        }
        guard lengthWindow > 1 else { return (start, [picks.map { ($0, nil) }], consumed) }
        let samples = try picks.map { (pick: $0, record: try sources[$0.source].record($0.record)) }
        let lengths = samples.map { kept($0.record).length }
        let sorted = samples.indices.sorted { (lengths[$0], $0) < (lengths[$1], $1) }.map { samples[$0] }
        let order = Loader.permutation(lengthWindow, RandomStream(seed: state.seed, stream: 0x6C65_6E77_0000_0000 | UInt64(start / (lengthWindow * globalBatch))))
        return (start, order.map { sorted[$0 * globalBatch ..< ($0 + 1) * globalBatch].map { ($0.pick, $0.record) } }, consumed)
    }

    /// The tokens of `r` that fit the recipe's length T, and its images that do: an image whose placeholders
    /// do not fit is dropped with the rest of the sequence.
    func kept(_ r: Record) -> (length: Int, images: ArraySlice<RGBImage>) {
        let queries = sources[0].index.imageQueries
        var length = min(sequenceLength, r.tokens.count), images = 0
        for p in r.imagePositions {
            if p + queries > length { length = min(length, p); break }
            images += 1
        }
        return (length, r.images.prefix(images))
    }

    /// Cuts each record to what is `kept` and pads the batch to its longest sequence, rounded up to a
    /// multiple of 8 and at most T: no compute is spent on a padding column that no sequence needs.
    func assemble(_ records: [Record], samples: [(source: Int, record: Int)], firstSample: Int) -> LoadedBatch {
        let side = sources[0].index.imageSide
        var lengths: [Int] = [], images: [RGBImage] = []
        for r in records {
            let (length, kept) = kept(r)
            lengths.append(length)
            images += kept
        }
        let (b, t) = (records.count, max(2, min(sequenceLength, ((lengths.max() ?? 0) + 7) / 8 * 8)))
        var tokens = [Int32](repeating: sources[0].tokenizer.id(.pad), count: b * t)
        var labels = [Int32](repeating: -100, count: b * t)
        var mask = [Float](repeating: 0, count: b * t)
        var labelled = 0
        for (i, r) in records.enumerated() {
            for j in 0 ..< lengths[i] {
                tokens[i * t + j] = r.tokens[j]
                mask[i * t + j] = 1
                if r.loss[j] { labels[i * t + j] = r.tokens[j]; labelled += 1 }
            }
        }
        let cut = zip(records, lengths).map { r, length in r.loss[length...].filter { $0 }.count }
        return LoadedBatch(batchSize: b, sequenceLength: t, tokens: tokens, labels: labels, attentionMask: mask,
                           images: images.isEmpty ? nil : Loader.normalize(images, side: side), samples: samples, firstSample: firstSample,
                           labelledTokens: labelled, cutTargets: cut, state: state)
    }

    /// CLIP's normalisation: (x / 255 - mean) / std per channel, HWC bytes to (n, 3, S, S) floats.
    public static func normalize(_ images: [RGBImage], side: Int) -> Tensor {
        let mean: [Float] = [0.481_454_66, 0.457_827_5, 0.408_210_73], std: [Float] = [0.268_629_54, 0.261_302_58, 0.275_777_11]
        let out = Tensor(zeros: [images.count, 3, side, side])
        for (n, image) in images.enumerated() {
            image.pixels.withUnsafeBufferPointer { px in
                for c in 0 ..< 3 {
                    let dst = out.data + (n * 3 + c) * side * side
                    let scale = 1 / (255 * std[c]), shift = mean[c] / std[c]
                    for i in 0 ..< side * side { dst[i] = Float(px[i * 3 + c]) * scale - shift }
                }
            }
        }
        return out
    }
}

/// Runs a loader on a background thread, `depth` batches ahead; batches come out in the same order.
public final class Prefetcher {
    private let loader: Loader
    private let lock = NSCondition()
    private var queue: [Result<LoadedBatch, Error>] = []
    private var stopped = false
    private let depth: Int
    private var thread: Thread?

    public init(_ loader: Loader, depth: Int = 2) {
        self.loader = loader
        self.depth = depth
        let thread = Thread { [weak self] in self?.run() }
        thread.name = "xtrain-prefetch"
        self.thread = thread
        thread.start()
    }

    deinit { stop() }

    private func run() {
        while true {
            lock.lock()
            while queue.count >= depth && !stopped { lock.wait() }
            if stopped { lock.unlock(); return }
            lock.unlock()
            let result = Result { try loader.next() }
            lock.lock()
            queue.append(result)
            lock.broadcast()
            lock.unlock()
            if case .failure = result { return }
        }
    }

    /// The next batch, waiting for it if needed; rethrows the loader's error.
    public func next() throws -> LoadedBatch {
        lock.lock()
        defer { lock.unlock() }
        while queue.isEmpty { lock.wait() }
        let result = queue.removeFirst()
        lock.broadcast()
        return try result.get()
    }

    public func stop() {
        lock.lock()
        stopped = true
        lock.broadcast()
        lock.unlock()
    }
}

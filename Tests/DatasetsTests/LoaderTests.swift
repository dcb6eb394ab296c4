import Datasets
import Foundation
import XCTest

final class LoaderTests: XCTestCase {
    static var root: URL!

    override class func setUp() {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("xtrain-loader-\(UUID())")
        try! ShapesDataset.generate(root: root, queries: 8, scale: 0.02)
    }

    override class func tearDown() { try? FileManager.default.removeItem(at: root) }

    private func sources() throws -> [Dataset] {
        try ["captions", "vqa", "text"].map { try Dataset(LoaderTests.root.appendingPathComponent("\($0)/train")) }
    }

    private func loader(rank: Int = 0, ranks: Int = 1, state: LoaderState? = nil, batch: Int = 6, length: Int = 48, window: Int = 1) throws -> Loader {
        try Loader(sources: try sources(), weights: [2, 1, 1], globalBatch: batch, sequenceLength: length, seed: 7, rank: rank, ranks: ranks,
                   lengthWindow: window, state: state)
    }

    private func identities(_ b: LoadedBatch) -> [String] { b.samples.map { "\($0.source):\($0.record)" } }

    func testResumeContinuesTheExactStream() throws {
        for window in [1, 4] { try checkResume(window: window) }
    }

    /// Resumes at step 12, in the middle of a window of 4 batches when there is one.
    private func checkResume(window: Int) throws {
        let straight = try loader(length: 160, window: window)
        var expected: [[String]] = [], tokens: [[Int32]] = [], saved: LoaderState?
        for step in 0 ..< 30 {   // several epochs of the smallest source
            let batch = try straight.next()
            expected.append(identities(batch))
            tokens.append(batch.tokens)
            if step == 12 { saved = batch.state }
        }
        let encoded = try JSONEncoder().encode(saved!)
        let resumed = try loader(state: try JSONDecoder().decode(LoaderState.self, from: encoded), length: 160, window: window)
        for step in 13 ..< 30 {
            let batch = try resumed.next()
            XCTAssertEqual(identities(batch), expected[step], "window \(window), step \(step)")
            XCTAssertEqual(batch.tokens, tokens[step], "window \(window), step \(step)")
        }
        let other = window == 1 ? 4 : 1
        XCTAssertThrowsError(try loader(state: saved, length: 160, window: other), "a state saved with another length window") { error in
            XCTAssert("\(error)".contains("length window \(window)"), "\(error)")
        }
    }

    func testLengthWindowTakesTheSameSamplesAndPadsLess() throws {
        let plain = try loader(length: 160), grouped = try loader(length: 160, window: 4)
        var plainTokens = 0, groupedTokens = 0
        for window in 0 ..< 6 {
            var a: [String] = [], b: [String] = []
            for _ in 0 ..< 4 {
                let (x, y) = (try plain.next(), try grouped.next())
                a += identities(x)
                b += identities(y)
                plainTokens += x.tokens.count
                groupedTokens += y.tokens.count
            }
            XCTAssertEqual(a.sorted(), b.sorted(), "window \(window): the same samples")
            XCTAssertEqual(grouped.state.consumed, plain.state.consumed, "window \(window): the same draws per source")
        }
        XCTAssertLessThan(Double(groupedTokens), 0.9 * Double(plainTokens), "grouping by length cuts padding")
    }

    func testGlobalOrderIsTheSameForOneTwoAndThreeRanks() throws {
        for window in [1, 3] { try checkRanks(window: window) }
    }

    private func checkRanks(window: Int) throws {
        let one = try loader(window: window)
        let reference = try (0 ..< 8).map { _ in identities(try one.next()) }
        for ranks in [2, 3] {
            let loaders = try (0 ..< ranks).map { try loader(rank: $0, ranks: ranks, window: window) }
            for step in 0 ..< 8 {
                let joined = try loaders.flatMap { identities(try $0.next()) }
                XCTAssertEqual(joined, reference[step], "\(ranks) ranks, step \(step)")
            }
            XCTAssertEqual(loaders.map(\.state), Array(repeating: one.state, count: ranks), "every rank keeps the same state")
        }
    }

    /// Before a phase's end the samples come from its mix only (a zero weight draws nothing), after it from
    /// the loader's weights; a run resumed after the boundary draws what the uninterrupted one did.
    func testPhasesMixTheFirstSamplesAndResume() throws {
        let phased = { (state: LoaderState?) in
            try Loader(sources: try self.sources(), weights: [2, 1, 1], globalBatch: 6, sequenceLength: 48, seed: 7,
                       phases: [Loader.Phase(untilSample: 60, weights: [0, 1, 0])], state: state)
        }
        let l = try phased(nil)
        var sources: [[Int]] = [], saved: LoaderState?, expected: [[String]] = []
        for step in 0 ..< 40 {
            let batch = try l.next()
            sources.append(batch.samples.map(\.source))
            expected.append(identities(batch))
            if step == 14 { saved = batch.state }
        }
        XCTAssertEqual(Set(sources[0 ..< 10].joined()), [1], "the first 60 samples are all from source 1")
        XCTAssertEqual(Set(sources[10...].joined()), [0, 1, 2], "then the loader's weights")
        let resumed = try phased(saved)
        for step in 15 ..< 40 { XCTAssertEqual(identities(try resumed.next()), expected[step], "step \(step)") }
        // Weights in proportion draw the same stream; another mix or no phase would not, and is refused.
        let proportional = try Loader(sources: try self.sources(), weights: [4, 2, 2], globalBatch: 6, sequenceLength: 48, seed: 7,
                                      phases: [Loader.Phase(untilSample: 60, weights: [0, 3, 0])], state: saved)
        XCTAssertEqual(identities(try proportional.next()), expected[15])
        for (weights, phases) in [([2.0, 1, 2], [Loader.Phase(untilSample: 60, weights: [0, 1, 0])]), ([2, 1, 1], [])] {
            XCTAssertThrowsError(try Loader(sources: try self.sources(), weights: weights, globalBatch: 6, sequenceLength: 48, seed: 7, phases: phases,
                                            state: saved)) { error in
                XCTAssert("\(error)".contains("mix"), "\(error)")
            }
        }
        XCTAssertThrowsError(try Loader(sources: try self.sources(), weights: [1, 1, 1], globalBatch: 6, sequenceLength: 48, seed: 7,
                                        phases: [Loader.Phase(untilSample: 60, weights: [0, 0, 0])]))
    }

    func testWeightsAndEpochs() throws {
        let l = try loader()
        var counts = [0, 0, 0]
        for _ in 0 ..< 100 { for s in try l.next().samples { counts[s.source] += 1 } }
        XCTAssertEqual(Double(counts[0]) / 600, 0.5, accuracy: 0.05, "weight 2 of 4")
        XCTAssertEqual(l.state.consumed, counts)
        // Within one epoch a source repeats no record.
        let single = try Loader(sources: [try sources()[2]], weights: [1], globalBatch: 4, sequenceLength: 48, seed: 3)
        let n = try sources()[2].count
        var seen = Set<Int>()
        while seen.count < n - n % 4 { for s in try single.next().samples { XCTAssert(seen.insert(s.record).inserted, "record \(s.record) repeated within an epoch") } }
    }

    func testBatchLayout() throws {
        let batch = try loader().next()
        XCTAssertLessThanOrEqual(batch.sequenceLength, 48)
        XCTAssertEqual(batch.sequenceLength % 8, 0)
        XCTAssertEqual(batch.tokens.count, 6 * batch.sequenceLength)
        let longest = (0 ..< 6).map { row in (0 ..< batch.sequenceLength).filter { batch.attentionMask[row * batch.sequenceLength + $0] != 0 }.count }.max()!
        XCTAssertGreaterThan(longest, batch.sequenceLength - 8, "padded to the longest sequence only")
        let images = batch.images?.shape[0] ?? 0
        XCTAssertEqual(batch.tokens.filter { $0 == 3 }.count, images * 8, "8 placeholders per image, images that do not fit dropped")
        for i in 0 ..< batch.tokens.count where batch.attentionMask[i] == 0 {
            XCTAssertEqual(batch.tokens[i], 0)
            XCTAssertEqual(batch.labels[i], -100)
        }
        XCTAssertEqual(batch.labels.filter { $0 != -100 }.count, batch.labelledTokens)
        if let tensor = batch.images { XCTAssertEqual(Array(tensor.shape.dropFirst()), [3, 224, 224]) }
    }

    func testLongRecordsDropImagesThatDoNotFit() throws {
        let selection = try Dataset(LoaderTests.root.appendingPathComponent("selection/train"))
        let l = try Loader(sources: [selection], weights: [1], globalBatch: 2, sequenceLength: 20, seed: 1)
        let batch = try l.next()
        // "<s>Image 1: " is 10 tokens, so the first image (8 placeholders) fits and the second does not.
        XCTAssertEqual(batch.images?.shape[0], 2)
        XCTAssertEqual(batch.tokens.filter { $0 == 3 }.count, 16)
        // Each record's answer is past the 20 tokens: all its loss targets are cut, and counted.
        for (i, sample) in batch.samples.enumerated() {
            XCTAssertEqual(batch.cutTargets[i], try selection.record(sample.record).loss.filter { $0 }.count)
            XCTAssertGreaterThan(batch.cutTargets[i], 0)
        }
        XCTAssertEqual(batch.labelledTokens, 0)
        XCTAssertEqual(try loader(length: 4096).next().cutTargets, [Int](repeating: 0, count: 6), "nothing cut when records fit")
    }

    func testPrefetcherGivesTheSameBatches() throws {
        let direct = try loader()
        let prefetched = Prefetcher(try loader(), depth: 3)
        defer { prefetched.stop() }
        for _ in 0 ..< 10 {
            let (a, b) = (try direct.next(), try prefetched.next())
            XCTAssertEqual(identities(a), identities(b))
            XCTAssertEqual(a.state, b.state)
            XCTAssertEqual(a.images?.array, b.images?.array)
        }
    }
}

import Datasets
import Foundation
import XCTest

/// Tokenizers against what `sentencepiece` and `tokenizers` make of held-out text
/// (Tools/reference/make_tokenizer_fixtures.py writes the fixtures).
final class TokenizerTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizers")

    struct Expected: Decodable {
        struct Line: Decodable { let text: String; let ids: [Int32]; let decoded: String }
        struct Decoded: Decodable { let ids: [Int32]; let decoded: String }
        let lines: [Line]
        let decode: [Decoded]
    }

    /// Every held-out line encodes to the library's ids and decodes to the library's text; random id
    /// sequences decode to the library's text.
    func check(_ name: String, encode: (String) -> [Int32], decode: ([Int32]) -> String) throws {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent(name + ".expected.json"))
        let expected = try JSONDecoder().decode(Expected.self, from: data)
        var wrong = 0
        for (i, line) in expected.lines.enumerated() {
            let ids = encode(line.text)
            if ids != line.ids {
                wrong += 1
                XCTFail("\(name) line \(i) \(line.text.debugDescription): ids\n  \(ids)\nexpected\n  \(line.ids)")
            }
            XCTAssertEqual(decode(line.ids), line.decoded, "\(name) line \(i): decode")
        }
        for (i, sample) in expected.decode.enumerated() {
            XCTAssertEqual(decode(sample.ids), sample.decoded, "\(name) decode sample \(i): \(sample.ids)")
        }
        XCTAssertGreaterThan(expected.lines.count, 40)
        XCTAssertEqual(wrong, 0, "\(name): \(wrong) of \(expected.lines.count) lines differ")
    }

    func checkSentencePiece(_ name: String) throws {
        let model = try SentencePieceModel(contentsOf: Self.fixtures.appendingPathComponent(name + ".model"))
        try check(name, encode: model.encode, decode: model.decode)
    }

    func testSentencePieceBPEWithByteFallback() throws { try checkSentencePiece("sp-bpe") }
    func testSentencePieceBPEWithCharsmap() throws { try checkSentencePiece("sp-bpe-nfkc") }
    func testSentencePieceUnigramNFKC() throws { try checkSentencePiece("sp-unigram") }
    func testSentencePieceUnigramWithByteFallback() throws { try checkSentencePiece("sp-unigram-bf") }
}

extension TokenizerTests {
    func checkHuggingFace(_ name: String) throws {
        let tokenizer = try HFTokenizer(contentsOf: Self.fixtures.appendingPathComponent(name + ".json"))
        try check(name, encode: tokenizer.encode, decode: tokenizer.decode)
    }

    func testHuggingFaceByteLevelBPE() throws { try checkHuggingFace("hf-bytelevel") }
    func testHuggingFaceLlama3BPE() throws { try checkHuggingFace("hf-llama3") }
    func testHuggingFaceSentencePieceStyleBPE() throws { try checkHuggingFace("hf-sp-bpe") }
    func testHuggingFaceMetaspaceBPE() throws { try checkHuggingFace("hf-metaspace") }
}

/// Bad tokenizer files, datasets made with real tokenizers, and the template's token map.
final class TokenizerFileTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("xtrain-tokenizer-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: scratch) }

    private func assertError(_ expected: [String], _ body: () throws -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            let message = "\(error)"
            XCTAssertFalse(message.contains("\n"), "one line: \(message)", line: line)
            for part in expected { XCTAssert(message.contains(part), "'\(message)' should mention '\(part)'", line: line) }
        }
    }

    private func write(_ name: String, _ bytes: [UInt8]) throws -> URL {
        let url = scratch.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }

    private func varint(_ v: Int) -> [UInt8] {
        var v = UInt64(v), out: [UInt8] = []
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        return out + [UInt8(v)]
    }

    private func message(_ field: Int, _ bytes: [UInt8]) -> [UInt8] { varint(field << 3 | 2) + varint(bytes.count) + bytes }
    private func number(_ field: Int, _ value: Int) -> [UInt8] { varint(field << 3) + varint(value) }

    func testCorruptOrUnsupportedSentencePieceModels() throws {
        let model = try [UInt8](Data(contentsOf: TokenizerTests.fixtures.appendingPathComponent("sp-bpe.model")))
        let truncated = try write("truncated.model", Array(model.prefix(model.count / 2)))
        assertError(["truncated.model", "corrupt protobuf", "runs past the end"]) { _ = try Tokenizer.load(truncated) }
        let wireType = try write("wire.model", [0x0F, 0x01])
        assertError(["wire.model", "wire type 7"]) { _ = try Tokenizer.load(wireType) }
        let pieces = message(1, message(1, Array("<unk>".utf8)) + number(3, 2)) + message(1, message(1, Array("a".utf8)))
        for (type, name) in [(3, "WORD"), (4, "CHAR")] {
            let url = try write("\(name).model", pieces + message(2, number(3, type)))
            assertError(["\(name).model", "model_type \(name) is not supported"]) { _ = try Tokenizer.load(url) }
        }
        let empty = try write("empty.model", [])
        assertError(["empty.model", "no pieces"]) { _ = try Tokenizer.load(empty) }
        let noFallbackBytes = try write("bytes.model", pieces + message(1, message(1, Array("<0x41>".utf8)) + number(3, 6)) + message(2, number(3, 2)))
        assertError(["bytes.model", "byte_fallback is off"]) { _ = try Tokenizer.load(noFallbackBytes) }
    }

    func testUnsupportedTokenizerJSON() throws {
        let base: [String: Any] = ["model": ["type": "BPE", "vocab": ["a": 0, "b": 1, "ab": 2], "merges": ["a b"]]]
        func json(_ name: String, _ change: (inout [String: Any]) -> Void) throws -> URL {
            var object = base
            change(&object)
            return try write(name, [UInt8](JSONSerialization.data(withJSONObject: object)))
        }
        assertError(["wordpiece.json", "model.type", "WordPiece is not supported"]) {
            _ = try Tokenizer.load(try json("wordpiece.json") { $0["model"] = ["type": "WordPiece", "vocab": ["a": 0]] })
        }
        assertError(["unigram.json", "Unigram is not supported"]) { _ = try Tokenizer.load(try json("unigram.json") { $0["model"] = ["type": "Unigram"] }) }
        assertError(["pre.json", "pre_tokenizer.pretokenizers[1].type", "Whitespace is not supported"]) {
            _ = try Tokenizer.load(try json("pre.json") { $0["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [["type": "Metaspace", "replacement": "▁"], ["type": "Whitespace"]]] })
        }
        assertError(["norm.json", "normalizer.type", "NFKC is not supported"]) { _ = try Tokenizer.load(try json("norm.json") { $0["normalizer"] = ["type": "NFKC"] }) }
        assertError(["regex.json", "only the GPT-2 and LLaMA-3 regexes"]) {
            _ = try Tokenizer.load(try json("regex.json") { $0["pre_tokenizer"] = ["type": "Split", "pattern": ["Regex": "\\d+"], "behavior": "Isolated"] })
        }
        assertError(["decoder.json", "decoder.type", "WordPiece is not supported"]) { _ = try Tokenizer.load(try json("decoder.json") { $0["decoder"] = ["type": "WordPiece"] }) }
        assertError(["merges.json", "model.merges[0]"]) {
            _ = try Tokenizer.load(try json("merges.json") { $0["model"] = ["type": "BPE", "vocab": ["a": 0], "merges": ["a c"]] })
        }
        let broken = try write("broken.json", Array("{\"model\": ".utf8))
        assertError(["broken.json", "not a JSON object"]) { _ = try Tokenizer.load(broken) }
    }

    func testTemplateTokensMapToTheModelsIDs() throws {
        let sp = try Tokenizer.load(TokenizerTests.fixtures.appendingPathComponent("sp-bpe.model"))
        XCTAssertEqual(sp.kind, "sentencepiece")
        XCTAssertEqual(sp.vocabSize, 1000)
        XCTAssertEqual([sp.id(.bos), sp.id(.eos), sp.id(.pad)], [1, 2, 2], "<s>, </s>; no pad piece: eos")
        XCTAssertEqual(SpecialToken.allCases.dropFirst(3).map { sp.id($0) }, [7, 3, 4, 5, 6], "<image> <|User|> <|Bot|> <eou> <eob> are user-defined pieces 3...7")
        // The released XComposer spells eou/eob as two unused tokens: map them by text or by id.
        let mapped = try Tokenizer.load(TokenizerTests.fixtures.appendingPathComponent("sp-bpe.model"), overrides: ["eou": "▁the", "eob": "42", "pad": "<unk>"])
        XCTAssertEqual([mapped.id(.endOfUser), mapped.id(.endOfBot), mapped.id(.pad)], [sp.id(of: "▁the")!, 42, 0])
        XCTAssertEqual(mapped.render([1, 7] + sp.encode("hi there") + [6]), "<s><image>hi there<eob>")

        let gpt2 = TokenizerTests.fixtures.appendingPathComponent("hf-bytelevel.json")
        assertError(["hf-bytelevel.json", "<s> (bos)", "</s> (eos)", "--special bos="]) { _ = try Tokenizer.load(gpt2) }
        let hf = try Tokenizer.load(gpt2, overrides: ["bos": "<|endoftext|>", "eos": "<|endoftext|>"])
        XCTAssertEqual([hf.id(.bos), hf.id(.eos), hf.id(.pad), hf.id(.user), hf.id(.image)], [0, 0, 0, 1, 5])
        assertError(["--special eou=<nope>", "no such token"]) { _ = try Tokenizer.load(gpt2, overrides: ["bos": "0", "eos": "0", "eou": "<nope>"]) }
        assertError(["'eos_token' is not a template token", "pad, bos, eos"]) { _ = try Tokenizer.load(gpt2, overrides: ["eos_token": "0"]) }
    }

    /// `data prepare` with a SentencePiece model: the dataset keeps a copy of the model and the template
    /// map, reloads and verifies them, and refuses a model whose vocabulary is too small.
    func testPrepareWithSentencePiece() throws {
        let input = scratch.appendingPathComponent("data.jsonl")
        try """
        {"kind": "text", "text": "Hello world, 你好 🦜"}
        {"kind": "conversation", "turns": [{"user": "What is it?", "bot": "A red circle."}]}
        """.write(to: input, atomically: true, encoding: .utf8)
        let tokenizer = try Tokenizer.load(TokenizerTests.fixtures.appendingPathComponent("sp-bpe.model"))
        let out = scratch.appendingPathComponent("prepared")
        let index = try Prepare.run(input: input, output: out, queries: 4, tokenizer: tokenizer)
        XCTAssertEqual(index.tokenizer.kind, "sentencepiece")
        XCTAssertEqual(index.tokenizer.file, "tokenizer.model")
        XCTAssertEqual(index.tokenizer.identity, "sentencepiece-" + XXHash64.hex(tokenizer.file))
        XCTAssertEqual(index.tokenizer.specials?["eob"], 6)
        XCTAssertEqual(index.tokenWidth, 2)

        let dataset = try Dataset(out)
        XCTAssertEqual(dataset.tokenizer.identity, tokenizer.identity)
        let text = try dataset.record(0)
        XCTAssertEqual(text.tokens, [1] + tokenizer.encode("Hello world, 你好 🦜") + [2])
        XCTAssertEqual(dataset.tokenizer.decode(text.tokens), "Hello world, 你好 🦜")
        let conversation = try dataset.record(1)
        XCTAssertEqual(dataset.tokenizer.render(zip(conversation.tokens, conversation.loss).filter(\.1).map(\.0)), "A red circle.<eob>")
        try dataset.verify()

        assertError(["prepared/index.json", "has 1000 tokens", "vocab_size 512"]) { try dataset.checkCompatible(vocabSize: 512, imageQueries: 4, imageTokenIndex: 7) }
        assertError(["image placeholder is id 7", "image_token_index is 3"]) { try dataset.checkCompatible(vocabSize: 1000, imageQueries: 4, imageTokenIndex: 3) }
        XCTAssertNoThrow(try dataset.checkCompatible(vocabSize: 1024, imageQueries: 4, imageTokenIndex: 7))

        let copy = out.appendingPathComponent("tokenizer.model")
        var bytes = try Data(contentsOf: copy)
        bytes[bytes.count - 40] ^= 1
        try bytes.write(to: copy)
        assertError(["tokenizer.model", "identity", "differs from the index's"]) { _ = try Dataset(out) }
    }

    func testDatasetsOfDifferentTokenizersDoNotMix() throws {
        let input = scratch.appendingPathComponent("data.jsonl")
        try "{\"kind\": \"text\", \"text\": \"Hello\"}\n".write(to: input, atomically: true, encoding: .utf8)
        let byte = scratch.appendingPathComponent("byte"), sp = scratch.appendingPathComponent("sp")
        _ = try Prepare.run(input: input, output: byte, queries: 4)
        _ = try Prepare.run(input: input, output: sp, queries: 4, tokenizer: try Tokenizer.load(TokenizerTests.fixtures.appendingPathComponent("sp-unigram.model")))
        assertError(["loader", "sp was tokenized by sentencepiece-", "byte by byte-"]) {
            _ = try Loader(sources: [try Dataset(byte), try Dataset(sp)], weights: [1, 1], globalBatch: 2, sequenceLength: 16, seed: 1)
        }
    }
}

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

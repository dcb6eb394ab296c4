import Foundation

/// Trains a byte-level BPE tokenizer, pre-tokenized as GPT-2 and Hugging Face `tokenizers`' ByteLevel do,
/// and writes it as a `tokenizer.json`: the template tokens at their `SpecialToken` ids, then the 256 byte
/// characters in byte order, then one token per merge.
public enum BytePairTrainer {
    /// The `tokenizer.json` of a BPE trained on `texts` (each pre-tokenized on its own) with at most
    /// `vocabSize` tokens: it merges the most frequent adjacent pair, the smallest ids on a tie, while
    /// one occurs at least `minCount` times.
    public static func train(_ texts: [String], vocabSize: Int, minCount: Int = 2) -> Data {
        let specials = SpecialToken.allCases.sorted { $0.rawValue < $1.rawValue }
        let byteBase = Int32(specials.count)
        var pieces = specials.map(\.text) + ByteLevel.characters.map { String(Character($0)) }
        var ids = Dictionary(uniqueKeysWithValues: pieces.enumerated().map { ($1, Int32($0)) })

        var counts: [[UInt8]: Int] = [:]
        for text in texts {
            let bytes = ArraySlice(Array(text.utf8))
            for range in SplitPattern.gpt2.split(bytes) { counts[Array(bytes[range]), default: 0] += 1 }
        }
        // Sorted, so that the merges do not depend on the dictionary's order.
        let words = counts.keys.sorted { $0.lexicographicallyPrecedes($1) }
        let frequency = words.map { counts[$0]! }
        var symbols = words.map { $0.map { byteBase + Int32($0) } }

        var merges: [[String]] = []
        while pieces.count < vocabSize {
            var pairs: [UInt64: Int] = [:]
            for (w, word) in symbols.enumerated() where word.count > 1 {
                for i in 0 ..< word.count - 1 { pairs[key(word[i], word[i + 1]), default: 0] += frequency[w] }
            }
            guard let best = pairs.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }),
                  best.value >= minCount else { break }
            let (left, right) = (Int32(best.key >> 32), Int32(truncatingIfNeeded: best.key))
            let piece = pieces[Int(left)] + pieces[Int(right)]
            merges.append([pieces[Int(left)], pieces[Int(right)]])
            // Two merges can spell the same piece (from different splits of it); they share its id.
            let merged = ids[piece] ?? Int32(pieces.count)
            if merged == Int32(pieces.count) {
                ids[piece] = merged
                pieces.append(piece)
            }
            for w in symbols.indices where symbols[w].count > 1 {
                var out: [Int32] = [], i = 0
                let word = symbols[w]
                while i < word.count {
                    if i + 1 < word.count, word[i] == left, word[i + 1] == right {
                        out.append(merged)
                        i += 2
                    } else {
                        out.append(word[i])
                        i += 1
                    }
                }
                symbols[w] = out
            }
        }

        let null = NSNull()
        let json: [String: Any] = [
            "version": "1.0", "truncation": null, "padding": null, "normalizer": null, "post_processor": null,
            "added_tokens": specials.map { ["id": Int($0.rawValue), "content": $0.text, "single_word": false, "lstrip": false,
                                            "rstrip": false, "normalized": false, "special": true] },
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": ids.mapValues { Int($0) }, "merges": merges],
        ]
        return try! JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .prettyPrinted])
    }

    private static func key(_ left: Int32, _ right: Int32) -> UInt64 { UInt64(UInt32(left)) << 32 | UInt64(UInt32(right)) }
}

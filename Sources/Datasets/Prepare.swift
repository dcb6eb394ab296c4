import Foundation
import Tensors

/// `xtrain data prepare`: JSONL records -> a dataset directory. One JSON object per line:
///
///     {"kind": "text", "text": "..."}                                    loss on the text and </s>
///     {"kind": "caption", "image": "cat.jpg", "caption": "..."}          loss on the caption and </s>
///     {"kind": "conversation", "images": ["a.png"], "turns": [{"user": "...", "bot": "..."}]}
///                                                                        images first; loss on bot answers and <eob>
///     {"kind": "interleaved", "segments": [{"text": "...", "loss": true}, {"image": "b.png"}]}
///                                                                        loss where a text segment says so
///
/// Image paths are relative to the JSONL file. Every sequence starts with <s>. Images are decoded,
/// resized and centre-cropped to 224 as CLIP does. Text is tokenized with `tokenizer` (the byte
/// tokenizer unless given), the template tokens mapped to its ids.
public enum Prepare {
    public static func run(input: URL, output: URL, queries: Int, tokenizer: Tokenizer = .byte, progress: (Int, Int) -> Void = { _, _ in }) throws -> DatasetIndex {
        guard let data = FileManager.default.contents(atPath: input.path) else {
            throw DataError("\(input.path): cannot read")
        }
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        let writer = try DatasetWriter(directory: output, tokenizer: tokenizer, imageQueries: queries)
        let base = input.deletingLastPathComponent()
        let chunk = 64
        for start in stride(from: 0, to: lines.count, by: chunk) {
            let end = min(lines.count, start + chunk)
            var results = [Result<Record?, Error>](repeating: .success(nil), count: end - start)
            results.withUnsafeMutableBufferPointer { out in
                Parallel.chunks(end - start) { range in
                    for i in range {
                        let line = lines[start + i]
                        out[i] = Result { try record(line, place: "\(input.path):\(start + i + 1)", base: base, tokenizer: tokenizer, queries: queries) }
                    }
                }
            }
            for result in results {
                if let r = try result.get() { try writer.add(r) }
            }
            progress(end, lines.count)
        }
        return try writer.finish()
    }

    /// The record of one JSONL line, or nil for a blank line.
    static func record(_ line: Data.SubSequence, place: String, base: URL, tokenizer: Tokenizer, queries: Int) throws -> Record? {
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return nil }
        guard let object = try? JSONSerialization.jsonObject(with: Data(line)), let json = object as? [String: Any] else {
            throw DataError("\(place): not a JSON object")
        }
        func string(_ key: String, in j: [String: Any] = json, at path: String = "") throws -> String {
            guard let v = j[key] as? String else { throw DataError("\(place): field '\(path)\(key)' must be a string") }
            return v
        }
        func image(_ path: String) throws -> RGBImage {
            do {
                return ImageProcessing.clipResizeAndCrop(try ImageProcessing.load(URL(fileURLWithPath: path, relativeTo: base)))
            } catch let error as DataError {
                throw DataError("\(place): image '\(path)': \(error.description)")
            }
        }
        let kind = try string("kind")
        switch kind {
        case "text":
            var b = RecordBuilder(kind: .text, tokenizer: tokenizer, queries: queries)
            b.special(.bos, loss: false)
            b.text(try string("text"), loss: true)
            b.special(.eos, loss: true)
            return b.record
        case "caption":
            var b = RecordBuilder(kind: .caption, tokenizer: tokenizer, queries: queries)
            b.special(.bos, loss: false)
            b.image(try image(try string("image")))
            b.text(try string("caption"), loss: true)
            b.special(.eos, loss: true)
            return b.record
        case "conversation":
            var b = RecordBuilder(kind: .conversation, tokenizer: tokenizer, queries: queries)
            b.special(.bos, loss: false)
            guard let images = (json["images"] ?? []) as? [String] else { throw DataError("\(place): field 'images' must be a list of paths") }
            for path in images { b.image(try image(path)) }
            guard let turns = json["turns"] as? [[String: Any]], !turns.isEmpty else {
                throw DataError("\(place): field 'turns' must be a non-empty list of {\"user\", \"bot\"} objects")
            }
            for (i, turn) in turns.enumerated() {
                b.turn(user: try string("user", in: turn, at: "turns[\(i)]."), bot: try string("bot", in: turn, at: "turns[\(i)]."))
            }
            return b.record
        case "interleaved":
            var b = RecordBuilder(kind: .interleaved, tokenizer: tokenizer, queries: queries)
            b.special(.bos, loss: false)
            guard let segments = json["segments"] as? [[String: Any]], !segments.isEmpty else {
                throw DataError("\(place): field 'segments' must be a non-empty list of {\"text\", \"loss\"} or {\"image\"} objects")
            }
            for (i, segment) in segments.enumerated() {
                if let path = segment["image"] as? String {
                    b.image(try image(path))
                } else {
                    b.text(try string("text", in: segment, at: "segments[\(i)]."), loss: segment["loss"] as? Bool ?? true)
                }
            }
            return b.record
        default:
            throw DataError("\(place): unknown kind '\(kind)' (expected text, caption, conversation or interleaved)")
        }
    }
}

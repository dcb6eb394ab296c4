@testable import Training
import XCTest

final class EvaluationTests: XCTestCase {
    func testCaptionAttributesAreScoredPerWord() {
        let truth = "a large red circle at the top left and a small blue square at the bottom right."
        let (all, _, count) = Evaluation.captionAttributes(said: truth, truth: truth)
        XCTAssertEqual(count, 9, "the count and four attributes of each of two objects")
        XCTAssertEqual(all, 9)
        let (some, chance, _) = Evaluation.captionAttributes(said: "a large green circle at the top left and a small blue triangle at the top right.", truth: truth)
        XCTAssertEqual(some, 1 + 3 + 2, "count right; size, shape and position of the first; size and colour of the second")
        XCTAssertEqual(chance, 1.0 / 3 + 2 * (1.0 / 2 + 1.0 / 4 + 1.0 / 3 + 1.0 / 4), accuracy: 1e-12)
        let (none, _, _) = Evaluation.captionAttributes(said: "nothing to see", truth: truth)
        XCTAssertEqual(none, 0)
    }

    func testChanceOfEachQuestionKind() {
        XCTAssertEqual(Evaluation.answerChance(question: "<s><|User|>: What color is the circle at the top left?<eou>"), 0.25)
        XCTAssertEqual(Evaluation.answerChance(question: "<|User|>: How many shapes are there?"), 1.0 / 3)
        XCTAssertEqual(Evaluation.answerChance(question: "<|User|>: Is there a red square?"), 0.5)
        XCTAssertEqual(Evaluation.answerChance(question: "<|User|>: What is at the top right?"), 1.0 / 13)
        XCTAssertEqual(Evaluation.answerChance(question: "Image 1: ... <|User|>: Which image shows a red circle?"), 0.5)
    }
}

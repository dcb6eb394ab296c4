@testable import Training
import XCTest

final class EvaluationTests: XCTestCase {
    func testCaptionAttributesAreScoredPerWord() {
        let truth = "a large red circle at the top left and a small blue square at the bottom right."
        let all = Evaluation.captionAttributes(said: truth, truth: truth)
        XCTAssertEqual(all.scored, ["count": 1, "size": 2, "color": 2, "shape": 2, "position": 2], "the count and four attributes of each of two objects")
        XCTAssertEqual(all.right, all.scored)
        let some = Evaluation.captionAttributes(said: "a large green circle at the top left and a small blue triangle at the top right.", truth: truth)
        XCTAssertEqual(some.right, ["count": 1, "size": 2, "color": 1, "shape": 1, "position": 1],
                       "count right; size, shape and position of the first; size and colour of the second")
        XCTAssertEqual(some.chance, (1.0 / 3 + 2 * (1.0 / 2 + 1.0 / 4 + 1.0 / 3 + 1.0 / 4)) / 9, accuracy: 1e-12)
        let none = Evaluation.captionAttributes(said: "nothing to see", truth: truth)
        XCTAssertEqual(none.right.values.reduce(0, +), 0)
    }

    func testCaptionObjectsReadInEitherOrder() {
        let placeFirst = "at the top left a large red circle and at the bottom right a small blue square."
        let placeLast = "a large red circle at the top left and a small blue square at the bottom right."
        XCTAssertEqual(Evaluation.objects(placeFirst), [["large", "red", "circle", "top left"], ["small", "blue", "square", "bottom right"]])
        XCTAssertEqual(Evaluation.objects(placeFirst), Evaluation.objects(placeLast))
        XCTAssertEqual(Evaluation.captionAttributes(said: placeFirst, truth: placeLast).right["shape"], 2)
    }

    func testChanceOfEachQuestionKind() {
        XCTAssertEqual(Evaluation.questionKind("What color is the circle at the top left?")?.chance, 0.25)
        XCTAssertEqual(Evaluation.questionKind("How many shapes are there?")?.chance, 1.0 / 3)
        XCTAssertEqual(Evaluation.questionKind("Is there a red square?")?.chance, 0.5)
        XCTAssertEqual(Evaluation.questionKind("What is at the top right?")?.chance, 1.0 / 13)
        XCTAssertEqual(Evaluation.questionKind("Which image shows a red circle?")?.chance, 0.5)
        XCTAssertNil(Evaluation.questionKind("Describe the image."))
    }

    /// The baseline counts, per question kind, the records whose answer is that kind's commonest.
    func testCommonestAnswerRateIsPerKind() {
        let references = [("Is there", "yes"), ("Is there", "yes"), ("Is there", "no"), ("How many", "two"), ("How many", "three")]
        XCTAssertEqual(Evaluation.commonestAnswerRate(references.map { (kind: $0.0, answer: $0.1) }), 3.0 / 5)
        XCTAssertEqual(Evaluation.commonestAnswerRate([(kind: "Is there", answer: "no")]), 1)
        XCTAssertNil(Evaluation.commonestAnswerRate([]))
    }

    /// An answer in steps is scored by what follows its last ". "; a one-part answer is its own final answer.
    func testFinalAnswerFollowsTheSteps() {
        XCTAssertEqual(Evaluation.finalAnswer("red: at the top left a square and at the bottom right a circle. yes"), "yes")
        XCTAssertEqual(Evaluation.finalAnswer("red: none. no"), "no")
        XCTAssertEqual(Evaluation.finalAnswer("a red circle"), "a red circle")
    }

    func testTheQuestionIsTheLastUserTurn() {
        XCTAssertEqual(Evaluation.asked("<s><image><|User|>: What color is the circle at the top left?<eou>\n<|Bot|>: "),
                       "What color is the circle at the top left?")
        XCTAssertEqual(Evaluation.asked("<s><|User|>: Describe the image.<eou>\n<|Bot|>: a red circle.<eob>\n<|User|>: Is there a red square?<eou>\n<|Bot|>: "),
                       "Is there a red square?")
        XCTAssertEqual(Evaluation.asked("<s><image>"), "", "a caption prompt has no question")
    }

    func testDatasetNamesAreDistinct() {
        XCTAssertEqual(Trainer.datasetNames(["../Data/shapes/vqa/eval", "../Data/shapes/captions/eval"]), ["vqa/eval", "captions/eval"])
        XCTAssertEqual(Trainer.datasetNames(["a/vqa/eval", "b/vqa/eval"]), ["a/vqa/eval", "b/vqa/eval"])
        XCTAssertEqual(Trainer.datasetNames(["a/vqa/eval", "a/vqa/eval"]), ["0: a/vqa/eval", "1: a/vqa/eval"])
    }
}

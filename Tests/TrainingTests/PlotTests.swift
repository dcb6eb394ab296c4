import Foundation
@testable import Training
import XCTest

final class PlotTests: XCTestCase {
    func testLogTicksAreRoundValuesInsideTheRange() {
        XCTAssertEqual(Plot.logTicks(0.03, 6), [0.05, 0.1, 0.2, 0.5, 1, 2, 5])
        XCTAssertEqual(Plot.logTicks(0.001, 100).count, 6, "only the powers of ten over five decades")
        XCTAssertEqual(Plot.logTicks(0.031, 0.034), [0.031, 0.034], "the ends when nothing round is inside")
    }

    /// Losses 4, 0.4, 0.04 at steps 1-3: on the log axis the middle one is halfway down the panel, and the
    /// learning rate, linear from zero, is not.
    func testLossesAreDrawnOnALogAxis() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("plot-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: url) }
        let lines = [(1, 4.0), (2, 0.4), (3, 0.04)].map { #"{"step": \#($0.0), "loss": \#($0.1), "lr": {"decoder": \#(Double($0.0) * 1e-3)}}"# }
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        let svg = try Plot.svg(metrics: url, title: "run")
        XCTAssert(svg.contains(">loss (log scale)<"), svg)
        XCTAssert(svg.contains(">learning rate<"), svg)
        // The loss panel spans y 40...250; its middle is 145.
        let polylines = svg.components(separatedBy: "points=\"").dropFirst().map { $0.prefix { $0 != "\"" } }
        XCTAssertEqual(polylines.first, "60.0,40.0 330.0,145.0 600.0,250.0")
        XCTAssertEqual(polylines.last, "60.0,420.0 330.0,350.0 600.0,280.0", "the rate from zero: 1e-3 is a third of 3e-3")
    }
}

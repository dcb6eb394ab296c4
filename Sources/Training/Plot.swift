import Foundation

/// An SVG chart of a run's metrics.jsonl: training and held-out loss, the held-out loss of each eval
/// dataset, learning rates, task metrics (each with its chance level), each against the step, one panel apiece.
public enum Plot {
    struct Series {
        let name: String
        var points: [(x: Double, y: Double)]
        /// A level to read the series against (a task metric's chance), drawn dashed in its colour.
        var baseline: Double? = nil
    }

    /// Reads `metrics.jsonl` and returns the SVG text.
    public static func svg(metrics url: URL, title: String) throws -> String {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { throw TrainingError("\(url.path): cannot read") }
        var loss = Series(name: "training loss", points: []), evalLoss = Series(name: "held-out loss", points: [])
        var rates: [String: Series] = [:], tasks: [String: Series] = [:], heldOut: [String: Series] = [:]
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let step = object["step"] as? Int else { continue }
            let x = Double(step)
            if let l = object["loss"] as? Double { loss.points.append((x, l)) }
            if let l = object["eval_loss"] as? Double { evalLoss.points.append((x, l)) }
            for (part, rate) in object["lr"] as? [String: Double] ?? [:] { rates[part, default: Series(name: "lr \(part)", points: [])].points.append((x, rate)) }
            for (name, value) in object["eval_metrics"] as? [String: Double] ?? [:] { tasks[name, default: Series(name: name, points: [])].points.append((x, 100 * value)) }
            for (name, chance) in object["eval_chance"] as? [String: Double] ?? [:] { tasks[name]?.baseline = 100 * chance }
            for (name, value) in object["eval_source_loss"] as? [String: Double] ?? [:] { heldOut[name, default: Series(name: name, points: [])].points.append((x, value)) }
        }
        // Losses on a log axis, where a run's fall from its first steps and datasets whose losses lie a
        // hundred times apart all stay readable; the training loss as means of runs of steps, since one
        // batch's loss spreads over decades.
        var panels = [("loss", [binned(loss, bins: 100), evalLoss].filter { !$0.points.isEmpty }, true)]
        if !heldOut.isEmpty { panels.append(("held-out loss by dataset", heldOut.values.sorted { $0.name < $1.name }, true)) }
        panels.append(("learning rate", rates.values.sorted { $0.name < $1.name }, false))
        if !tasks.isEmpty { panels.append(("task metrics (%)", tasks.values.sorted { $0.name < $1.name }, false)) }
        let (width, panelHeight) = (900.0, 240.0)
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(panelHeight * Double(panels.count) + 40))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"14\">\(escape(title))</text>\n"
        // One step axis for all panels: the run's first to last logged step.
        let steps = panels.flatMap { $0.1.flatMap { $0.points.map(\.x) } } + loss.points.map(\.x)
        guard let first = steps.min(), let last = steps.max() else { return out + "</svg>\n" }
        for (i, (name, series, logarithmic)) in panels.enumerated() {
            out += panel(name, series, steps: first ... last, top: 40 + Double(i) * panelHeight, width: width, height: panelHeight - 30, logarithmic: logarithmic)
        }
        return out + "</svg>\n"
    }

    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    /// One panel: the series against the step, on a log axis when `logarithmic` and every value is
    /// positive (else from zero, linear).
    static func panel(_ title: String, _ series: [Series], steps: ClosedRange<Double>, top: Double, width: Double, height: Double, logarithmic: Bool) -> String {
        let all = series.flatMap(\.points), (minX, maxX) = (steps.lowerBound, steps.upperBound)
        let levels = all.map(\.y) + series.compactMap(\.baseline)
        guard let lowest = levels.min(), let highest = levels.max() else { return "" }
        let log = logarithmic && lowest > 0
        let scale: (Double) -> Double = log ? { Foundation.log10($0) } : { $0 }
        let (minY, maxY) = log ? (scale(lowest), scale(highest)) : (min(0, lowest), highest)
        let (left, right) = (60.0, width - 300)
        func px(_ x: Double) -> Double { left + (x - minX) / max(maxX - minX, 1e-12) * (right - left) }
        func py(_ y: Double) -> Double { top + height - (scale(y) - minY) / max(maxY - minY, 1e-12) * height }
        var out = "<text x=\"\(left)\" y=\"\(top - 6)\" font-size=\"12\">\(escape(log ? title + " (log scale)" : title))</text>\n"
        out += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(right - left)\" height=\"\(height)\" fill=\"none\" stroke=\"#999\"/>\n"
        let ticks = log ? logTicks(lowest, highest) : (0 ... 4).map { minY + (maxY - minY) * Double($0) / 4 }
        for y in ticks { out += "<text x=\"\(left - 4)\" y=\"\(py(y) + 4)\" text-anchor=\"end\">\(format(y))</text>\n" }
        for k in 0 ... 4 {
            let x = minX + (maxX - minX) * Double(k) / 4
            out += "<text x=\"\(px(x))\" y=\"\(top + height + 14)\" text-anchor=\"middle\">\(Int(x))</text>\n"
        }
        for (i, s) in series.enumerated() {
            let color = colors[i % colors.count]
            let path = s.points.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ")
            out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(path)\"/>\n"
            if let level = s.baseline {
                out += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%@\" stroke-dasharray=\"4 3\"/>\n", left, py(level), right, py(level), color)
            }
            if s.points.count < 30 {
                for p in s.points { out += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%@\"/>\n", px(p.x), py(p.y), color) }
            }
            out += "<text x=\"\(right + 10)\" y=\"\(top + 14 + Double(i) * 16)\" fill=\"\(color)\">\(escape(s.name + (s.baseline == nil ? "" : " (dashed: chance)")))</text>\n"
        }
        return out
    }

    /// `series` as the means of consecutive runs of points, about `bins` of them, named for the run's length;
    /// unchanged when it has fewer than two points per bin.
    static func binned(_ series: Series, bins: Int) -> Series {
        let run = series.points.count / bins
        guard run >= 2 else { return series }
        let means = stride(from: 0, to: series.points.count, by: run).map { start in
            let part = series.points[start ..< min(start + run, series.points.count)]
            return (x: part.map(\.x).reduce(0, +) / Double(part.count), y: part.map(\.y).reduce(0, +) / Double(part.count))
        }
        return Series(name: "\(series.name) (mean of \(run) steps)", points: means)
    }

    /// Tick values for a log axis over [low, high]: 1, 2 and 5 times the powers of ten within it, only the
    /// powers of ten when those are more than eight, and the ends themselves when nothing round falls inside.
    static func logTicks(_ low: Double, _ high: Double) -> [Double] {
        let decades = Int(floor(log10(low))) ... Int(ceil(log10(high)))
        let inside = { (v: Double) in v >= low * (1 - 1e-9) && v <= high * (1 + 1e-9) }
        let round = decades.flatMap { k in [1.0, 2, 5].map { $0 * pow(10, Double(k)) } }.filter(inside)
        let powers = round.filter { abs(log10($0).rounded() - log10($0)) < 1e-9 }
        if round.count > 8 { return powers }
        return round.count >= 2 ? round : [low, high]
    }

    static func format(_ v: Double) -> String { abs(v) >= 0.01 || v == 0 ? String(format: "%.2f", v) : String(format: "%.1e", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

import Foundation

extension DecodingError {
    /// "a.b[2].c: what went wrong": the JSON path of the failure and its cause, for one-line errors about
    /// configs, recipes and indexes. `snakeCase` spells keys decoded with `.convertFromSnakeCase` as the
    /// file does.
    public func jsonPathDescription(snakeCase: Bool = false) -> String {
        func name(_ key: CodingKey) -> String {
            if let i = key.intValue { return "[\(i)]" }
            guard snakeCase else { return key.stringValue }
            return key.stringValue.replacingOccurrences(of: "([a-z])([A-Z])", with: "$1_$2", options: .regularExpression).lowercased()
        }
        func path(_ keys: [CodingKey]) -> String { keys.map(name).joined(separator: ".").replacingOccurrences(of: ".[", with: "[") }
        switch self {
        case let .typeMismatch(type, c): return "\(path(c.codingPath)): expected \(type == String.self ? "a string" : "\(type)")"
        case let .valueNotFound(type, c): return "\(path(c.codingPath)): expected \(type), found null"
        case let .keyNotFound(key, c): return "\(path(c.codingPath + [key])): missing (required)"
        case let .dataCorrupted(c): return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(self)"
        }
    }
}

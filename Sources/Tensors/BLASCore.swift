import CBLAS
import Foundation

/// OpenBLAS's choice of kernels. A DYNAMIC_ARCH OpenBLAS picks its kernels from the CPU model when it
/// loads; on processors newer than the library (Debian's 0.3.21 on Sapphire Rapids, say) it falls back to
/// generic SSE3 "Prescott" kernels, six times slower. The choice can only be changed by the
/// OPENBLAS_CORETYPE environment variable before the library loads.
public enum BLASCore {
    /// The kernels OpenBLAS is running, e.g. "cooperlake".
    public static var current: String { String(cString: openblas_get_corename()).lowercased() }

    /// The kernel family to request instead of the current one, or nil if the current one is right:
    /// only when OpenBLAS fell back to pre-AVX2 kernels on a CPU that has AVX2 or AVX-512.
    public static func betterCoreType(cpuFlags: Set<String> = cpuFlags()) -> String? {
        let preAVX2 = ["prescott", "core2", "penryn", "dunnington", "nehalem", "sandybridge", "katmai", "coppermine", "northwood", "banias"]
        guard preAVX2.contains(current) else { return nil }
        if cpuFlags.isSuperset(of: ["avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512_bf16"]) { return "Cooperlake" }
        if cpuFlags.isSuperset(of: ["avx512f", "avx512vl", "avx512bw", "avx512dq"]) { return "SkylakeX" }
        if cpuFlags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// The feature flags of the first CPU in /proc/cpuinfo (empty where there is none).
    public static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":") else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }
}

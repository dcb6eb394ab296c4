import Foundation
import Tensors

@main
enum Entry {
    static func main() {
        selectBLASKernels()
        XTrain.main(resumeWithoutValue(Array(CommandLine.arguments.dropFirst())))
    }

    /// `--resume` takes a value only when a checkpoint path (*.h5) follows; alone it means the newest
    /// checkpoint of the run directory.
    static func resumeWithoutValue(_ arguments: [String]) -> [String] {
        var out: [String] = []
        for (i, a) in arguments.enumerated() {
            if a == "--resume", !(i + 1 < arguments.count && arguments[i + 1].hasSuffix(".h5")) {
                out.append("--resume=latest")
            } else {
                out.append(a)
            }
        }
        return out
    }

    /// Restarts the process once with OPENBLAS_CORETYPE set when OpenBLAS fell back to slow generic
    /// kernels on this CPU (see `BLASCore`). A user's own OPENBLAS_CORETYPE is always respected.
    private static func selectBLASKernels() {
        let environment = ProcessInfo.processInfo.environment
        guard environment["OPENBLAS_CORETYPE"] == nil, environment["XTRAIN_BLAS_RESTARTED"] == nil,
              let core = BLASCore.betterCoreType() else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv("XTRAIN_BLAS_RESTARTED", "1", 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", arguments)
        // execv only returns on failure: carry on with the kernels we have.
    }
}

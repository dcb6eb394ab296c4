import Foundation
import Tensors

@main
enum Entry {
    static func main() {
        selectBLASKernels()
        XTrain.main()
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

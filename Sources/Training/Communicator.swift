import CMPI
import Foundation

/// The ranks of a data-parallel run. A process started by Open MPI's `mpirun` joins the job through MPI
/// (loaded at run time); any other process is rank 0 of 1 and never touches MPI.
public final class Communicator {
    public let rank: Int
    public let size: Int
    /// Whether this process joined an MPI job (it must then leave through `finish` or `abort`).
    public let usesMPI: Bool
    /// Seconds spent in reductions (waiting for the other ranks included) since the last `takeCommunicationSeconds`.
    private var communicationSeconds = 0.0

    /// A single process: rank 0 of 1.
    public static let single = Communicator(rank: 0, size: 1, usesMPI: false)

    private init(rank: Int, size: Int, usesMPI: Bool) {
        self.rank = rank
        self.size = size
        self.usesMPI = usesMPI
    }

    /// Joins the MPI job when launched by mpirun (OMPI_COMM_WORLD_SIZE is set), else `single`.
    public static func fromEnvironment() throws -> Communicator {
        guard ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil else { return .single }
        var rank: Int32 = 0, size: Int32 = 0
        var error = [CChar](repeating: 0, count: 512)
        guard xmpi_init(&rank, &size, &error, error.count) == 0 else {
            throw TrainingError("MPI: \(String(cString: error))")
        }
        let world = Communicator(rank: Int(rank), size: Int(size), usesMPI: true)
        if size > 1 { xmpi_report_termination(rank) }
        return world
    }

    public var isLeader: Bool { rank == 0 }

    /// The processes that share this machine's cores (mpirun's local size), for the default thread count.
    public static var localRanks: Int {
        Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? 1
    }

    /// buffer[i] = the sum over ranks of buffer[i], in place.
    public func sum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        guard size > 1 else { return }
        try timed { xmpi_allreduce_sum_float(buffer, count) }
    }

    /// The sums over ranks of `values`.
    public func sum(_ values: [Double]) throws -> [Double] {
        guard size > 1 else { return values }
        var out = values
        try timed { xmpi_allreduce_sum_double(&out, out.count) }
        return out
    }

    /// Throws unless every rank holds the same `value` (e.g. a hash of its weights); a single process
    /// never computes it.
    public func expectAgreement(_ value: @autoclosure () -> UInt64, _ what: String) throws {
        guard size > 1 else { return }
        let value = value()
        var low = [value], high = [value]
        try timed { xmpi_allreduce_min_u64(&low, 1) }
        try timed { xmpi_allreduce_max_u64(&high, 1) }
        guard low[0] == high[0] else {
            throw TrainingError("rank \(rank): the ranks disagree on \(what) (rank value \(String(value, radix: 16)), range \(String(low[0], radix: 16))...\(String(high[0], radix: 16)))")
        }
    }

    /// The reduction time accumulated since the last call.
    public func takeCommunicationSeconds() -> Double {
        defer { communicationSeconds = 0 }
        return communicationSeconds
    }

    /// Ends every rank of the job: a failing rank calls this after logging its error, so the others do
    /// not wait for it forever in their next reduction.
    public func abort(_ code: Int32) -> Never {
        if usesMPI { xmpi_abort(code) }
        exit(code)
    }

    /// Leaves MPI at the end of a successful run.
    public func finish() {
        if usesMPI { _ = xmpi_finalize() }
    }

    private func timed(_ body: () -> Int32) throws {
        let start = DispatchTime.now().uptimeNanoseconds
        let status = body()
        communicationSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        guard status == 0 else { throw TrainingError("rank \(rank): MPI reduction failed (error \(status))") }
    }
}

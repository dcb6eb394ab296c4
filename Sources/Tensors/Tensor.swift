/// One zero-initialised, 64-byte-aligned Float32 allocation, shared by every tensor that views it.
public final class TensorStorage: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Float>
    public let count: Int

    public init(count: Int) {
        precondition(count >= 0, "TensorStorage: negative element count \(count)")
        let capacity = max(count, 1)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: capacity * MemoryLayout<Float>.stride, alignment: 64)
        base = raw.bindMemory(to: Float.self, capacity: capacity)
        base.initialize(repeating: 0, count: capacity)
        self.count = count
    }

    deinit { base.deallocate() }
}

/// A Float32 tensor: `count` contiguous row-major elements and a shape.
///
/// A `Tensor` is a view, like a pointer: copies share elements. Kernels write into tensors the caller
/// allocated (usually from an `Arena`), so a training step allocates nothing.
public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>
    /// Keeps `data` alive.
    public let storage: TensorStorage

    /// A new zero tensor with its own storage.
    public init(zeros shape: [Int]) {
        let count = Tensor.elementCount(shape)
        let storage = TensorStorage(count: count)
        self.init(shape: shape, count: count, data: storage.base, storage: storage)
    }

    /// A new tensor holding `values` (row-major), which must match the shape's element count.
    public init(shape: [Int], values: [Float]) {
        self.init(zeros: shape)
        precondition(values.count == count, "Tensor: \(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    /// A view of `count(shape)` elements of `storage` starting at `offset`.
    public init(shape: [Int], storage: TensorStorage, offset: Int) {
        let count = Tensor.elementCount(shape)
        precondition(offset >= 0 && offset + count <= storage.count,
                     "Tensor: view of \(shape) at offset \(offset) overruns storage of \(storage.count) elements")
        self.init(shape: shape, count: count, data: storage.base + offset, storage: storage)
    }

    /// A shape without elements, for measuring a model (counting a 7B model's parameters or planning its
    /// activations must not allocate tens of gigabytes). Its elements must never be read or written.
    public static func unallocated(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, count: elementCount(shape), data: noElements.base, storage: noElements)
    }

    private static let noElements = TensorStorage(count: 0)

    private init(shape: [Int], count: Int, data: UnsafeMutablePointer<Float>, storage: TensorStorage) {
        self.shape = shape
        self.count = count
        self.data = data
        self.storage = storage
    }

    static func elementCount(_ shape: [Int]) -> Int {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
        return shape.reduce(1, *)
    }

    public var rank: Int { shape.count }

    /// The size of the last dimension (the row width of the row-major layout).
    public var columns: Int { shape.last ?? 1 }

    /// The number of rows: the product of all but the last dimension.
    public var rows: Int { columns == 0 ? 0 : count / columns }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(Tensor.elementCount(newShape) == count, "reshaped: \(shape) has \(count) elements, \(newShape) does not")
        return Tensor(shape: newShape, count: count, data: data, storage: storage)
    }

    /// The sub-tensor `self[range]` along the first dimension, sharing elements.
    public func slice(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0],
                     "slice: range \(range) outside the first dimension of \(shape)")
        let inner = shape.dropFirst().reduce(1, *)
        return Tensor(shape: [range.count] + shape.dropFirst(), count: range.count * inner,
                      data: data + range.lowerBound * inner, storage: storage)
    }

    /// `self[index]` along the first dimension, with that dimension dropped.
    public func row(_ index: Int) -> Tensor {
        slice(index ..< index + 1).reshaped(Array(shape.dropFirst()))
    }

    public subscript(flat index: Int) -> Float {
        get { data[index] }
        nonmutating set { data[index] = newValue }
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }

    /// A copy of the elements as an array.
    public var array: [Float] { Array(buffer) }

    public func zero() { data.update(repeating: 0, count: count) }

    public func fill(_ value: Float) { data.update(repeating: value, count: count) }

    /// Copies `source`'s elements (same element count) into this tensor.
    public func copy(from source: Tensor) {
        precondition(source.count == count, "copy: source \(source.shape) and destination \(shape) differ in size")
        data.update(from: source.data, count: count)
    }

    /// Asserts that the tensor has exactly `expected` shape; `name` labels the operand in the message.
    @inlinable
    public func expect(_ expected: [Int], _ name: String) {
        precondition(shape == expected, "\(name): expected shape \(expected), got \(shape)")
    }

    /// Asserts that `other` has the same shape as this tensor.
    @inlinable
    public func expectSameShape(_ other: Tensor, _ name: String) {
        precondition(shape == other.shape, "\(name): shapes \(shape) and \(other.shape) differ")
    }
}

/// Hands out tensors from large blocks. A model plans its activations with an arena once; `reset` rewinds
/// it so the next step gets the same memory again. If a step needed more than one block, the reset
/// replaces them by a single block of the peak size, so from the second step on nothing is allocated.
public final class Arena {
    private var blocks: [TensorStorage] = []
    private var blockIndex = 0
    private var offset = 0
    private var usedInPass = 0
    private let minimumBlock: Int

    /// How many blocks this arena has allocated in its lifetime.
    public private(set) var blockAllocations = 0

    /// The most elements one pass (between resets) has used, alignment included.
    public private(set) var peakElements = 0

    /// Whether this arena only counts: it hands out unallocated tensors and allocates nothing.
    public let measuring: Bool

    /// `initialCapacity` elements are allocated up front; later blocks are at least `minimumBlock` big.
    public init(initialCapacity: Int = 0, minimumBlock: Int = 1 << 20) {
        self.minimumBlock = minimumBlock
        measuring = false
        if initialCapacity > 0 { addBlock(initialCapacity) }
    }

    /// An arena that only measures: `peakElements` tells how much a plan would need.
    public init(measuring: Void) {
        minimumBlock = 0
        self.measuring = true
    }

    /// A tensor of `shape`, 64-byte aligned, valid until the arena is reset; zero-filled unless
    /// `zeroed` is false (for outputs a kernel overwrites entirely).
    public func tensor(_ shape: [Int], zeroed: Bool = true) -> Tensor {
        let count = Tensor.elementCount(shape)
        let aligned = (count + 15) & ~15
        if measuring {
            usedInPass += aligned
            peakElements = max(peakElements, usedInPass)
            return Tensor.unallocated(shape)
        }
        while blockIndex < blocks.count, offset + aligned > blocks[blockIndex].count {
            blockIndex += 1
            offset = 0
        }
        if blockIndex >= blocks.count { addBlock(max(aligned, minimumBlock)) }
        let t = Tensor(shape: shape, storage: blocks[blockIndex], offset: offset)
        if zeroed { t.zero() }
        offset += aligned
        usedInPass += aligned
        peakElements = max(peakElements, usedInPass)
        return t
    }

    /// Rewinds the arena; tensors handed out before are invalid afterwards.
    public func reset() {
        if blocks.count > 1 {
            blocks.removeAll()
            addBlock(peakElements)
        }
        blockIndex = 0
        offset = 0
        usedInPass = 0
    }

    private func addBlock(_ count: Int) {
        blocks.append(TensorStorage(count: count))
        blockAllocations += 1
    }
}

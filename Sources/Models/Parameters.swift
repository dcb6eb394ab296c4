import Tensors

/// The three parts of the model; freezing, parameter groups and counts are per part.
public enum ModelPart: String, CaseIterable, Codable, Sendable {
    /// `vision_model.*`: the EVA-CLIP ViT.
    case vision
    /// `query_tokens`, `qformer.*` and `language_projection.*`: the Perceive Sampler and its projection.
    case sampler
    /// `language_model.*`: the InternLM decoder.
    case decoder
    /// `*.lora_A.weight`, `*.lora_B.weight`: LoRA adapters of the decoder's linear layers, when it has them.
    case lora
}

/// A parameter's value and its gradient (nil when its part is frozen).
public struct Param {
    public let value: Tensor
    public let grad: Tensor?
}

/// One entry of the parameter registry. `name` is the Hugging Face state-dict key.
public struct ParameterSpec: Equatable, Sendable {
    public let name: String
    public let shape: [Int]
    public let part: ModelPart
    /// AdamW's weight decay applies: matrices and embeddings, not biases or norm weights.
    public let decays: Bool
    /// Where the value starts in `Parameters.values`.
    public let offset: Int
    /// Where the gradient starts in `Parameters.grads`, or nil when the part is frozen.
    public let gradOffset: Int?

    public var count: Int { shape.reduce(1, *) }
}

/// All parameters of a model in one flat buffer, and the gradients of the trainable ones in another, so
/// that the optimizer, checkpoints and all-reduce each see one contiguous array.
public final class Parameters {
    public let specs: [ParameterSpec]
    public let values: TensorStorage
    public let grads: TensorStorage
    private let index: [String: Int]

    init(specs: [ParameterSpec]) {
        self.specs = specs
        values = TensorStorage(count: specs.last.map { $0.offset + $0.count } ?? 0)
        grads = TensorStorage(count: specs.compactMap { spec in spec.gradOffset.map { $0 + spec.count } }.max() ?? 0)
        index = Dictionary(uniqueKeysWithValues: specs.enumerated().map { ($1.name, $0) })
    }

    public func spec(_ name: String) -> ParameterSpec? { index[name].map { specs[$0] } }

    /// The value of parameter `name` (a Hugging Face key).
    public func value(_ name: String) -> Tensor? {
        spec(name).map { Tensor(shape: $0.shape, storage: values, offset: $0.offset) }
    }

    /// The gradient of parameter `name`, or nil if it is unknown or frozen.
    public func grad(_ name: String) -> Tensor? {
        guard let s = spec(name), let g = s.gradOffset else { return nil }
        return Tensor(shape: s.shape, storage: grads, offset: g)
    }

    public func zeroGrads() { grads.base.update(repeating: 0, count: grads.count) }
}

/// Hands out parameters while a model's parts are built, in declaration order. A measuring builder only
/// records the registry (names, shapes, parts) and returns unallocated tensors; `bind()` then allocates
/// the flat buffers, and building the parts again with the binding builder gives them views into it.
public final class ParameterBuilder {
    public private(set) var specs: [ParameterSpec] = []
    public let trainable: Set<ModelPart>
    /// The part whose parameters are being declared.
    public var part = ModelPart.vision
    private let parameters: Parameters?
    private var valueOffset = 0, gradOffset = 0

    /// A builder that only measures.
    public init(trainable: Set<ModelPart>) {
        self.trainable = trainable
        parameters = nil
    }

    private init(binding parameters: Parameters, trainable: Set<ModelPart>) {
        self.trainable = trainable
        self.parameters = parameters
    }

    /// A builder over freshly allocated buffers for the parameters this one measured.
    public func bind() -> ParameterBuilder {
        ParameterBuilder(binding: Parameters(specs: specs), trainable: trainable)
    }

    /// The allocated parameters (nil while measuring).
    public var allocated: Parameters? { parameters }

    public func param(_ name: String, _ shape: [Int]) -> Param {
        let count = shape.reduce(1, *)
        let decays = shape.count >= 2 && !name.hasSuffix("bias")
        let spec = ParameterSpec(name: name, shape: shape, part: part, decays: decays, offset: valueOffset,
                                 gradOffset: trainable.contains(part) ? gradOffset : nil)
        valueOffset += count
        if spec.gradOffset != nil { gradOffset += count }
        if let parameters {
            precondition(parameters.specs.count > specs.count && parameters.specs[specs.count] == spec,
                         "ParameterBuilder: declaration \(specs.count) (\(name) \(shape)) differs from the measured registry")
            specs.append(spec)
            return Param(value: Tensor(shape: shape, storage: parameters.values, offset: spec.offset),
                         grad: spec.gradOffset.map { Tensor(shape: shape, storage: parameters.grads, offset: $0) })
        }
        specs.append(spec)
        return Param(value: .unallocated(shape), grad: trainable.contains(part) ? .unallocated(shape) : nil)
    }

    /// `name.weight` [out, in] and, if `bias`, `name.bias` [out]; with `lora`, also the adapter
    /// `name.lora_A.weight` [r, in] and `name.lora_B.weight` [out, r] (part `lora`).
    public func linear(_ name: String, in inFeatures: Int, out outFeatures: Int, bias: Bool, lora: LoRAConfig? = nil) -> LinearParams {
        let weight = param(name + ".weight", [outFeatures, inFeatures])
        let b = bias ? param(name + ".bias", [outFeatures]) : nil
        guard let lora else { return LinearParams(weight: weight, bias: b, lora: nil) }
        let owner = part
        part = .lora
        defer { part = owner }
        let adapter = LoRAAdapter(a: param(name + LoRAConfig.aSuffix, [lora.rank, inFeatures]), b: param(name + LoRAConfig.bSuffix, [outFeatures, lora.rank]),
                                  scale: lora.scale, dropout: Float(lora.dropout))
        return LinearParams(weight: weight, bias: b, lora: adapter)
    }

    /// `name.weight` [width] and, if `bias`, `name.bias` [width].
    public func norm(_ name: String, _ width: Int, bias: Bool) -> NormParams {
        NormParams(weight: param(name + ".weight", [width]), bias: bias ? param(name + ".bias", [width]) : nil)
    }
}

/// A Linear layer's parameters: weight [out, in], optional bias [out], optional LoRA adapter.
public struct LinearParams {
    public let weight: Param
    public let bias: Param?
    public let lora: LoRAAdapter?

    public var outFeatures: Int { weight.value.shape[0] }
    public var inFeatures: Int { weight.value.shape[1] }

    /// out (N, out) = inp (N, in) W^T + b, plus the adapter's update when `adapter` holds its activations.
    public func forward(_ out: Tensor, _ inp: Tensor, adapter state: LoRAActivations? = nil) {
        guard let lora, let state else { return linearForward(out: out, inp: inp, weight: weight.value, bias: bias?.value) }
        lora.forward(out, inp, weight: weight.value, bias: bias?.value, state)
    }

    /// Accumulates the parameter gradients (if trainable) and dinp (if given), through the adapter too;
    /// with `overwrite`, dinp's old contents are replaced instead of added to.
    public func backward(dinp: Tensor?, dout: Tensor, inp: Tensor, adapter state: LoRAActivations? = nil, scratch: LoRAScratch? = nil,
                         overwrite: Bool = false) {
        guard let lora, let state, let scratch else {
            return linearBackward(dinp: dinp, dweight: weight.grad, dbias: bias?.grad, dout: dout, inp: inp, weight: weight.value, overwrite: overwrite)
        }
        lora.backward(dinp: dinp, dout: dout, inp: inp, weight: weight, bias: bias, state, scratch, overwrite: overwrite)
    }
}

/// A norm's parameters: weight [width], and a bias for LayerNorm.
public struct NormParams {
    public let weight: Param
    public let bias: Param?
}

/// LayerNorm activations: the output and the per-row statistics backward needs.
struct LayerNormActivations {
    let out: Tensor, mean: Tensor, rstd: Tensor

    init(_ arena: Arena, rows: Int, width: Int, shape: [Int]? = nil) {
        out = arena.tensor(shape ?? [rows, width], zeroed: false)
        mean = arena.tensor([rows], zeroed: false)
        rstd = arena.tensor([rows], zeroed: false)
    }

    func forward(_ inp: Tensor, _ p: NormParams, eps: Float) {
        layerNormForward(out: out, mean: mean, rstd: rstd, inp: inp, weight: p.weight.value, bias: p.bias!.value, eps: eps)
    }

    func backward(dinp: Tensor?, dout: Tensor, inp: Tensor, _ p: NormParams) {
        layerNormBackward(dinp: dinp, dweight: p.weight.grad, dbias: p.bias?.grad, dout: dout, inp: inp,
                          weight: p.weight.value, mean: mean, rstd: rstd)
    }
}

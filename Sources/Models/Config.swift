import Foundation
import Tensors

/// A bad model configuration or weight file: the message names the file, the field or key, and what was
/// expected.
public struct ModelError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The vision encoder's config: Hugging Face `Blip2VisionConfig` (EVA-CLIP ViT). Defaults are ViT-g's.
public struct VisionConfig: Codable, Equatable, Sendable {
    public var hiddenSize = 1408
    public var intermediateSize = 6144
    public var numHiddenLayers = 39
    public var numAttentionHeads = 16
    public var imageSize = 224
    public var patchSize = 14
    public var layerNormEps = 1e-6
    public var hiddenAct = "gelu"
    public var qkvBias = true
    public var modelType = "blip_2_vision_model"

    public init() {}

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", imageSize = "image_size", patchSize = "patch_size"
        case layerNormEps = "layer_norm_eps", hiddenAct = "hidden_act", qkvBias = "qkv_bias", modelType = "model_type"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? hiddenSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? intermediateSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? numAttentionHeads
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? imageSize
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? patchSize
        layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps) ?? layerNormEps
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? hiddenAct
        qkvBias = try c.decodeIfPresent(Bool.self, forKey: .qkvBias) ?? qkvBias
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? modelType
    }

    public var headDim: Int { hiddenSize / numAttentionHeads }
    public var patchesPerSide: Int { imageSize / patchSize }
    /// Patches plus the class token: 257 for 224-pixel images and 14-pixel patches.
    public var tokens: Int { patchesPerSide * patchesPerSide + 1 }
}

/// The Perceive Sampler's config: Hugging Face `Blip2QFormerConfig` (BERT-base Q-Former).
public struct QFormerConfig: Codable, Equatable, Sendable {
    public var hiddenSize = 768
    public var intermediateSize = 3072
    public var numHiddenLayers = 12
    public var numAttentionHeads = 12
    public var encoderHiddenSize = 1408
    public var crossAttentionFrequency = 2
    public var layerNormEps = 1e-12
    public var hiddenAct = "gelu"
    public var useQformerTextInput = false
    public var modelType = "blip_2_qformer"

    public init() {}

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", encoderHiddenSize = "encoder_hidden_size"
        case crossAttentionFrequency = "cross_attention_frequency", layerNormEps = "layer_norm_eps"
        case hiddenAct = "hidden_act", useQformerTextInput = "use_qformer_text_input", modelType = "model_type"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? hiddenSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? intermediateSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? numAttentionHeads
        encoderHiddenSize = try c.decodeIfPresent(Int.self, forKey: .encoderHiddenSize) ?? encoderHiddenSize
        crossAttentionFrequency = try c.decodeIfPresent(Int.self, forKey: .crossAttentionFrequency) ?? crossAttentionFrequency
        layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps) ?? layerNormEps
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? hiddenAct
        useQformerTextInput = try c.decodeIfPresent(Bool.self, forKey: .useQformerTextInput) ?? useQformerTextInput
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? modelType
    }

    public var headDim: Int { hiddenSize / numAttentionHeads }

    /// Whether layer `index` has cross-attention to the image embeddings.
    public func hasCrossAttention(_ index: Int) -> Bool { index % crossAttentionFrequency == 0 }
}

/// The decoder's config: Hugging Face `LlamaConfig` (InternLM-7B is Llama with q/k/v/o biases).
public struct TextConfig: Codable, Equatable, Sendable {
    public var hiddenSize = 4096
    public var intermediateSize = 11008
    public var numHiddenLayers = 32
    public var numAttentionHeads = 32
    public var numKeyValueHeads: Int?
    public var vocabSize = 32000
    public var maxPositionEmbeddings = 2048
    public var rmsNormEps = 1e-6
    public var ropeTheta = 10_000.0
    public var attentionBias = false
    public var mlpBias = false
    public var hiddenAct = "silu"
    public var tieWordEmbeddings = false
    public var bosTokenId: Int? = 1
    public var eosTokenId: Int? = 2
    public var padTokenId: Int?
    public var modelType = "llama"

    public init() {}

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads", vocabSize = "vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings", rmsNormEps = "rms_norm_eps", ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters", attentionBias = "attention_bias", mlpBias = "mlp_bias"
        case hiddenAct = "hidden_act", tieWordEmbeddings = "tie_word_embeddings", headDim = "head_dim"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id", padTokenId = "pad_token_id", modelType = "model_type"
    }

    /// transformers 5 keeps the RoPE base in `rope_parameters`; earlier versions in `rope_theta`.
    struct RopeParameters: Codable {
        var ropeTheta: Double?
        var ropeType: String?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta", ropeType = "rope_type" }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? hiddenSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? intermediateSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? numAttentionHeads
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? vocabSize
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? maxPositionEmbeddings
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? rmsNormEps
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? attentionBias
        mlpBias = try c.decodeIfPresent(Bool.self, forKey: .mlpBias) ?? mlpBias
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? hiddenAct
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? tieWordEmbeddings
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId) ?? bosTokenId
        eosTokenId = try c.decodeIfPresent(Int.self, forKey: .eosTokenId) ?? eosTokenId
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? modelType
        if let rope = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters) {
            if let type = rope.ropeType, type != "default" {
                throw ModelError("text_config.rope_parameters.rope_type: '\(type)' is not supported (only 'default')")
            }
            ropeTheta = rope.ropeTheta ?? ropeTheta
        } else {
            ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? ropeTheta
        }
        if let headDim = try c.decodeIfPresent(Int.self, forKey: .headDim), headDim != hiddenSize / max(numAttentionHeads, 1) {
            throw ModelError("text_config.head_dim: \(headDim) differs from hidden_size / num_attention_heads = \(hiddenSize / max(numAttentionHeads, 1))")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads ?? numAttentionHeads, forKey: .numKeyValueHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(RopeParameters(ropeTheta: ropeTheta, ropeType: "default"), forKey: .ropeParameters)
        try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(mlpBias, forKey: .mlpBias)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(bosTokenId, forKey: .bosTokenId)
        try c.encode(eosTokenId, forKey: .eosTokenId)
        try c.encode(padTokenId, forKey: .padTokenId)
        try c.encode(modelType, forKey: .modelType)
    }

    public var headDim: Int { hiddenSize / numAttentionHeads }
}

/// The whole model's config: Hugging Face `Blip2Config` with a Llama text config. This is the format of
/// `config.json` in a Hugging Face directory and of the model configs in `Recipes/models/`.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var visionConfig = VisionConfig()
    public var qformerConfig = QFormerConfig()
    public var textConfig = TextConfig()
    public var numQueryTokens = 32
    /// The placeholder token id: each image takes `numQueryTokens` of them in the text.
    public var imageTokenIndex: Int?
    public var modelType = "blip-2"

    public init() {}

    enum CodingKeys: String, CodingKey {
        case visionConfig = "vision_config", qformerConfig = "qformer_config", textConfig = "text_config"
        case numQueryTokens = "num_query_tokens", imageTokenIndex = "image_token_index", imageTokenId = "image_token_id"
        case modelType = "model_type", architectures, useDecoderOnly = "use_decoder_only_language_model"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        visionConfig = try c.decodeIfPresent(VisionConfig.self, forKey: .visionConfig) ?? visionConfig
        qformerConfig = try c.decodeIfPresent(QFormerConfig.self, forKey: .qformerConfig) ?? qformerConfig
        textConfig = try c.decodeIfPresent(TextConfig.self, forKey: .textConfig) ?? textConfig
        numQueryTokens = try c.decodeIfPresent(Int.self, forKey: .numQueryTokens) ?? numQueryTokens
        imageTokenIndex = try c.decodeIfPresent(Int.self, forKey: .imageTokenIndex) ?? c.decodeIfPresent(Int.self, forKey: .imageTokenId)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? modelType
        if try c.decodeIfPresent(Bool.self, forKey: .useDecoderOnly) == false {
            throw ModelError("use_decoder_only_language_model: only decoder-only language models are supported")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(["Blip2ForConditionalGeneration"], forKey: .architectures)
        try c.encode(modelType, forKey: .modelType)
        try c.encode(visionConfig, forKey: .visionConfig)
        try c.encode(qformerConfig, forKey: .qformerConfig)
        try c.encode(textConfig, forKey: .textConfig)
        try c.encode(numQueryTokens, forKey: .numQueryTokens)
        try c.encode(imageTokenIndex, forKey: .imageTokenIndex)
        try c.encode(true, forKey: .useDecoderOnly)
    }

    /// Reads and validates a config file; errors name the file and the field.
    public static func load(_ url: URL) throws -> ModelConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelError("\(url.path): cannot read the model config (\(error.localizedDescription))")
        }
        let config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: data)
        } catch let error as ModelError {
            throw ModelError("\(url.path): \(error.description)")
        } catch let error as DecodingError {
            throw ModelError("\(url.path): \(error.jsonPathDescription())")
        }
        do { try config.validate() } catch let error as ModelError {
            throw ModelError("\(url.path): \(error.description)")
        }
        return config
    }

    /// Writes the config as Hugging Face's `config.json` (pretty, sorted keys).
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// Throws a `ModelError` naming the first field with an unsupported or inconsistent value.
    public func validate() throws {
        func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
            if !condition { throw ModelError(message()) }
        }
        let v = visionConfig, q = qformerConfig, t = textConfig
        try require(modelType == "blip-2", "model_type: '\(modelType)' is not supported (expected 'blip-2')")
        try require(v.modelType == "blip_2_vision_model", "vision_config.model_type: '\(v.modelType)' is not supported (expected 'blip_2_vision_model')")
        try require(q.modelType == "blip_2_qformer", "qformer_config.model_type: '\(q.modelType)' is not supported (expected 'blip_2_qformer')")
        try require(t.modelType == "llama", "text_config.model_type: '\(t.modelType)' is not supported (expected 'llama')")
        for (name, value) in [("vision_config.hidden_size", v.hiddenSize), ("vision_config.intermediate_size", v.intermediateSize),
                              ("vision_config.num_hidden_layers", v.numHiddenLayers), ("vision_config.num_attention_heads", v.numAttentionHeads),
                              ("vision_config.image_size", v.imageSize), ("vision_config.patch_size", v.patchSize),
                              ("qformer_config.hidden_size", q.hiddenSize), ("qformer_config.intermediate_size", q.intermediateSize),
                              ("qformer_config.num_hidden_layers", q.numHiddenLayers), ("qformer_config.num_attention_heads", q.numAttentionHeads),
                              ("qformer_config.cross_attention_frequency", q.crossAttentionFrequency),
                              ("text_config.hidden_size", t.hiddenSize), ("text_config.intermediate_size", t.intermediateSize),
                              ("text_config.num_hidden_layers", t.numHiddenLayers), ("text_config.num_attention_heads", t.numAttentionHeads),
                              ("text_config.vocab_size", t.vocabSize), ("text_config.max_position_embeddings", t.maxPositionEmbeddings),
                              ("num_query_tokens", numQueryTokens)] {
            try require(value > 0, "\(name): must be positive, got \(value)")
        }
        try require(v.hiddenSize % v.numAttentionHeads == 0, "vision_config.hidden_size: \(v.hiddenSize) is not divisible by num_attention_heads \(v.numAttentionHeads)")
        try require(v.imageSize % v.patchSize == 0, "vision_config.image_size: \(v.imageSize) is not a multiple of patch_size \(v.patchSize)")
        try require(v.hiddenAct == "gelu", "vision_config.hidden_act: '\(v.hiddenAct)' is not supported (expected 'gelu')")
        try require(q.hiddenSize % q.numAttentionHeads == 0, "qformer_config.hidden_size: \(q.hiddenSize) is not divisible by num_attention_heads \(q.numAttentionHeads)")
        try require(q.encoderHiddenSize == v.hiddenSize, "qformer_config.encoder_hidden_size: \(q.encoderHiddenSize) differs from vision_config.hidden_size \(v.hiddenSize)")
        try require(q.hiddenAct == "gelu", "qformer_config.hidden_act: '\(q.hiddenAct)' is not supported (expected 'gelu')")
        try require(!q.useQformerTextInput, "qformer_config.use_qformer_text_input: the Q-Former's text branch is not supported")
        try require(t.hiddenSize % t.numAttentionHeads == 0, "text_config.hidden_size: \(t.hiddenSize) is not divisible by num_attention_heads \(t.numAttentionHeads)")
        try require(t.headDim % 2 == 0, "text_config: head dimension \(t.headDim) must be even for rotary embeddings")
        try require((t.numKeyValueHeads ?? t.numAttentionHeads) == t.numAttentionHeads,
                    "text_config.num_key_value_heads: \(t.numKeyValueHeads ?? 0) differs from num_attention_heads \(t.numAttentionHeads); grouped-query attention is not supported")
        try require(t.hiddenAct == "silu", "text_config.hidden_act: '\(t.hiddenAct)' is not supported (expected 'silu')")
        try require(!t.mlpBias, "text_config.mlp_bias: MLP biases are not supported")
        try require(!t.tieWordEmbeddings, "text_config.tie_word_embeddings: tied embeddings are not supported (InternLM unties them)")
        guard let image = imageTokenIndex else { throw ModelError("image_token_index: missing; the text needs a placeholder token for images") }
        try require(image >= 0 && image < t.vocabSize, "image_token_index: \(image) is outside the vocabulary of \(t.vocabSize)")
    }
}


/// The model FLOPs of one training step, counted from the config (multiply-adds x 2): forward of every
/// part the batch passes through; backward of trained parts twice their forward (input and weight
/// gradients), of frozen parts that sit between trained ones and the loss once (input gradients only),
/// of frozen parts with nothing trained upstream not at all. Attention's score and value products count
/// in full (no causal halving); elementwise work does not count.
public struct FlopCount: Sendable {
    public let forward: Double
    public let backward: Double
    public var total: Double { forward + backward }

    public init(config c: ModelConfig, trainable: Set<ModelPart>, lora: LoRAConfig?, batch: Int, length t: Int, images n: Int) {
        let v = c.visionConfig, q = c.qformerConfig, x = c.textConfig
        let (tv, d, f) = (Double(v.tokens), Double(v.hiddenSize), Double(v.intermediateSize))
        let patches = Double(v.patchesPerSide * v.patchesPerSide), pixels = Double(3 * v.patchSize * v.patchSize)
        let visionLinear = 2 * patches * pixels * d + Double(v.numHiddenLayers) * 2 * tv * (4 * d * d + 2 * d * f)
        let visionAttention = Double(v.numHiddenLayers) * 4 * tv * tv * d
        let (nq, h, i, e) = (Double(c.numQueryTokens), Double(q.hiddenSize), Double(q.intermediateSize), Double(q.encoderHiddenSize))
        var samplerLinear = 2 * nq * h * Double(x.hiddenSize), samplerAttention = 0.0
        for l in 0 ..< q.numHiddenLayers {
            samplerLinear += 2 * nq * 4 * h * h + 2 * nq * 2 * h * i
            samplerAttention += 4 * nq * nq * h
            if q.hasCrossAttention(l) {
                samplerLinear += 2 * nq * 2 * h * h + 2 * tv * 2 * e * h
                samplerAttention += 4 * nq * tv * h
            }
        }
        let (tt, dt, it, vocab) = (Double(t), Double(x.hiddenSize), Double(x.intermediateSize), Double(x.vocabSize))
        let decoderLinear = Double(x.numHiddenLayers) * 2 * tt * (4 * dt * dt + 3 * dt * it) + 2 * tt * dt * vocab
        let decoderAttention = Double(x.numHiddenLayers) * 4 * tt * tt * dt
        // Adapters: per sequence, and per micro-batch for the dense ones' product and its gradient's split.
        var adapterForward = 0.0, adapterBackward = 0.0, productForward = 0.0, productBackward = 0.0
        if let lora {
            let widths = ["q_proj": (dt, dt), "k_proj": (dt, dt), "v_proj": (dt, dt), "o_proj": (dt, dt), "gate_proj": (dt, it), "up_proj": (dt, it), "down_proj": (it, dt)]
            let (layers, r) = (Double(x.numHiddenLayers), Double(lora.rank))
            for target in lora.targets {
                let (inF, outF) = widths[target]!
                if LoRAConfig.isDense(rank: lora.rank, inFeatures: Int(inF), outFeatures: Int(outF)) {
                    // Without dropout the product joins the base weight's; with it, it is one more product each way.
                    let product = 2 * tt * inF * outF
                    adapterForward += layers * (lora.dropout > 0 ? product : 0)
                    adapterBackward += layers * (lora.dropout > 0 ? 2 : 1) * product
                    productForward += layers * 2 * r * inF * outF
                    productBackward += layers * 4 * r * inF * outF
                } else {
                    adapterForward += layers * 2 * tt * r * (inF + outF)
                    adapterBackward += layers * 4 * tt * r * (inF + outF)
                }
            }
        }
        let (images, sequences) = (Double(n), Double(batch))
        forward = images * (visionLinear + visionAttention + samplerLinear + samplerAttention) + sequences * (decoderLinear + decoderAttention + adapterForward) + productForward
        // Backward factors per part: 2 trained, 1 on the path from a trained part to the loss, 0 else.
        let visionFactor = trainable.contains(.vision) ? 2.0 : 0
        let samplerFactor = trainable.contains(.sampler) ? 2.0 : trainable.contains(.vision) ? 1 : 0
        let decoderFactor = trainable.contains(.decoder) ? 2.0 : trainable.isEmpty ? 0 : 1
        backward = images * (visionFactor * (visionLinear + visionAttention) + samplerFactor * samplerLinear + (samplerFactor > 0 ? 2 : 0) * samplerAttention)
            + sequences * (decoderFactor * decoderLinear + (decoderFactor > 0 ? 2 : 0) * decoderAttention + adapterBackward) + productBackward
    }
}

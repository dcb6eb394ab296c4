// swift-tools-version:6.0
// xtrain: training and fine-tuning of InternLM-XComposer-style vision-language models, on the CPU.
import PackageDescription

// Vector code needs a target CPU: x86-64 builds assume AVX2 and FMA (Haswell and later).
#if arch(x86_64)
let cpuFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
let cVectorFlags: [CSetting] = [.unsafeFlags(["-O3", "-mavx2", "-mfma", "-Wno-psabi"])]
#else
let cpuFlags: [SwiftSetting] = []
let cVectorFlags: [CSetting] = [.unsafeFlags(["-O3"])]
#endif

let package = Package(
    name: "xtrain",
    products: [
        .executable(name: "xtrain", targets: ["xtrain"]),
        .library(name: "Tensors", targets: ["Tensors"]),
        .library(name: "Models", targets: ["Models"]),
        .library(name: "Datasets", targets: ["Datasets"]),
        .library(name: "Training", targets: ["Training"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // System libraries, as Debian installs them (paths from pkg-config).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),

        // PNG and JPEG decoding (libpng, libjpeg-turbo) behind a setjmp-safe C shim.
        .target(name: "CImageCodecs", cSettings: [.unsafeFlags(["-I/usr/include/libpng16"])],
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]),

        // HDF5 checkpoints (Debian's serial HDF5) behind an error-returning C shim.
        .target(name: "CH5IO", dependencies: ["CHDF5"]),

        // Open MPI for data-parallel runs, loaded with dlopen only under mpirun (no MPI needed to build or
        // to run on one process).
        .target(name: "CMPI", linkerSettings: [.linkedLibrary("dl")]),

        // Matrix products with bf16 operands and fp32 accumulation: Intel AMX tiles, else AVX512-BF16, else OpenBLAS.
        .target(name: "CMatmul", dependencies: ["CBLAS"], cSettings: [.unsafeFlags(["-O3"])]),

        // The exp-based elementwise and row kernels, on clang's vector extensions.
        .target(name: "CVectorMath", cSettings: cVectorFlags),

        // Float32 tensors and hand-written forward/backward kernels.
        .target(name: "Tensors", dependencies: ["CBLAS", "CMatmul", "CVectorMath"], swiftSettings: cpuFlags),

        // The model: ViT, Perceive Sampler, decoder; configs, parameter registry, safetensors.
        .target(name: "Models", dependencies: ["Tensors"], swiftSettings: cpuFlags),

        // Sharded zstd token streams, tokenizer, images, synthetic data and the loader.
        .target(name: "Datasets", dependencies: ["Tensors", "CZstd", "CImageCodecs"], swiftSettings: cpuFlags),

        // Recipes, AdamW, schedules, checkpoints, the training loop, metrics.
        .target(name: "Training", dependencies: ["Tensors", "Models", "Datasets", "CH5IO", "CMPI"], swiftSettings: cpuFlags),

        // The command-line tool.
        .executableTarget(
            name: "xtrain",
            dependencies: [
                "Tensors", "Models", "Datasets", "Training", "CBLAS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: cpuFlags
        ),

        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "CMatmul", "CVectorMath"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Tensors"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Tensors"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "Datasets", "Tensors"]),
        .testTarget(name: "EndToEndTests", dependencies: ["xtrain", "Training", "Models", "Datasets", "Tensors"]),
        .testTarget(name: "SystemLibrariesTests", dependencies: ["CBLAS", "CZstd", "CHDF5"]),
    ],
    // Kernels hand raw pointers to their parallel chunks; the Swift 5 mode keeps that free of Sendable ceremony.
    swiftLanguageModes: [.v5]
)

// zstd's one-shot, streaming and frame-inspection API (ZSTD_STATIC_LINKING_ONLY is not needed).
#include <zstd.h>
#include <zstd_errors.h>

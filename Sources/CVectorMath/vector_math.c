#include "vector_math.h"

#include <string.h>

typedef float v16 __attribute__((ext_vector_type(16)));
typedef int v16i __attribute__((ext_vector_type(16)));

/// `lanes` (1...16) floats from p, the rest zero.
static inline v16 load(const float *p, long lanes) {
    v16 v = 0;
    if (lanes == 16)
        memcpy(&v, p, sizeof v);
    else
        memcpy(&v, p, (size_t)lanes * sizeof(float));
    return v;
}

/// The first `lanes` (1...16) floats of v to p.
static inline void store(v16 v, float *p, long lanes) {
    if (lanes == 16)
        memcpy(p, &v, sizeof v);
    else
        memcpy(p, &v, (size_t)lanes * sizeof(float));
}

static inline long lanes_at(long i, long n) { return n - i < 16 ? n - i : 16; }

/// All ones in lanes below `lanes`, zero above.
static inline v16i lane_mask(long lanes) {
    const v16i iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    return iota < (int)lanes;
}

/// a where mask is set, else b.
static inline v16 select(v16i mask, v16 a, v16 b) { return (v16)(((v16i)a & mask) | ((v16i)b & ~mask)); }

static inline v16 vexp(v16 x) {
    x = __builtin_elementwise_min(__builtin_elementwise_max(x, (v16)-87.0f), (v16)88.0f);
    const v16 magic = 12582912.0f;   // 1.5 * 2^23: adding it rounds to an integer held in the mantissa
    v16 t = x * 1.44269504f + magic;
    v16 n = t - magic;
    v16 r = x - n * 0.693359375f + n * 2.12194440e-4f;
    v16 p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    v16 y = p * r * r + r + 1;
    v16i exponent = (((v16i)t) - 0x4B400000 + 127) << 23;
    return y * (v16)exponent;
}

static inline v16 verf(v16 x) {
    v16i bits = (v16i)x;
    v16i sign = bits & (int)0x80000000;
    v16 a = (v16)(bits & 0x7FFFFFFF);
    v16 t = 1 / (1 + 0.3275911f * a);
    v16 poly = 1.061405429f;
    poly = poly * t - 1.453152027f;
    poly = poly * t + 1.421413741f;
    poly = poly * t - 0.284496736f;
    poly = poly * t + 0.254829592f;
    v16 y = 1 - poly * t * vexp(-a * a);
    return (v16)((v16i)y ^ sign);
}

static inline v16 vsigmoid(v16 x) { return 1 / (1 + vexp(-x)); }

float xt_exp(float x) { return vexp((v16)x)[0]; }

float xt_exp_sum(float *y, const float *x, long n, float shift) {
    v16 acc = 0;
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        v16 e = vexp(load(x + i, 16) - shift);
        if (y) store(e, y + i, 16);
        acc += e;
    }
    if (i < n) {
        v16 e = select(lane_mask(n - i), vexp(load(x + i, n - i) - shift), 0);
        if (y) store(e, y + i, n - i);
        acc += e;
    }
    float sum = 0;
    for (int j = 0; j < 16; j++) sum += acc[j];
    return sum;
}

float xt_row_max(const float *x, long n) {
    v16 acc = -__builtin_inff();
    long i = 0;
    for (; i + 16 <= n; i += 16) acc = __builtin_elementwise_max(acc, load(x + i, 16));
    if (i < n) acc = __builtin_elementwise_max(acc, select(lane_mask(n - i), load(x + i, n - i), acc));
    float m = acc[0];
    for (int j = 1; j < 16; j++) m = acc[j] > m ? acc[j] : m;
    return m;
}

void xt_add_scaled_exp(float *y, const float *x, long n, float shift, float k) {
    for (long i = 0; i < n; i += 16) {
        long lanes = lanes_at(i, n);
        store(load(y + i, lanes) + k * vexp(load(x + i, lanes) - shift), y + i, lanes);
    }
}

void xt_gelu_forward(float *out, const float *x, long n) {
    for (long i = 0; i < n; i += 16) {
        long lanes = lanes_at(i, n);
        v16 v = load(x + i, lanes);
        store(0.5f * v * (1 + verf(v * 0.70710678f)), out + i, lanes);
    }
}

void xt_gelu_backward(float *dinp, const float *dout, const float *x, long n, int accumulate) {
    for (long i = 0; i < n; i += 16) {
        long lanes = lanes_at(i, n);
        v16 v = load(x + i, lanes);
        v16 cdf = 0.5f * (1 + verf(v * 0.70710678f));
        v16 pdf = 0.39894228f * vexp(-0.5f * v * v);
        v16 old = accumulate ? load(dinp + i, lanes) : (v16){0};
        store(old + load(dout + i, lanes) * (cdf + v * pdf), dinp + i, lanes);
    }
}

void xt_silu_forward(float *out, const float *x, long n) {
    for (long i = 0; i < n; i += 16) {
        long lanes = lanes_at(i, n);
        v16 v = load(x + i, lanes);
        store(v * vsigmoid(v), out + i, lanes);
    }
}

void xt_silu_backward(float *dinp, const float *dout, const float *x, long n) {
    for (long i = 0; i < n; i += 16) {
        long lanes = lanes_at(i, n);
        v16 v = load(x + i, lanes), s = vsigmoid(v);
        store(load(dinp + i, lanes) + load(dout + i, lanes) * s * (1 + v * (1 - s)), dinp + i, lanes);
    }
}

void xt_swiglu_forward(float *out, const float *gate, const float *up, long n) {
    for (long i = 0; i < n; i += 16) {
        long lanes = lanes_at(i, n);
        v16 g = load(gate + i, lanes);
        store(g * vsigmoid(g) * load(up + i, lanes), out + i, lanes);
    }
}

void xt_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, long n, int accumulate) {
    for (long i = 0; i < n; i += 16) {
        long lanes = lanes_at(i, n);
        v16 g = load(gate + i, lanes), s = vsigmoid(g), dy = load(dout + i, lanes);
        v16 oldGate = accumulate ? load(dgate + i, lanes) : (v16){0}, oldUp = accumulate ? load(dup + i, lanes) : (v16){0};
        store(oldGate + dy * load(up + i, lanes) * s * (1 + g * (1 - s)), dgate + i, lanes);
        store(oldUp + dy * g * s, dup + i, lanes);
    }
}

#ifndef XTRAIN_VECTOR_MATH_H
#define XTRAIN_VECTOR_MATH_H

// Elementwise kernels built on exp: the row maximum and exponential rows of softmax and cross-entropy,
// GELU (erf), SiLU and SwiGLU, forward and backward. Written with clang's vector extensions on sixteen lanes, which compile
// to whole-register instructions (Swift's SIMD lane selects compile one lane at a time). Every element,
// the last partial group included, goes through the same vector arithmetic.

/// e^x: range reduction x = n ln2 + r (ln2 in two parts), a degree-6 polynomial, 2^n in the exponent;
/// within 3e-7 relative for x in [-87, 88], inputs outside clamped. The arithmetic of every kernel here.
float xt_exp(float x);

/// y[j] = e^(x[j] - shift) for j < n, returning their sum (sixteen partial sums, combined in a fixed
/// order); y may be x, or NULL to only sum.
float xt_exp_sum(float *y, const float *x, long n, float shift);

/// The maximum of x[0..<n] (-infinity when n = 0).
float xt_row_max(const float *x, long n);

/// y[j] += k * e^(x[j] - shift) for j < n.
void xt_add_scaled_exp(float *y, const float *x, long n, float shift, float k);

/// out = 0.5 x (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
void xt_gelu_forward(float *out, const float *x, long n);

/// dinp += dout * (Phi(x) + x phi(x)); with accumulate 0, dinp = the product.
void xt_gelu_backward(float *dinp, const float *dout, const float *x, long n, int accumulate);

/// out = x sigmoid(x).
void xt_silu_forward(float *out, const float *x, long n);

/// dinp += dout * sigmoid(x) (1 + x (1 - sigmoid(x))).
void xt_silu_backward(float *dinp, const float *dout, const float *x, long n);

/// out = silu(gate) * up.
void xt_swiglu_forward(float *out, const float *gate, const float *up, long n);

/// dgate += dout * up * silu'(gate), dup += dout * silu(gate); with accumulate 0, = instead of +=.
void xt_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, long n, int accumulate);

#endif

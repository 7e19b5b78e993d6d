"""The precision of the networks' matrix products: float32 (default) or bfloat16 with float32 accumulation.

Option ``[mechanism] matmul_dtype`` of every network mechanism (regretnet, equivariant,
public_simple, public_general, social_choice_net, bb_payments and the learned symmetric_auction):

* ``"float32"`` (default): W x is computed in the dtype of the parameters and inputs (float32,
  or float64 with x64 enabled), exactly as before the option existed.
* ``"bfloat16"``: the operands of every dense product are rounded to bfloat16 and the products are
  accumulated in float32 (``preferred_element_type=float32``; what GPU/TPU tensor cores do), then
  cast back to the computation dtype. Parameters, biases, activations, softmaxes, payments,
  gradients and optimiser state stay in float32. Only the network products change: closed-form
  parts (menus, affine maximisers, min-max nets, quadrature) have no dense layers and no option.

Error bound. bfloat16 keeps 8 significant bits, so rounding to nearest gives
ŵ = w(1 + δ), x̂ = x(1 + ε) with |δ|, |ε| ≤ u = 2^-8. The product of two 8-bit significands has at
most 16 bits and is exact in float32; summing K of them in float32 adds at most
γ_K ≈ K·2^-24 relative to Σ|ŵ_k x̂_k| (Higham, Accuracy and Stability, §3.1). Hence for one output
of a dense layer y = Σ_k w_k x_k

    |ŷ − y| ≤ β_K · Σ_k |w_k| |x_k|,      β_K = (2u + u²)(1 + K·2^-24) + K·2^-24 ≈ 2^-7 + K·2^-24,   (P1)

a relative error of about 2^-7 of the absolute product (2^-8 per rounded operand). Through a
network z_{l+1} = σ(W_l z_l + c_l) with a 1-Lipschitz activation (tanh, relu) the errors
d_l = |ẑ_l − z_l| obey, componentwise,

    d_{l+1} ≤ |W_l| (β_{K_l} |z_l| + (1 + β_{K_l}) d_l),      d_0 = 0,                          (P2)

(the rounding of the product at ẑ_l, |ẑ_l| ≤ |z_l| + d_l, plus the propagated difference
|W_l||ẑ_l − z_l|). ``tests/test_precision.py`` checks (P1) and (P2) against float64 references.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Float

from ...errors import ConfigError

MATMUL_DTYPES = ("float32", "bfloat16")
DEFAULT_MATMUL_DTYPE = "float32"


def parse_matmul_dtype(value: Any) -> str:
    """Option ``matmul_dtype``: ``"float32"`` or ``"bfloat16"`` (else a one-line ConfigError)."""
    if not isinstance(value, str) or value not in MATMUL_DTYPES:
        raise ConfigError(f"mechanism.matmul_dtype must be one of {', '.join(MATMUL_DTYPES)}, got {value!r}")
    return value


def rounding_bound(k: int) -> float:
    """β_K of (P1): the relative error bound of a length-K bfloat16 product with float32 accumulation."""
    u, g = 2.0**-8, k * 2.0**-24
    return (2 * u + u * u) * (1 + g) + g


def dense(layer, x: Float[Array, "... inputs"], matmul_dtype: str) -> Float[Array, "... outputs"]:
    """W x + c of an ``eqx.nn.Linear``-like ``layer`` (``weight`` (out, in), ``bias`` (out,)) for one
    input vector (use under ``vmap``); ``"float32"`` calls the layer itself (unchanged numerics)."""
    if matmul_dtype == "float32":
        return layer(x)
    y = jnp.matmul(layer.weight.astype(jnp.bfloat16), x.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    return y.astype(jnp.result_type(x.dtype, layer.weight.dtype)) + layer.bias


def contract(subscripts: str, x: Array, w: Array, matmul_dtype: str) -> Array:
    """``jnp.einsum(subscripts, x, w)`` with bfloat16 operands and float32 accumulation if asked."""
    if matmul_dtype == "float32":
        return jnp.einsum(subscripts, x, w)
    y = jnp.einsum(subscripts, x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    return y.astype(jnp.result_type(x.dtype, w.dtype))

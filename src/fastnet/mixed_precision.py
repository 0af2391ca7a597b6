"""Keras's mixed-precision API: set_global_policy('mixed_bfloat16' | 'float32'), global_policy(), Policy, and
a layer's dtype= argument taking the same names.

Under 'mixed_bfloat16' (Keras's definition) a layer's variables stay float32 and its products compute with
bfloat16 operands: the Dense and Conv2D kernels round both operands of every GEMM (forward, data gradient,
filter gradient; after im2col or the Winograd transforms) to the nearest bfloat16 and accumulate in float32
(csrc/fastnet.h, FN_BFLOAT16). Weights, optimizer state, gradient accumulation, bias, activations, softmax,
loss and every reduction stay float32, so where the roundings happen is exactly: the two operands of each product.

Three paths run the products. On a CPU with AMX (GEMM path 'amx_bf16', the default there: Intel Xeons since
Sapphire Rapids) a 32x32 micro-kernel multiplies tiles of bfloat16 pairs with TDPBF16PS. On a CPU with AVX512_BF16
but no AMX (GEMM path 'avx512_bf16', the default there: AMD Zen 4) an 8x32 micro-kernel multiplies the same pairs
with VDPBF16PS, two products per float32 lane and instruction. Both native kernels pack both operands as bfloat16
pairs along K and accumulate in float32. Elsewhere (or with set_isa('avx512'), 'avx2', 'generic') the portable path
rounds the operands the same way as the GEMM packs them, then runs the float32 micro-kernel of the ISA (a product of
two bfloat16 values is exact in float32). The paths make the same roundings of the operands and differ only in the
order the float32 accumulation rounds: their last bits differ, never the model's quality. bf16_path() says which
is in use.

A layer takes the global policy in force when it is created (Keras); float32 is the default, and with it every
result is bit-identical to fastnet without this module.
"""
from fastnet import _check, _kernels

POLICIES = {"float32": "float32", "mixed_bfloat16": "bfloat16"}  # policy name -> compute dtype


class Policy:
    """A dtype policy: variables in float32, computations in compute_dtype ('float32' or 'bfloat16')."""

    def __init__(self, name):
        if isinstance(name, Policy):
            name = name.name
        if not isinstance(name, str) or name not in POLICIES:
            hint = (" (half precision is not fast on CPUs: use 'mixed_bfloat16')" if name in ("mixed_float16",
                                                                                             "float16") else
                    " (fastnet keeps variables in float32: use 'mixed_bfloat16')" if name == "bfloat16" else "")
            raise ValueError(f"unknown dtype policy {name!r}; fastnet has {', '.join(map(repr, POLICIES))}{hint}")
        self.name = name

    @property
    def compute_dtype(self):
        return POLICIES[self.name]

    @property
    def variable_dtype(self):
        return "float32"

    def __eq__(self, other):
        return isinstance(other, Policy) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f'<Policy "{self.name}">'


DTypePolicy = Policy  # Keras 3's name of the same class

_global = Policy("float32")


def set_global_policy(policy):
    """The policy of layers created from now on: 'float32' (the default) or 'mixed_bfloat16' (or a Policy)."""
    global _global
    _global = Policy(policy)


def global_policy():
    return _global


def policy_of(dtype, where):
    """A layer's policy from its dtype= argument: None takes the global policy (Keras)."""
    if dtype is None:
        return _global
    if not isinstance(dtype, (str, Policy)):
        raise TypeError(f"{where}: dtype must be a policy name ('float32', 'mixed_bfloat16') or a Policy, got "
                        f"{_check._shown(dtype)}")
    try:
        return Policy(dtype)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


NATIVE_PATHS = {"amx_bf16": "native AMX", "avx512_bf16": "native VDPBF16PS"}  # GEMM path -> its bf16 products


def native_bf16():
    """Whether bfloat16 products run on a native micro-kernel now (GEMM path 'amx_bf16' or 'avx512_bf16')."""
    return _kernels.get_isa() in NATIVE_PATHS


def bf16_path():
    """The path bfloat16 products take now: 'native AMX', 'native VDPBF16PS' or 'portable'."""
    return NATIVE_PATHS.get(_kernels.get_isa(), "portable")


def describe(policy):
    """The policy and the path its products take, for summary() and fastnet.info()."""
    if policy.compute_dtype == "float32":
        return policy.name
    return f"{policy.name} ({bf16_path()} bfloat16 products)"

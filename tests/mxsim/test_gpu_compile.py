"""The Triton matmul kernel compiled ahead of time for the H200's architecture (sm_90), on a
machine without a GPU: Triton's own compiler and ptxas (shipped in its wheel) build the
cubin, cuobjdump reads its resources. Catches what the interpreter (TRITON_INTERPRET=1) cannot:
code that does not compile (a non-constexpr global, a runtime branch that merges an int64 and
an int32 name) and register spills of a launch configuration. Skips where Triton is not
installed (CI: the CPU install has no Triton)."""

import os
import re
import subprocess

import pytest

triton = pytest.importorskip("triton")
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from mxsim import gpu  # noqa: E402
from mxsim.gpu import mm_kernel as MM  # noqa: E402

CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
POINTERS = ["*i8", "*i8", "*i32", "*i32", "*i32", "*i32", "*i8", "*i8", "*fp64", "*i8"]


def _compile(config, ACC, W=64, SATURATE=False, FAST=False, WIDE=False, LA=1, LB=1, SHADOW=False):
    fn = MM.mx_matmul_kernel
    BM, BN, warps, stages = gpu.MM_CONFIGS[config]
    sig = dict(zip(fn.arg_names, POINTERS + ["i32"] * 6))
    if ACC == 1:
        sig["out_ptr"] = "*fp32"
    hi = (1 << (W - 1)) - 1
    consts = dict(BLK=32, KP=32, LA=LA, LB=LB, BM=BM, BN=BN, GROUP=gpu.MM_GROUP, ACC=ACC, W=W, SATURATE=SATURATE,
                  HI=hi, LO=-hi - 1, FRAC=8, WIDE=WIDE, FAST=FAST, PBITS=19, SHADOW=SHADOW)
    sig.update(dict.fromkeys(consts, "constexpr"))
    return triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": warps, "num_stages": stages})


def _stack_bytes(kernel, tmp_path):
    """Per-thread stack (spilled registers) of the compiled kernel, as cuobjdump reports it."""
    path = tmp_path / "k.cubin"
    path.write_bytes(kernel.asm["cubin"])
    res = subprocess.run([CUOBJDUMP, "-res-usage", str(path)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"STACK:(\d+)", res).group(1))


# what mxsim.gpu.matmul launches: config name, then the kernel's constexprs
VARIANTS = {
    "exact": ("exact", dict(ACC=0)),
    "exact-limbs-wide": ("exact", dict(ACC=0, LA=3, LB=3, WIDE=True)),
    "fp32-fast": ("fast", dict(ACC=1, FAST=True)),
    "fp32-limbs": ("general", dict(ACC=1, LA=2, LB=2)),
    "fixed32-sat-fast": ("fast", dict(ACC=2, W=32, SATURATE=True, FAST=True)),
    "fixed24-wrap-fast": ("fast", dict(ACC=2, W=24, FAST=True)),
    "fixed64-sat": ("general", dict(ACC=2, W=64, SATURATE=True)),
    "fixed36-wrap-limbs": ("general", dict(ACC=2, W=36, LA=2, LB=1)),
    "fixed64-sat-wide": ("general", dict(ACC=2, W=64, SATURATE=True, LA=3, LB=3, WIDE=True)),
}
SHADOW_VARIANTS = {  # return_overflow: the float64 twin beside the accumulator
    "fixed32-sat-fast": dict(ACC=2, W=32, SATURATE=True, FAST=True),
    "fixed24-wrap-fast": dict(ACC=2, W=24, FAST=True),
    "fixed20-sat-general": dict(ACC=2, W=20, SATURATE=True),
    "fixed64-sat": dict(ACC=2, W=64, SATURATE=True),
    "fixed36-wrap-limbs": dict(ACC=2, W=36, LA=2, LB=1),
    "fixed64-sat-wide": dict(ACC=2, W=64, SATURATE=True, LA=3, LB=3, WIDE=True),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_matmul_kernel_compiles_for_sm90(name):
    config, consts = VARIANTS[name]
    assert _compile(config, **consts).asm["cubin"]


@pytest.mark.parametrize("name", SHADOW_VARIANTS)
def test_overflow_twin_compiles_without_spills(name, tmp_path):
    """The SHADOW kernels at their launch configuration: compiled, and (single limb pair, the
    model-level GEMMs) with no register spilled to the stack (at 4 warps ptxas spilled 264-688
    bytes per thread; the reason MM_CONFIGS["shadow"] has 8)."""
    consts = SHADOW_VARIANTS[name]
    kernel = _compile("shadow", SHADOW=True, **consts)
    if consts.get("LA", 1) * consts.get("LB", 1) == 1:
        assert _stack_bytes(kernel, tmp_path) == 0

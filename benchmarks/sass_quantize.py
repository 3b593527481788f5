"""SASS instructions per thread of the bit-pattern quantize kernel (mxsim/gpu/quant_f32.py),
compiled for a target GPU without one (issue 14: the kernel was instruction-bound).

    python benchmarks/sass_quantize.py [--arch 90] [--formats MXINT8,MXFP8_E4M3,MXFP4_E2M1]

Needs Triton (its bundled ptxas and cuobjdump), no device. For each format and float32 /
bfloat16 fake_quantize (nearest_even, floor rule, blocks of 32, the launcher's tile and warps,
pointer and size arguments divisible by 16 as Triton specialises them for 8192^2 input) it
prints the static SASS count of: the integer element path alone (QUANT_FAST off), the float32
element path alone (the tile predicate replaced by "true" in a copy of the source: what a tile
of ordinary data executes, less the predicate's reduction) and the full kernel (both branches).
The code is straight-line (no loops), so a path's static count is what each thread runs. An
instruction count, not a speed: bench_quantize.py --device cuda times it.
"""

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import mxsim  # noqa: E402
import mxsim.gpu as G  # noqa: E402
from mxsim.formats import MXFPFormat, get_format  # noqa: E402
from mxsim.gpu import quant_f32  # noqa: E402

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
PREDICATE = "        if tl.min(ok.to(tl.int32), axis=0) == 1:"


def _forced_module():
    """quant_f32 with the per-tile predicate constant true (the float32 path only)."""
    src = Path(quant_f32.__file__).read_text()
    if PREDICATE not in src:
        raise SystemExit("the tile predicate line of quant_f32.py changed; update PREDICATE")
    src = src.replace(PREDICATE, "        if FAST_LO <= FAST_HI:")
    src = src.replace("from ..formats", "from mxsim.formats").replace("from .quant ", "from mxsim.gpu.quant ")
    d = tempfile.mkdtemp()
    path = Path(d) / "quant_f32_forced.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("quant_f32_forced", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sass_count(kernel):
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        out = subprocess.run([str(BIN / "cuobjdump"), "-sass", f.name], capture_output=True, text=True,
                             check=True).stdout
    return sum(1 for line in out.splitlines() if re.match(r"\s+/\*[0-9a-f]{4}\*/", line) and "NOP" not in line)


def compile_count(mod, fmt, in_kind, fast, arch):
    is_fp = isinstance(fmt, MXFPFormat)
    fr = G._fast_range(fmt) if fast else None
    k = fmt.block_size
    KP = G._next_pow2(k)
    c = dict(K=k, KP=KP, BR=max(1, G.BLOCK_ELEMS_F32 // KP), FLAT=True, IN_KIND=in_kind, OUT_KIND=in_kind,
             IS_FP=is_fp,
             BITS=fmt.element_bits, EBITS=getattr(fmt, "exponent_bits", 0), MBITS=getattr(fmt, "mantissa_bits", 0),
             BIAS=getattr(fmt, "exponent_bias", 0), EMAX=fmt.emax_elem, MAX_CODE=fmt.max_code if is_fp else 0,
             MAX_POS=float(fmt.element_max), MODE=0, RULE=fmt.scale.rule.kernel_id,
             RMBITS=getattr(fmt, "mantissa_bits", fmt.element_bits - 2), WANT_CODES=False, WANT_DEQ=True,
             FAST=fr is not None, FAST_LO=fr[0] if fr else 0, FAST_HI=fr[1] if fr else 0, NOMASK=True,
             **G._scale_args(fmt))
    ptr = {0: "*i32", 1: "*i16"}[in_kind]
    sig = dict(x_ptr=ptr, codes_ptr="*u8" if is_fp else "*i8", scales_ptr="*u8", deq_ptr=ptr, R="i32", L="i32",
               NB="i32", inner="i32", hseed="i32", **{name: "constexpr" for name in c})
    attrs = {(i,): [["tt.divisibility", 16]] for i in range(7)}  # x, codes, scales, deq, R, L, NB
    kern = triton.compile(ASTSource(mod.mx_quant_f32_kernel, sig, c, attrs), target=GPUTarget("cuda", arch, 32),
                          options=dict(num_warps=G.QUANT_WARPS))
    return _sass_count(kern)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, default=90, help="compute capability as an integer (H200: 90)")
    p.add_argument("--formats", default="MXINT8,MXFP8_E4M3,MXFP4_E2M1")
    args = p.parse_args()
    forced = _forced_module()
    print(f"sm_{args.arch}, {G.BLOCK_ELEMS_F32} elements / {G.QUANT_WARPS} warps per program, "
          f"{G.BLOCK_ELEMS_F32 // (32 * G.QUANT_WARPS)} elements per thread; SASS per thread (NOPs excluded)")
    for name in args.formats.split(","):
        fmt = get_format(name)
        for in_kind, dt in ((0, "float32"), (1, "bfloat16")):
            ints = compile_count(quant_f32, fmt, in_kind, False, args.arch)
            flt = compile_count(forced, fmt, in_kind, True, args.arch)
            full = compile_count(quant_f32, fmt, in_kind, True, args.arch)
            print(f"  {name:<12} {dt:<9} integer path {ints:5d}   float32 path {flt:5d} ({ints / flt:4.2f}x fewer)"
                  f"   full kernel (both branches) {full:5d}")


if __name__ == "__main__":
    main()

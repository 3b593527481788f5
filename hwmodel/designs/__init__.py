"""Designs: functions from (Layer, formats, parallelism) to :class:`~hwmodel.designs.base.Counts`."""

from __future__ import annotations

from .base import Counts, Layer
from .fp16 import fp16
from .gptq_awq import awq, gptq_awq
from .llm_int8 import llm_int4, llm_int8
from .lqer_fixed import lqer_fixed
from .lqer_mxint import l2qer_blockfp, l2qer_mxint, lqer_blockfp, lqer_mxint
from .lrc import lrc
from .mxint import blockfp, int_wxay, mxint

DESIGNS = {
    "fp16": fp16,
    "mxint": mxint,  # OCP MXINT formats by default
    "blockfp": blockfp,  # the LQER paper's "MXINT": the authors' block floating point
    "int": int_wxay,
    "lqer-mxint": lqer_mxint,
    "l2qer-mxint": l2qer_mxint,
    "lqer-blockfp": lqer_blockfp,
    "l2qer-blockfp": l2qer_blockfp,
    "lqer-fixed": lqer_fixed,
    "llm.int8": llm_int8,
    "llm.int4": llm_int4,
    "gptq": gptq_awq,
    "awq": awq,
    "lrc": lrc,
}
ALIASES = {"lqer": "lqer-mxint", "l2qer": "l2qer-mxint", "llm-int8": "llm.int8", "llm-int4": "llm.int4",
           "llm_int8": "llm.int8", "llm_int4": "llm.int4", "gptq-awq": "gptq", "lqer-int": "lqer-fixed"}


# designs whose size depends on a low-rank correction's rank (and its lanes): marked by
# base.low_rank_design where they are defined
LOWRANK_DESIGNS = tuple(n for n, fn in DESIGNS.items() if getattr(fn, "low_rank", False))


def design_names() -> list[str]:
    return list(DESIGNS)


def build(design: str, layer: Layer, **params) -> Counts:
    """Counts of ``design`` (a name from DESIGNS or ALIASES) on ``layer``."""
    if not isinstance(design, str):
        raise ValueError(f"design must be a name, got {design!r}")
    key = ALIASES.get(design.lower(), design.lower())
    if key not in DESIGNS:
        raise ValueError(f"design must be one of {sorted(DESIGNS)}, got {design!r}")
    return DESIGNS[key](layer, **params)


__all__ = ["Counts", "Layer", "DESIGNS", "LOWRANK_DESIGNS", "build", "design_names"]

"""lqer: low-rank quantization-error corrections (LQER, L2QER, QERA), GPTQ and LRC
on real Hugging Face causal LMs, with every quantization done by mxsim."""
import os

# Never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from .config import QuantConfig, load_config  # noqa: E402
from .approximate import LowRankResult, approximate, approximate_ranks, decompose  # noqa: E402
from .calibrate import (AbsMeanMax, OutlierColumns, SecondMoment, input_groups, linear_layers,  # noqa: E402
                        run_calibration)
from .linear import QuantLinear  # noqa: E402
from .methods import METHODS, Method, get_method, register_method  # noqa: E402
from .options import (FPOptions, GPTQOptions, GPTQStepOptions, LLMIntOptions, LowRankOptions, LRCOptions,  # noqa: E402
                      MethodOptions, RotationOptions)
from .quantize import load_quantized, quantize_model, save_quantized  # noqa: E402

# lqer.gptq and lqer.lrc are the submodules (lqer.gptq.gptq, lqer.lrc.lrc), never shadowed.
from . import covariance, gptq, lrc, rotation  # noqa: E402,F401


def __getattr__(name):
    if name in ("load_model",):
        from .model import load_model

        return load_model
    if name in ("load_wikitext", "token_windows", "calibration_batches"):
        from . import data

        return getattr(data, name)
    if name == "perplexity":
        from .evaluate import perplexity

        return perplexity
    raise AttributeError(name)

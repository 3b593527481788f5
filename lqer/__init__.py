"""lqer: low-rank quantization-error corrections (LQER, L2QER, QERA; LRC by its own modules)
on real Hugging Face causal LMs, with every quantization done by mxsim."""
import importlib
import os
import warnings

# Never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from .config import QuantConfig, load_config  # noqa: E402
from .approximate import LowRankResult, approximate, approximate_ranks, decompose  # noqa: E402
from .calibrate import (AbsMeanMax, OutlierColumns, SecondMoment, input_groups, linear_layers,  # noqa: E402
                        run_calibration)
from .linear import QuantLinear  # noqa: E402
from .methods import METHODS, get_method, register_method  # noqa: E402
from .quantize import load_quantized, quantize_model, save_quantized  # noqa: E402

# Modules owned by the LRC work register rtn/gptq/lrc when present.
for _mod in ("gptq", "rotation", "covariance", "lrc"):
    try:
        _m = importlib.import_module(f".{_mod}", __name__)
    except ModuleNotFoundError as _e:
        if _e.name != f"{__name__}.{_mod}":
            warnings.warn(f"lqer.{_mod} failed to import: {_e!r}")
    except Exception as _e:  # noqa: BLE001 - a broken optional module must not break lqer
        warnings.warn(f"lqer.{_mod} failed to import: {_e!r}")
    else:
        if _mod in ("gptq", "lrc") and callable(getattr(_m, _mod, None)):
            globals()[_mod] = getattr(_m, _mod)  # lqer.gptq(...) / lqer.lrc(...) as the issue names them


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

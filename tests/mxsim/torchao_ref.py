"""torchao, the optional independent reference for the scale rules and NVFP4.

It is installed OUTSIDE the venv's site-packages (scripts/bootstrap.sh: ``pip install --target
.venv/opt/torchao``): transformers imports torchao at model load whenever it is importable,
which costs every lqer run seconds and prints warnings. The tests put that folder on sys.path
only here. ``load()`` returns the torchao mx_formats modules or None (tests then skip).
"""

import sys
import warnings
from pathlib import Path

TARGET = Path(sys.prefix) / "opt" / "torchao"


def load():
    if TARGET.is_dir() and str(TARGET) not in sys.path:
        sys.path.append(str(TARGET))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.prototype.mx_formats import config, kernels, mx_tensor, nvfp4_tensor
    except Exception:  # noqa: BLE001 - any import problem means: no torchao here
        return None
    return {"config": config, "kernels": kernels, "mx_tensor": mx_tensor, "nvfp4_tensor": nvfp4_tensor}

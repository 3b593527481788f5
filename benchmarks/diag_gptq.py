"""Why does GPTQ (Sigma_x Hessian, no rotation) lose to RTN on SmolLM2-135M? Diagnostics.

Findings and numbers: docs/lrc.md, the GPTQ bullet under "What the model shows".

    NUMBA_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/diag_gptq.py layers \
        [--layers 0,4,15,29] [--kinds self_attn.q_proj,...] [--sets calib,test,val1] [--damp 0.01]

For a few decoder layers ``layers`` captures the inputs X of the given projections
(default q_proj, o_proj, gate_proj, down_proj) with forward pre-hooks on the full-precision
model, on
  * "calib": the 16 x 512 validation windows of the benchmark (calibration_batches, seed 0),
  * "test":  the 8 x 512 WikiText-2 test windows perplexity is measured on,
  * "val1":  16 other validation windows (seed 1),
then quantizes W with RTN and with GPTQ (Hessian X_calib^T X_calib, MXINT4/32) and prints per
layer and data set the relative errors
  ex  = ||(W - W_q) X^T|| / ||W X^T||              (weight error, unquantized input)
  exy = ||W X^T - W_q Q(X)^T|| / ||W X^T||         (Q = --afmt, default MXINT4/32, on the input)
for all tokens, without the first token of every window ("-p0") and on first tokens only
("@p0"), the share of ||X||^2 in first tokens (x0share), the share of blocks whose exponent
GPTQ picks larger / smaller than RTN's, elements at the grid's top, and whether
re-quantizing GPTQ's W_q changes it.

    NUMBA_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/diag_gptq.py model \
        --settings W4A4 --subsets "all,attn,mlp,qkv,o,gate_up,down,q,k,v,all@0-14" [--sink-weight 512]

``model``: whole-model A/B on the first 4 test windows: every decoder linear RTN except a
subset (kinds, optionally @first-last block) that gets GPTQ with full-precision-model
statistics (as ``bench_lrc.py model``). ``--sink-weight w`` counts the first token of each
calibration window w times in Sigma_x (a mechanism test, not a recommended setting).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import mxsim  # noqa: E402


def capture(model, names, windows):
    mods = dict(model.named_modules())
    store = {n: [] for n in names}
    hs = [mods[n].register_forward_pre_hook(lambda m, a, n=n: store[n].append(a[0].reshape(-1, a[0].shape[-1])))
          for n in names]
    with torch.no_grad():
        for w in windows:
            model(input_ids=w[None])
    for h in hs:
        h.remove()
    return {n: torch.cat(v).double() for n, v in store.items()}


def cmd_layers(a):
    from lqer.data import calibration_batches, load_wikitext, token_windows
    from lqer.gptq import gptq
    from lqer.model import load_model

    torch.set_num_threads(1)
    model, tok = load_model("smollm2-135m")
    seq = 512
    sets = {"calib": calibration_batches(tok, 16, seq, seed=0),
            "test": token_windows(tok, load_wikitext("test"), seq, 8),
            "val1": calibration_batches(tok, 16, seq, seed=1)}
    layers = [int(x) for x in a.layers.split(",")]
    kinds = a.kinds.split(",")
    pre = "model.layers"
    names = [f"{pre}.{i}.{k}" for i in layers for k in kinds]
    sets = {s: sets[s] for s in a.sets.split(",")}
    X = {s: capture(model, names, w) for s, w in sets.items()}
    mods = dict(model.named_modules())
    fmt = mxsim.get_format("MXINT4/32")
    afmt = mxsim.get_format(a.afmt)
    print(f"damp={a.damp} act_order={a.act_order} afmt={afmt}")
    hdr = "layer                      set    " + " ".join(f"{h:>8}" for h in (
        "x0share", "RTN ex", "GPTQ ex", "RTN exy", "GPTQ exy", "RTNex-p0", "GPTex-p0", "RTNxy-p0", "GPTxy-p0",
        "RTNex@p0", "GPTex@p0", "RTNxy@p0", "GPTxy@p0"))
    print(hdr)
    for n in names:
        W = mods[n].weight.detach().double()
        Xc = X["calib"][n]
        H = Xc.T @ Xc
        wq_r = torch.as_tensor(mxsim.fake_quantize(W.numpy(), fmt, axis=-1))
        wq_g = gptq(W, H, fmt, damp=a.damp, act_order=a.act_order)
        for s in sets:
            Xs = X[s][n]
            Y = torch.as_tensor(mxsim.fake_quantize(Xs.float().numpy(), afmt, axis=-1)).double()
            ref = Xs @ W.T
            p0 = torch.zeros(Xs.shape[0], dtype=torch.bool)
            p0[::seq] = True
            x0share = float((Xs[p0] ** 2).sum() / (Xs ** 2).sum())
            vals = [x0share]
            for mask in (slice(None), ~p0, p0):
                r = ref[mask].norm()
                for wq in (wq_r, wq_g):
                    vals.append(float((ref[mask] - Xs[mask] @ wq.T).norm() / r))
                for wq in (wq_r, wq_g):
                    vals.append(float((ref[mask] - Y[mask] @ wq.T).norm() / r))
            # header: x0share, RTN ex, GPTQ ex, RTN exy, GPTQ exy, the same without first tokens
            # (-p0) and on first tokens only (@p0)
            print(f"{n[len(pre) + 1:]:<26} {s:<6} " + " ".join(f"{v:8.4f}" for v in vals), flush=True)
        # grid / exponent checks
        qr = mxsim.quantize(W.numpy(), fmt, axis=-1)
        qg = mxsim.quantize(wq_g.numpy(), fmt, axis=-1)
        er = np.asarray(qr.scales).astype(int)
        eg = np.asarray(qg.scales).astype(int)
        requant = torch.as_tensor(mxsim.fake_quantize(wq_g.numpy(), fmt, axis=-1))
        step = 2.0 ** (eg.reshape(W.shape[0], -1) - 127 + fmt.emax_elem - 2)
        top = np.repeat(step, 32, axis=1)[:, :W.shape[1]] * 7
        clamped = int((wq_g.numpy() == top).sum())
        print(f"  blocks: GPTQ exp > RTN {np.mean(eg > er):.3f}, < RTN {np.mean(eg < er):.3f}; "
              f"GPTQ elements at +max {clamped / W.numel():.4f} (RTN "
              f"{int((wq_r.numpy() == np.repeat(2.0 ** (er.reshape(W.shape[0], -1) - 127 + fmt.emax_elem - 2), 32, axis=1)[:, :W.shape[1]] * 7).sum()) / W.numel():.4f}); "
              f"requantize unchanged: {bool(torch.equal(requant, wq_g))}; "
              f"||W-Wq_g||/||W-Wq_r|| {float((W - wq_g).norm() / (W - wq_r).norm()):.3f}", flush=True)


KIND_SETS = {
    "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "attn": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj"),
    "qkv": ("q_proj", "k_proj", "v_proj"), "o": ("o_proj",), "gate_up": ("gate_proj", "up_proj"),
    "down": ("down_proj",), "q": ("q_proj",), "k": ("k_proj",), "v": ("v_proj",),
}


def cmd_model(a):
    """Whole-model A/B: every decoder linear is RTN except a chosen subset that gets GPTQ
    (statistics from the full-precision model, as bench_lrc.py model); perplexity on the first
    ``--windows`` test windows. GPTQ layers are computed once per (damp, act_order, hessian)."""
    import copy

    from lqer.calibrate import linear_layers
    from lqer.data import calibration_batches, load_wikitext, token_windows
    from lqer.evaluate import perplexity
    from experiments.lrc_table import row_config
    from lqer.methods import get_method
    from lqer.model import load_model
    from lqer.quantize import _set_module, collect_stats

    torch.set_num_threads(1)
    model, tok = load_model("smollm2-135m")
    windows = token_windows(tok, load_wikitext("test"), 512, a.windows)
    calib = calibration_batches(tok, 16, 512, seed=0)
    names = list(linear_layers(model))
    n_blocks = 1 + max(int(n.split(".")[2]) for n in names)
    for setting in a.settings.split(","):
        cfg_r = row_config(setting, "rtn", None, "none")
        if a.sink_weight == 1.0:
            stats = collect_stats(model, cfg_r.replace(method="gptq"), calib, progress=False)
        else:  # mechanism test: count the first token of every window sink_weight times in Sigma_x
            from lqer.calibrate import run_calibration
            from lqer.covariance import CovarianceObserver

            class SinkWeighted(CovarianceObserver):
                def update(self, x):
                    x = x.detach().reshape(-1, x.shape[-1]).clone()  # one window per call
                    x[0] *= a.sink_weight ** 0.5
                    super().update(x)

            stats = run_calibration(model, calib, lambda n, m: SinkWeighted(cfg_r.x_format), progress=False)
        rtn = {n: get_method("rtn").build(n, model.get_submodule(n), None, cfg_r) for n in names}
        base = copy.deepcopy(model)
        for n in names:
            _set_module(base, n, rtn[n])
        print(f"{setting} RTN ppl {perplexity(base, windows, progress=False):.3f}", flush=True)
        for variant in a.variants.split(";"):
            damp, act, hess = variant.split(",")
            cfg_g = row_config(setting, "gptq", None, "none")
            cfg_g = cfg_g.replace(options={**cfg_g.options.to_dict(), "damp": float(damp), "act_order": act == "1",
                                           "gptq_hessian": hess})
            need = {k for sub in a.subsets.split(",") for k in KIND_SETS[sub.partition("@")[0]]}
            g = {n: get_method("gptq").build(n, model.get_submodule(n), stats[n], cfg_g) for n in names
                 if n.rsplit(".", 1)[1] in need}
            for subset in a.subsets.split(","):
                kinds, _, depth = subset.partition("@")
                lo, hi = (int(x) for x in depth.split("-")) if depth else (0, n_blocks - 1)
                q = copy.deepcopy(base)
                chosen = [n for n in names if n.rsplit(".", 1)[1] in KIND_SETS[kinds]
                          and lo <= int(n.split(".")[2]) <= hi]
                for n in chosen:
                    _set_module(q, n, g[n])
                ppl = perplexity(q, windows, progress=False)
                print(f"{setting} GPTQ damp={damp} act_order={act} hessian={hess} on {subset:<12} "
                      f"({len(chosen)} layers): ppl {ppl:.3f}", flush=True)
                del q


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("layers")
    pl.add_argument("--layers", default="0,4,15,29")
    pl.add_argument("--kinds", default="self_attn.q_proj,self_attn.o_proj,mlp.gate_proj,mlp.down_proj")
    pl.add_argument("--damp", type=float, default=0.01)
    pl.add_argument("--act-order", action="store_true")
    pl.add_argument("--afmt", default="MXINT4/32")
    pl.add_argument("--sets", default="calib,test,val1")
    pm = sub.add_parser("model")
    pm.add_argument("--settings", default="W4A4")
    pm.add_argument("--windows", type=int, default=4)
    pm.add_argument("--sink-weight", type=float, default=1.0,
                    help="weight of each window's first token in Sigma_x (mechanism test; 1 = plain)")
    pm.add_argument("--variants", default="0.01,0,x", help="damp,act_order(0/1),hessian; ...")
    pm.add_argument("--subsets", default="all,attn,mlp,qkv,o,gate_up,down",
                    help="kind set (all attn mlp qkv o gate_up down)[@first-last block], ...")
    a = p.parse_args(argv)
    {"layers": cmd_layers, "model": cmd_model}[a.cmd](a)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()

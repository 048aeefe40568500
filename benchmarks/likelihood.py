"""Probability-flow likelihood: accuracy, NFE and wall time, and the overhead target.

    python benchmarks/likelihood.py [--quick]

1. Accuracy on Gaussian-mixture oracles (VP SDE, float32), D = 2 and 64: |logp - log p_eps(x)| per
   dimension versus the exact value, NFE and wall time for each trace estimator and tolerance.
   "ODE-only" replaces the N(0, I) prior by the exact p_T (the prior mismatch is not solver error);
   "bias" is the batch mean of (logp - exact) / D with its standard error (Hutchinson is unbiased).
2. Image-shaped input [2, 3, 16, 16] with the small U-Net (random weights): NFE, time, Hutchinson
   standard error over 2 probes.
3. Target (rtol = atol = 1e-5, ScoreModel(MLP width 256), 64-D, batch 1024, Rademacher): the share
   of wall time spent outside the network's forward + vector-Jacobian product (timed inside the
   same solve; also estimated from an isolated fwd+VJP timing x NFE), and the time of an
   equivalent SciPy solve_ivp(RK45) loop with a numpy round trip per evaluation (the reference
   implementation's way), both with one evaluation + VJP per step ("fair") and with the reference's
   two drift evaluations per step.

One intra-op thread (torch.set_num_threads(1)); medians of repeated runs; every ratio is measured in
this run (the accuracy section times single runs). Writes benchmarks/results/likelihood.csv, likelihood_target.csv and likelihood.png.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scoresde.likelihood import log_likelihood
from scoresde.oracle import GaussianMixture
from scoresde.sde import VPSDE

RESULTS = Path(__file__).resolve().parent / "results"


def _median_time(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _mixture(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(4, D, generator=g) / math.sqrt(max(1, D / 2))
    stds = 0.15 + 0.3 * torch.rand(4, D, generator=g)
    return GaussianMixture(torch.ones(4), means, stds)


# ------------------------------------------------------------------------------ 1. accuracy
def accuracy(quick):
    sde = VPSDE()
    rows = []
    eps = 1e-5
    tols = (1e-3, 1e-5) if quick else (1e-2, 1e-3, 1e-4, 1e-5)
    for D, B in ((2, 256), (64, 64)):
        gm = _mixture(D)
        x = gm.sample(B, generator=torch.Generator().manual_seed(1))
        exact = gm.log_prob_t(x, torch.tensor(eps), sde)
        for trace in ("exact", "rademacher", "gaussian"):
            for tol in tols:

                def run(gm=gm, x=x, trace=trace, tol=tol):
                    with torch.no_grad():
                        return log_likelihood(
                            sde,
                            gm.score_fn(sde),
                            x,
                            trace=trace,
                            rtol=tol,
                            atol=tol,
                            eps=eps,
                            generator=torch.Generator().manual_seed(2),
                        )

                wall, res = _median_time(run, 1)
                diff = (res.logp - exact) / D
                err = diff.abs().mean().item()
                bias, bias_se = diff.mean().item(), (diff.std() / math.sqrt(B)).item()
                p_T = gm.log_prob_t(res.z, torch.tensor(sde.T), sde)
                ode_err = ((res.delta_logp + p_T - exact).abs() / D).mean().item()
                rows.append(
                    {
                        "section": "oracle",
                        "dim": D,
                        "batch": B,
                        "trace": trace,
                        "tol": tol,
                        "nfe": res.nfe,
                        "wall_s": wall,
                        "err_nats_per_dim": err,
                        "bias_nats_per_dim": bias,
                        "bias_stderr": bias_se,
                        "ode_err_nats_per_dim": ode_err,
                    }
                )
                print(
                    f"  D={D:3d} B={B:4d} {trace:10s} tol={tol:.0e}  NFE={res.nfe:4d}  "
                    f"wall={wall:7.3f}s  |err|/dim={err:.2e}  bias/dim={bias:+.1e}+-{bias_se:.1e}  "
                    f"ODE-only |err|/dim={ode_err:.1e}",
                    flush=True,
                )
    return rows


# ------------------------------------------------------------------------------ 2. image
def image(quick):
    from scoresde.nets import unet_small
    from scoresde.score import ScoreModel

    sde = VPSDE()
    torch.manual_seed(0)
    net = unet_small(in_channels=3, image_size=16)
    with torch.no_grad():  # the last conv is zero-initialised: give the random net an output
        for p in net.parameters():
            if p.dim() > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.02)
    model = ScoreModel(net, sde).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rows = []
    for tol in (1e-3,):

        def run(tol=tol):
            with torch.no_grad():
                return log_likelihood(
                    sde,
                    model,
                    x,
                    trace="rademacher",
                    probes=2,
                    rtol=tol,
                    atol=tol,
                    eps=1e-3,
                    generator=torch.Generator().manual_seed(0),
                )

        wall, res = _median_time(run, 1)
        D = x[0].numel()
        se = (res.stderr / D).mean().item()
        rows.append(
            {
                "section": "unet_small",
                "dim": D,
                "batch": 2,
                "trace": "rademacher x2",
                "tol": tol,
                "nfe": res.nfe,
                "wall_s": wall,
                "err_nats_per_dim": float("nan"),
                "stderr_nats_per_dim": se,
            }
        )
        print(
            f"  unet_small [2,3,16,16] tol={tol:.0e}  NFE={res.nfe}  wall={wall:.2f}s  "
            f"probe stderr/dim={se:.2e}",
            flush=True,
        )
    return rows


# ------------------------------------------------------------------------------ 3. target
def _mlp_model(D, sde, seed=0):
    from scoresde.nets import MLP
    from scoresde.score import ScoreModel

    torch.manual_seed(seed)
    net = MLP(D, hidden=256)
    with torch.no_grad():  # zero-initialised output layer: give the random net an output
        for p in net.parameters():
            if p.dim() > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return ScoreModel(net, sde).eval()


def _scipy_solve(sde, model, x, rtol, atol, eps, probe, reference_style):
    """The reference implementation's loop: solve_ivp(RK45) with a numpy round trip per call."""
    from scipy.integrate import solve_ivp

    shape, B = x.shape, x.shape[0]
    nfe = [0]

    def score(xx, t):
        nfe[0] += 1
        return model(xx, t)

    def drift_fn(xx, vec_t):
        g2 = sde.diffusion(vec_t) ** 2
        return sde.drift(xx, vec_t) - 0.5 * g2[:, None] * score(xx, vec_t)

    def ode_func(t, y):
        xx = torch.from_numpy(y[:-B].astype(np.float32)).reshape(shape)
        vec_t = torch.full((B,), t, dtype=torch.float32)
        if reference_style:  # drift, then the divergence recomputes the drift (two evaluations)
            with torch.no_grad():
                drift = drift_fn(xx, vec_t)
            with torch.enable_grad():
                xg = xx.clone().requires_grad_(True)
                (g,) = torch.autograd.grad((drift_fn(xg, vec_t) * probe).sum(), xg)
        else:
            with torch.enable_grad():
                xg = xx.clone().requires_grad_(True)
                d = drift_fn(xg, vec_t)
                (g,) = torch.autograd.grad(d, xg, probe)
            drift = d.detach()
        div = (g * probe).sum(1)
        return np.concatenate([drift.numpy().reshape(-1), div.numpy()]).astype(np.float64)

    y0 = np.concatenate([x.numpy().reshape(-1), np.zeros(B)])
    sol = solve_ivp(ode_func, (eps, sde.T), y0, rtol=rtol, atol=atol, method="RK45")
    zT = torch.from_numpy(sol.y[:-B, -1].astype(np.float32)).reshape(shape)
    logp = sde.prior_logp(zT) + torch.from_numpy(sol.y[-B:, -1].astype(np.float32))
    return logp, nfe[0]


def target(quick):
    sde = VPSDE()
    D, B = 64, (256 if quick else 1024)
    tol, eps = 1e-5, 1e-5
    model = _mlp_model(D, sde)
    gm = _mixture(D)
    x = gm.sample(B, generator=torch.Generator().manual_seed(3))
    reps = 1 if quick else 3

    import scoresde.likelihood.ode_likelihood as odl

    clock = {"net": 0.0}
    vjp = odl.vjp_quadratic_forms

    def timed_model(xx, tt):  # network forward, timed inside the solve
        t0 = time.perf_counter()
        out = model(xx, tt)
        clock["net"] += time.perf_counter() - t0
        return out

    def timed_vjp(*a, **k):  # the vector-Jacobian product (+ the probe dot product), timed
        t0 = time.perf_counter()
        out = vjp(*a, **k)
        clock["net"] += time.perf_counter() - t0
        return out

    def ours():
        clock["net"] = 0.0
        odl.vjp_quadratic_forms = timed_vjp
        try:
            with torch.no_grad():
                t0 = time.perf_counter()
                r = log_likelihood(
                    sde,
                    timed_model,
                    x,
                    trace="rademacher",
                    rtol=tol,
                    atol=tol,
                    eps=eps,
                    generator=torch.Generator().manual_seed(0),
                )
                fractions.append(1.0 - clock["net"] / (time.perf_counter() - t0))
            return r
        finally:
            odl.vjp_quadratic_forms = vjp

    fractions = []
    wall, res = _median_time(ours, reps)
    outside_in_run = statistics.median(fractions)

    # the network's forward + VJP alone, on the same batch, as inside the dynamics
    probe = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(0)).float() * 2 - 1
    t = torch.full((B,), 0.5)

    def net_eval():
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            s = model(xg, t)
            torch.autograd.grad(s, xg, probe)

    for _ in range(3):
        net_eval()
    per_eval, _ = _median_time(net_eval, 30 if not quick else 10)
    net_time = per_eval * res.nfe
    outside = max(0.0, wall - net_time) / wall

    sc_fair_wall, (sc_logp, sc_nfe) = _median_time(
        lambda: _scipy_solve(sde, model, x, tol, tol, eps, probe, reference_style=False), reps
    )
    sc_ref_wall, (_, sc_ref_nfe) = _median_time(
        lambda: _scipy_solve(sde, model, x, tol, tol, eps, probe, reference_style=True), 1
    )
    agree = (res.logp - sc_logp).abs().mean().item() / D
    row = {
        "dim": D,
        "batch": B,
        "tol": tol,
        "nfe": res.nfe,
        "wall_s": wall,
        "net_fwd_vjp_per_eval_s": per_eval,
        "outside_network_fraction": outside_in_run,
        "outside_network_fraction_isolated": outside,
        "scipy_fair_wall_s": sc_fair_wall,
        "scipy_fair_nfe": sc_nfe,
        "scipy_reference_wall_s": sc_ref_wall,
        "scipy_reference_nfe": sc_ref_nfe,
        "speedup_vs_scipy_fair": sc_fair_wall / wall,
        "speedup_vs_scipy_reference": sc_ref_wall / wall,
        "wall_per_nfe_s": wall / res.nfe,
        "scipy_fair_wall_per_nfe_s": sc_fair_wall / sc_nfe,
        "mean_abs_logp_diff_vs_scipy_per_dim": agree,
    }
    print(
        f"  ours: NFE={res.nfe} wall={wall:.2f}s; outside the network's forward+VJP: "
        f"{100 * outside_in_run:.1f}% of wall timed inside the solve, {100 * outside:.1f}% from an "
        f"isolated fwd+VJP timing ({per_eval * 1e3:.2f} ms/eval x NFE)"
    )
    print(
        f"  scipy RK45, 1 eval+VJP/step: NFE={sc_nfe} wall={sc_fair_wall:.2f}s  "
        f"(ours {sc_fair_wall / wall:.2f}x faster; per NFE {1e3 * wall / res.nfe:.2f} vs "
        f"{1e3 * sc_fair_wall / sc_nfe:.2f} ms)"
    )
    print(
        f"  scipy RK45, reference (2 drift evals/step): score calls={sc_ref_nfe} wall={sc_ref_wall:.2f}s "
        f"(ours {sc_ref_wall / wall:.2f}x faster)"
    )
    print(f"  |logp(ours) - logp(scipy)| / D = {agree:.2e} nats")
    return row


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for D in sorted({r["dim"] for r in rows if r["section"] == "oracle"}):
        for trace, mk in (("exact", "o"), ("rademacher", "s"), ("gaussian", "^")):
            rs = [
                r
                for r in rows
                if r["section"] == "oracle" and r["dim"] == D and r["trace"] == trace
            ]
            axes[0].loglog(
                [r["tol"] for r in rs],
                [r["err_nats_per_dim"] for r in rs],
                marker=mk,
                label=f"D={D} {trace}",
            )
            axes[1].loglog(
                [r["nfe"] for r in rs],
                [r["err_nats_per_dim"] for r in rs],
                marker=mk,
                label=f"D={D} {trace}",
            )
    axes[0].set_xlabel("rtol = atol")
    axes[1].set_xlabel("NFE")
    for ax in axes:
        ax.set_ylabel("mean |logp - exact| / D (nats)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Probability-flow likelihood on GMM oracles (VP, float32, 1 thread)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_csv(path, rows):
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, single repeats (smoke test)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["accuracy", "image", "target"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), python {sys.version.split()[0]}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    rows = []
    if "accuracy" not in args.skip:
        print("1. accuracy vs the oracle (VP, eps=1e-5)")
        rows += accuracy(args.quick)
    if "image" not in args.skip:
        print("2. image-shaped input, unet_small")
        rows += image(args.quick)
    if rows:
        _write_csv(RESULTS / f"likelihood{suffix}.csv", rows)
        if any(r["section"] == "oracle" for r in rows):
            _plot(rows, RESULTS / f"likelihood{suffix}.png")
    if "target" not in args.skip:
        print("3. target: MLP(256) score model, 64-D, rtol=atol=1e-5")
        row = target(args.quick)
        _write_csv(RESULTS / f"likelihood_target{suffix}.csv", [row])
        ok1 = row["outside_network_fraction"] < 0.10
        ok2 = row["speedup_vs_scipy_fair"] >= 1.0
        print(
            f"  target outside-network < 10%: {'PASS' if ok1 else 'FAIL'}; "
            f"no slower than SciPy RK45: {'PASS' if ok2 else 'FAIL'}"
        )


if __name__ == "__main__":
    main()

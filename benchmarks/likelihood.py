"""Probability-flow likelihood and variational bounds: accuracy, cost, memory.

    python benchmarks/likelihood.py [--quick] [--sections tradeoff memory independent bound ...]

Default sections (issue 13):

- ``tradeoff``: per-point error (mean |logp - log p_eps(x)| / D, nats/dim, against the oracle's
  exact value; for the 8x8 U-Net against an exact-trace solve at rtol = 1e-6), the share of points
  whose error lies within 2 reported standard errors, NFE, wall time and peak memory (RSS growth of
  a fresh process) of each trace estimator, on Gaussian mixtures with D = 2, 16, 64 (512 points,
  rtol = atol = 1e-5, float32), a small U-Net on 8x8 images (random weights) and the default
  run's digits model on dequantized 8x8 test digits (``--cases digits8:128`` after ``bound``).
  The 64-D row also times the Score
  SDE release's way (SciPy RK45, one Rademacher probe, numpy round trips, two drift evaluations per
  step): the "reference" cost.
- ``memory``: peak memory of log_likelihood on the 64-D mixture, 128 points, exact trace, in the
  default mode (no graph), under torch.no_grad() and with grad=True (fewer points: it builds the
  whole graph).
- ``independent``: the batch-independent solve (torchode, per-point step control) against the
  shared-step torchdiffeq solve: wall time, NFE, and the largest relative change of a point's
  value between batches of 1, 7 and 64.
- ``bound``: the default run's digits model (VP, MLP; trained here for a short run because the
  8000-step default takes too long on a shared CPU): ODE bits/dim against the continuous-time and
  DDPM bounds through ``python -m scoresde.likelihood``.

Older sections (``accuracy``, ``image``, ``target``) stay available. One intra-op thread; each
table row runs in a fresh process (so its peak memory is its own); ratios are measured in one
invocation. Writes CSVs under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scoresde.likelihood import log_likelihood
from scoresde.oracle import GaussianMixture
from scoresde.sde import VPSDE

RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent.parent / "outputs" / "benchmarks" / "likelihood"  # ignored


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
    sde = VPSDE()
    model = _unet(sde, channels=3, size=16)
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
        f"  scipy RK45, reference (2 drift evals/step): score calls={sc_ref_nfe} "
        f"wall={sc_ref_wall:.2f}s "
        f"(ours {sc_ref_wall / wall:.2f}x faster)"
    )
    print(f"  |logp(ours) - logp(scipy)| / D = {agree:.2e} nats")
    return row


# ------------------------------------------------------------------------------ issue 13 rows
ESTIMATORS = {  # label -> log_likelihood options
    "rademacher x1": {"trace": "rademacher", "probes": 1},
    "rademacher x4": {"trace": "rademacher", "probes": 4},
    "resampled x2": {"trace": "resampled", "probes": 2},
    "resampled x4": {"trace": "resampled", "probes": 4},
    "exact": {"trace": "exact"},
    "quadrature, 13 nodes": {"trace": "quadrature", "nodes": 13},
    "quadrature, 17 nodes": {"trace": "quadrature", "nodes": 17},
    "hutchpp (default: 13 nodes, 30 probes)": {"trace": "hutchpp"},
    "hutchpp, 13 nodes, 24 probes": {"trace": "hutchpp", "nodes": 13, "probes": 24},
    "hutchpp, 17 nodes, 30 probes": {"trace": "hutchpp", "nodes": 17, "probes": 30},
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _unet(sde, channels=1, size=8):
    """unet_small with random weights (its zero-initialised last conv given an output)."""
    from scoresde.nets import unet_small
    from scoresde.score import ScoreModel

    torch.manual_seed(0)
    net = unet_small(in_channels=channels, image_size=size)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return ScoreModel(net, sde).eval()


def _case(name: str, B: int):
    """(score_fn, x, exact log p_eps or None, sde) for a benchmark case."""
    sde = VPSDE()
    if name.startswith("mix"):
        gm = _mixture(int(name[3:]))
        x = gm.sample(B, generator=torch.Generator().manual_seed(1))
        return gm.score_fn(sde), x, gm.log_prob_t(x, torch.tensor(1e-5), sde), sde
    if name == "digits8":  # the default run's digits model (8x8 images), trained by `bound`
        from scoresde.io.runs import load_run
        from scoresde.likelihood import dequantize, to_levels

        run = load_run(WORK / "digits_run")
        k = to_levels(torch.stack([run.dataset("test")[i][0] for i in range(B)]), 17)
        x = dequantize(k, 17, (-1, 1), generator=torch.Generator().manual_seed(0))
        return run.model, x, None, run.sde
    model = _unet(sde)
    x = torch.rand(B, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return model, x, None, sde


def row_worker(spec: dict) -> dict:
    """One table row, in this (fresh) process: time, error, coverage, peak memory."""
    torch.set_num_threads(1)
    score_fn, x, exact, sde = _case(spec["case"], spec["batch"])
    D = x[0].numel()
    if exact is None:  # the networks: exact trace at a tight tolerance as the reference value
        cache = WORK / f"{spec['case']}_reference_{spec['batch']}.pt"
        if cache.exists():
            exact = torch.load(cache, weights_only=True)
        else:
            ref = log_likelihood(sde, score_fn, x, trace="exact", rtol=1e-6, atol=1e-6, eps=1e-5)
            exact = ref.logp
            torch.save(exact, cache)
    base = _rss_mb()
    opts = dict(spec.get("options", {}))
    mode = spec.get("mode", "default")

    def call():
        if spec.get("reference"):
            probe = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(0))
            logp, nfe = _scipy_solve(
                sde, score_fn, x, 1e-5, 1e-5, 1e-5, probe.float() * 2 - 1, True
            )
            return logp, None, nfe
        kw = {"rtol": 1e-5, "atol": 1e-5, "eps": 1e-5, **opts}
        kw["generator"] = torch.Generator().manual_seed(spec.get("seed", 2))
        if mode == "no_grad":
            with torch.no_grad():
                r = log_likelihood(sde, score_fn, x, **kw)
        else:
            r = log_likelihood(sde, score_fn, x, grad=mode == "grad", **kw)
        return r.logp.detach(), r.stderr, r.nfe

    times = []
    for _ in range(spec.get("repeats", 1)):
        t0 = time.perf_counter()
        logp, se, nfe = call()
        times.append(time.perf_counter() - t0)
    err = (logp - exact).abs()
    out = {
        **{k: v for k, v in spec.items() if k != "options"},
        "D": D,
        "nfe": nfe,
        "wall_s": statistics.median(times),
        "err_nats_per_dim": float(err.mean() / D),
        "peak_mb": _rss_mb() - base,
        "process_peak_mb": _rss_mb(),
    }
    if se is not None:
        out["within_2sd"] = float((err <= 2 * se).double().mean())
        out["mean_stderr_per_dim"] = float(se.mean() / D)
    return out


def _run_rows(specs: list[dict]) -> list[dict]:
    rows = []
    for spec in specs:
        cmd = [sys.executable, __file__, "--row", json.dumps(spec)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        res = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            print(f"  row {spec} failed:\n{res.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        cov = f"{row['within_2sd']:.2f}" if "within_2sd" in row else "  - "
        print(
            f"  {row['case']:6s} B={row['batch']:4d} {row['estimator']:30s} NFE={row['nfe']:4d} "
            f"wall={row['wall_s']:8.3f}s  err/dim={row['err_nats_per_dim']:.2e}  "
            f"within 2sd={cov}  peak={row['peak_mb']:7.1f} MB",
            flush=True,
        )
    return rows


def _interleaved(specs: list[dict], passes: int) -> list[dict]:
    """Run the whole row list ``passes`` times in turn (load drifts on a shared machine hit every
    row alike) and keep, per row, the median wall time over the passes."""
    runs = [_run_rows(specs) for _ in range(passes)]
    rows = runs[0]
    for row in rows:
        same = [r for run in runs for r in run if r["estimator"] == row["estimator"]]
        same = [r for r in same if r["case"] == row["case"] and r["batch"] == row["batch"]]
        row["wall_s"] = statistics.median(r["wall_s"] for r in same)
        row["passes"] = len(same)
    return rows


def tradeoff(quick, cases=None, passes=1):
    specs = []
    cases = cases or [("mix2", 512), ("mix16", 512), ("mix64", 512), ("unet8", 4)]
    if quick:
        cases = [("mix2", 128), ("mix64", 128)]
    for case, B in cases:
        if case == "mix64":
            specs.append(
                {
                    "case": case,
                    "batch": B,
                    "estimator": "reference (SciPy RK45, 1 probe)",
                    "reference": True,
                }
            )
        for label, opts in ESTIMATORS.items():
            reps = 1 if (label == "exact" or case.endswith("8") or quick) else 3
            specs.append(
                {"case": case, "batch": B, "estimator": label, "options": opts, "repeats": reps}
            )
    rows = _interleaved(specs, passes)
    for case in {r["case"] for r in rows}:
        ref = [r for r in rows if r["case"] == case and r.get("reference")]
        one = [r for r in rows if r["case"] == case and r["estimator"] == "rademacher x1"]
        for r in rows:
            if r["case"] == case and one:
                r["wall_vs_one_probe"] = r["wall_s"] / one[0]["wall_s"]
            if r["case"] == case and ref:
                r["wall_vs_reference"] = r["wall_s"] / ref[0]["wall_s"]
    target = [r for r in rows if r["case"] == "mix64" and "wall_vs_reference" in r]
    for r in target:
        ok = (
            r["err_nats_per_dim"] <= 1e-3
            and r["wall_vs_reference"] <= 1.0
            and r.get("within_2sd", 0) >= 0.9
        )
        print(
            f"  64-D target (err <= 1e-3, wall <= reference, >= 90% within 2 sd): "
            f"{r['estimator']:30s} {r['wall_vs_reference']:.2f}x reference -> "
            f"{'PASS' if ok else 'FAIL'}"
        )
    return rows


def memory(quick):
    B = 32 if quick else 128
    specs = [
        {
            "case": "mix64",
            "batch": B,
            "estimator": f"exact, {m}",
            "mode": m,
            "options": {"trace": "exact"},
        }
        for m in ("no_grad", "default")
    ]
    specs.append(
        {
            "case": "mix64",
            "batch": 16,
            "estimator": "exact, grad=True (16 points)",
            "mode": "grad",
            "options": {"trace": "exact"},
        }
    )
    rows = _run_rows(specs)
    if len(rows) >= 2:
        ratio = rows[1]["process_peak_mb"] / rows[0]["process_peak_mb"]
        growth = rows[1]["peak_mb"] / max(rows[0]["peak_mb"], 1e-9)
        print(
            f"  process peak RSS: default {rows[1]['process_peak_mb']:.0f} MB, no_grad "
            f"{rows[0]['process_peak_mb']:.0f} MB, ratio {ratio:.3f} (target within 10%: "
            f"{'PASS' if abs(ratio - 1) <= 0.1 else 'FAIL'}); growth during the call "
            f"{growth:.2f}x (allocator noise at ~100 MB)"
        )
    return rows


def independent(quick):
    specs = []
    for B in (64,) if quick else (64, 512):
        for ind in (False, True):
            specs.append(
                {
                    "case": "mix64",
                    "batch": B,
                    "estimator": f"rademacher x1, {'independent' if ind else 'shared'}",
                    "options": {"trace": "rademacher", "independent": ind},
                    "repeats": 1 if quick else 3,
                }
            )
    rows = _run_rows(specs)
    for a, b in zip(rows[::2], rows[1::2]):
        print(
            f"  B={a['batch']}: independent / shared wall {b['wall_s'] / a['wall_s']:.2f}x, "
            f"NFE {b['nfe']} vs {a['nfe']}"
        )
    # batch independence in float64 (exact trace, 16-D)
    torch.set_num_threads(1)
    gm, sde = _mixture(16).to(torch.float64), VPSDE()
    x = gm.sample(64, generator=torch.Generator().manual_seed(1))
    for ind in (False, True):
        vals = [
            log_likelihood(sde, gm.score_fn(sde), x[:n], trace="exact", independent=ind).logp[0]
            for n in (1, 7, 64)
        ]
        rel = max(abs((v - vals[0]) / vals[0]).item() for v in vals)
        print(
            f"  {'independent' if ind else 'shared     '}: largest relative change of point 0 "
            f"between batches of 1, 7, 64 (float64): {rel:.1e}"
        )
        rows.append(
            {
                "case": "mix16",
                "estimator": f"batch dependence, independent={ind}",
                "max_rel_change": rel,
            }
        )
    return rows


def bound(quick):
    run_dir = WORK / "digits_run"
    steps = 300 if quick else 2000
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    ckpt = run_dir / "checkpoints" / "last.pt"
    if not ckpt.exists():
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "scoresde.train",
                f"training.steps={steps}",
                "logger=none",
                "device=cpu",
                "training.sample_every=0",
                "training.final_likelihood_n=0",
                f"hydra.run.dir={run_dir}",
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        print(
            f"  trained the default digits run (VP, MLP) for {steps} steps (the default is "
            f"8000; shortened for the shared CPU) in {time.perf_counter() - t0:.0f} s"
        )
    n = 64 if quick else 297
    rows = []
    for b in ("continuous", "ddpm"):
        out = WORK / f"digits_bound_{b}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "scoresde.likelihood",
                f"ckpt={run_dir}",
                f"max_samples={n}",
                f"bound={b}",
                "bound_samples=64",
                "progress=false",
                "resume=false",
                f"hydra.run.dir={out}",
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        rec = json.loads((out / "likelihood.json").read_text())
        r = rec["result"]
        rows.append(
            {
                "bound": b,
                "n": r["n"],
                "ode_bpd": r["mean"],
                "ode_stderr": r["stderr"],
                "bound_bpd": r["bound"]["mean"],
                "bound_stderr": r["bound"]["stderr"],
                "bound_mc_stderr": r["bound"]["monte_carlo_stderr"],
                "steps": steps,
            }
        )
        print(
            f"  digits test, n={r['n']}: ODE {r['mean']:.3f} +- {r['stderr']:.3f} bits/dim; "
            f"{b} bound {r['bound']['mean']:.3f} +- {r['bound']['stderr']:.3f} "
            f"(Monte-Carlo +- {r['bound']['monte_carlo_stderr']:.3f})"
        )
    return rows


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
    ap.add_argument(
        "--sections",
        nargs="*",
        default=["tradeoff", "memory", "independent", "bound"],
        choices=["tradeoff", "memory", "independent", "bound", "accuracy", "image", "target"],
    )
    ap.add_argument("--cases", nargs="*", help="tradeoff cases, e.g. mix64:512 digits8:128")
    ap.add_argument("--passes", type=int, default=1, help="tradeoff: interleaved passes")
    ap.add_argument("--row", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.row:
        print(json.dumps(row_worker(json.loads(args.row))))
        return
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"python {sys.version.split()[0]}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases or []]
    for name, fn in (
        ("tradeoff", lambda q: tradeoff(q, cases, args.passes)),
        ("memory", memory),
        ("independent", independent),
        ("bound", bound),
    ):
        if name in args.sections:
            print(f"== {name}", flush=True)
            _write_csv(RESULTS / f"likelihood_{name}{suffix}.csv", fn(args.quick))
    rows = []
    if "accuracy" in args.sections:
        print("== accuracy vs the oracle (VP, eps=1e-5)")
        rows += accuracy(args.quick)
    if "image" in args.sections:
        print("== image-shaped input, unet_small")
        rows += image(args.quick)
    if rows:
        _write_csv(RESULTS / f"likelihood{suffix}.csv", rows)
        if any(r["section"] == "oracle" for r in rows):
            _plot(rows, RESULTS / f"likelihood{suffix}.png")
    if "target" in args.sections:
        print("== target: MLP(256) score model, 64-D, rtol=atol=1e-5")
        row = target(args.quick)
        _write_csv(RESULTS / f"likelihood_target{suffix}.csv", [row])


if __name__ == "__main__":
    main()

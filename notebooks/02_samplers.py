# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Samplers: quality versus number of score evaluations
#
# With the Gaussian-mixture **oracle** (`scoresde.oracle.GaussianMixture`) the score of every
# noised marginal `p_t` is known in closed form, so the only error left in a sample is the
# sampler's discretization error. This notebook measures it against the number of score
# evaluations (NFE), the cost that matters when the score is a large network.
#
# Problem (as in `benchmarks/samplers.py`): 8 Gaussians of std 0.25 on a circle of radius 2.
# Quality: the sliced Wasserstein-2 distance to exact samples of the same size, and the mean exact
# log-density `log p_0` of the samples (over-dispersed samples score low), both compared with the
# spread between independent sets of exact samples (the Monte-Carlo **noise floor**).

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

# SCORESDE_NB_FAST=1 (set by tests/test_notebooks.py) picks tiny settings that only check
# that every cell runs; the default settings run top to bottom on a CPU in a few minutes.
FAST = os.environ.get("SCORESDE_NB_FAST", "0") == "1"
torch.set_num_threads(1)  # the models here are small: one thread is the fastest on a CPU
SEED = 0
torch.manual_seed(SEED)

N = 400 if FAST else 4000  # samples per run
N_EXACT_SETS = 3 if FAST else 6  # exact sample sets for the noise floor
STEP_GRID = [4, 12] if FAST else [3, 5, 8, 12, 20, 35, 60, 100, 200]
TOLS = {  # tolerances (rtol = atol) swept for the adaptive solvers
    "ode": [1e-2] if FAST else [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4],
    "adaptive": [0.2] if FAST else [0.5, 0.2, 0.1, 0.05, 0.02],
}
dtype = torch.float64
print(f"FAST={FAST}: n={N}, steps {STEP_GRID}")

# %%
import math

from scoresde.metrics import sliced_wasserstein
from scoresde.oracle import GaussianMixture
from scoresde.sampling import METHODS, sample
from scoresde.sde import VESDE, VPSDE

angles = torch.arange(8, dtype=dtype) * (2 * math.pi / 8)
means = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
gmm = GaussianMixture(torch.ones(8, dtype=dtype), means, 0.25)


def quality(x, ref, seed=1):
    """(sliced W2 to the reference set, mean exact log p_0 of x)."""
    sw = sliced_wasserstein(
        x, ref, n_projections=128, generator=torch.Generator().manual_seed(seed)
    )
    return sw, gmm.log_prob(x).mean().item()


gen = torch.Generator().manual_seed(SEED)
ref = gmm.sample(N, generator=gen)
exact = [quality(gmm.sample(N, generator=gen), ref) for _ in range(N_EXACT_SETS)]
sw_floor = np.mean([e[0] for e in exact]) + 2 * np.std([e[0] for e in exact])
lp = np.array([e[1] for e in exact])
print(f"noise floor: sliced W2 <= {sw_floor:.4f};  mean log p0 = {lp.mean():.3f} ± {lp.std():.3f}")

plt.figure(figsize=(4, 4))
plt.scatter(ref[:, 0], ref[:, 1], s=1)
plt.gca().set_aspect("equal")
plt.title("exact samples")
plt.show()

# %% [markdown]
# ## Sweep the step count of every sampler
#
# Fixed-step samplers are swept over `steps`; the adaptive ones (`ode`, and `adaptive` when it is
# available) over their tolerance. The score function is the oracle's exact score,
# `gmm.score_fn(sde)`.

# %%
fixed = {  # swept over `steps`
    "euler_maruyama": {},
    "reverse_diffusion": {},
    "ancestral": {},
    "pc": {"predictor": "reverse_diffusion", "corrector": "langevin", "snr": 0.16},
    "ddim": {},
    "heun": {},
    "dpm_solver": {},
}
adaptive = {"ode": {}, "adaptive": {}}  # swept over rtol = atol (TOLS)
# other fixed-step methods with their default options (Langevin-based samplers need far more
# steps than this grid; torchsde's `sde` is the Euler-Maruyama scheme again)
fixed.update(
    {
        m: {}
        for m in METHODS
        if m not in fixed and m not in adaptive and m not in ("annealed_langevin", "sde")
    }
)
print("not shown:", [m for m in METHODS if m not in fixed and m not in adaptive])

rows = []  # (sde, method, setting, nfe, seconds, sw2, mean log p0)
for sde_name, sde in {"VP": VPSDE(), "VE": VESDE()}.items():
    score_fn = gmm.score_fn(sde)
    jobs = [(m, {"steps": k, **o}) for m, o in fixed.items() for k in STEP_GRID]
    jobs += [(m, {"rtol": tol, "atol": tol, **o}) for m, o in adaptive.items() for tol in TOLS[m]]
    for method, options in jobs:
        t0 = time.perf_counter()
        res = sample(
            sde,
            score_fn,
            (N, 2),
            method=method,
            dtype=dtype,
            generator=torch.Generator().manual_seed(SEED),
            **options,
        )
        secs = time.perf_counter() - t0
        sw, mlp = quality(res.x, ref)
        setting = options.get("steps", options.get("rtol"))
        rows.append((sde_name, method, setting, res.nfe, secs, sw, mlp))
print(f"{len(rows)} runs")
for r in rows:
    if r[2] == STEP_GRID[-1] or r[1] in adaptive:
        print(
            f"{r[0]:>3} {r[1]:>18} {r[2]!s:>6}: NFE {r[3]:5d}  SW2 {r[5]:.4f}  log p0 {r[6]:7.3f}"
        )

# %%
fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
for col, sde_name in enumerate(["VP", "VE"]):
    for method in list(fixed) + list(adaptive):
        pts = sorted((r[3], r[5], r[6]) for r in rows if r[0] == sde_name and r[1] == method)
        if not pts:
            continue
        nfe, sw, mlp = zip(*pts)
        style = "o--" if method in adaptive else "o-"
        axes[0, col].plot(nfe, sw, style, ms=3, label=method)
        axes[1, col].plot(
            nfe, np.maximum(np.abs(lp.mean() - np.array(mlp)), 1e-4), style, ms=3, label=method
        )
    axes[0, col].axhline(sw_floor, color="k", ls=":", label="exact-vs-exact floor")
    axes[1, col].axhline(2 * lp.std(), color="k", ls=":", label="2 sd of exact")
    axes[0, col].set_title(f"{sde_name}: sliced W2 to exact samples")
    axes[1, col].set_title(f"{sde_name}: |mean log p0 of samples - exact| (nats)")
    for ax in axes[:, col]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[1, col].set_xlabel("NFE (score evaluations)")
axes[0, 0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Reading the plot: a sampler is indistinguishable from exact sampling once both of its curves are
# under the dotted lines (values below `1e-4` are drawn at `1e-4`). A mean log-density below the
# exact one means over-dispersed samples (mass between the modes), above it under-dispersed ones.
# First-order SDE samplers (Euler-Maruyama, reverse diffusion, ancestral) need on the order of a
# hundred steps; the high-order ODE solvers get there with far fewer score
# evaluations.
#
# ## The benchmark's figure
#
# `python benchmarks/samplers.py` runs the full version of this sweep (2-D and 16-D mixtures,
# VP / sub-VP / VE, with wall times) and writes `benchmarks/results/samplers.csv`. If that file
# exists it is plotted here.

# %%
import csv
from pathlib import Path

import scoresde

csv_path = Path(scoresde.__file__).resolve().parents[1] / "benchmarks" / "results" / "samplers.csv"
bench = []
if csv_path.exists():
    with open(csv_path, newline="") as f:
        bench = list(csv.DictReader(f))
    print(f"{csv_path}: {len(bench)} runs")
else:
    print(f"{csv_path} not found: run `python benchmarks/samplers.py` to produce it")

if bench:
    problems = sorted({r["problem"] for r in bench})
    sde_names = [s for s in ("vp", "subvp", "ve") if any(r["sde"] == s for r in bench)]
    fig, axes = plt.subplots(
        len(problems),
        len(sde_names),
        squeeze=False,
        figsize=(5 * len(sde_names), 4 * len(problems)),
    )
    for i, prob in enumerate(problems):
        for j, sde_name in enumerate(sde_names):
            ax = axes[i][j]
            sub = [r for r in bench if r["problem"] == prob and r["sde"] == sde_name]
            for k, label in enumerate(sorted({r["sampler"] for r in sub})):
                pts = sorted(
                    (int(r["nfe"]), float(r["sliced_w2"]))
                    for r in sub
                    if r["sampler"] == label and r["nan"] != "True"
                )
                if pts:  # 10 colours, then dashed lines
                    ax.plot(*zip(*pts), "o-" if k < 10 else "s--", ms=3, label=label)
            if sub:
                ax.axhline(float(sub[0]["sw_floor"]), color="k", ls=":", label="exact floor")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{prob} / {sde_name}")
            ax.set_xlabel("NFE")
            ax.set_ylabel("sliced W2 to exact")
    axes[0][-1].legend(fontsize=7)
    plt.tight_layout()
    plt.show()

    print("fewest score evaluations among runs passing all three measures (W2, MMD, log p0):")
    for prob in problems:
        for sde_name in sde_names:
            ok = [
                r
                for r in bench
                if r["problem"] == prob and r["sde"] == sde_name and r["passed"] == "True"
            ]
            best = min(ok, key=lambda r: int(r["nfe"])) if ok else None
            print(
                f"  {prob:8s} {sde_name:6s}: "
                + (
                    f"{best['sampler']} (steps {best['steps']}), NFE {best['nfe']}"
                    if best
                    else "none"
                )
            )

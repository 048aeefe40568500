"""Write the notebooks in this folder from the cell sources below (outputs cleared).

Edit the sources here, then run ``python notebooks/_build.py``; the .ipynb files are regenerated
without outputs or execution counts (the form they are committed in). Each notebook's first code
cell reads ``SCORESDE_NB_FAST`` (tiny settings for the test suite, see tests/test_notebooks.py).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import nbformat
from nbformat import v4

HERE = Path(__file__).resolve().parent


def md(text: str) -> nbformat.NotebookNode:
    return v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    cell = v4.new_code_cell(textwrap.dedent(text).strip("\n"))
    cell.outputs = []
    cell.execution_count = None
    return cell


def settings(extra: str, numpy: bool = True) -> nbformat.NotebookNode:
    """The first code cell of every notebook: the FAST switch and the sizes it selects."""
    head = """\
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
    """
    if not numpy:
        head = head.replace("        import numpy as np\n", "")
    return code(textwrap.dedent(head) + textwrap.dedent(extra))


def write(name: str, cells: list) -> None:
    nb = v4.new_notebook()
    nb.cells = cells
    for i, cell in enumerate(
        nb.cells
    ):  # stable ids: rebuilding an unchanged notebook changes nothing
        cell.id = f"{name.split('_')[0]}-{i:02d}"
    nb.metadata = {
        "kernelspec": {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        },
        "language_info": {"name": "python"},
    }
    nbformat.validate(nb)
    tmp = HERE / f".{name}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
    os.replace(tmp, HERE / name)


# ==================================================================================================
# 01 quickstart
# ==================================================================================================
NB01 = [
    md("""
    # 01 · Quick start: SDEs, a score model on 2-D data, samplers, likelihood

    Score-based generative modeling (Song et al., *Score-Based Generative Modeling through
    Stochastic Differential Equations*, ICLR 2021) in four steps:

    1. a **forward SDE** turns data into noise, `dx = f(x, t) dt + g(t) dw`, `t` from 0 to `T = 1`;
    2. a network learns the **score** `∇x log p_t(x)` of the noised data by denoising score matching;
    3. a **sampler** integrates the reverse-time SDE, or the probability-flow ODE, from noise (`t = T`)
       back to data (`t ≈ 0`);
    4. the probability-flow ODE, run forwards, gives the exact **log-likelihood** of a data point.

    The whole notebook runs on a CPU in a few minutes.
    """),
    settings("""
        TRAIN_STEPS = 30 if FAST else 3000   # Adam steps for the 2-D score model
        BATCH = 256
        N_SAMPLES = 256 if FAST else 1000    # samples drawn by each sampler
        N_LIK = 32 if FAST else 300          # held-out points for the likelihood
        GRID = 10 if FAST else 40            # density heat map resolution (GRID x GRID)
        TOL = 1e-2 if FAST else 1e-4         # ODE tolerances (ode sampler, likelihood)
        print(f"FAST={FAST}: {TRAIN_STEPS} training steps, {N_SAMPLES} samples per sampler")
    """),
    md("""
    ## 1. The forward SDEs and their marginals

    All three SDEs of the paper are linear, so the perturbation kernel is Gaussian:
    `x_t = m(t) x_0 + std(t) z`. `marginal_coeffs(t)` returns `(m(t), std(t))`, `log_snr(t)` is
    `λ(t) = log(m(t) / std(t))`.

    | SDE | `m(t)` | `std(t)` | prior |
    |---|---|---|---|
    | VP (DDPM) | `exp(-½∫β)` | `sqrt(1 - m²)` | `N(0, I)` |
    | sub-VP | `exp(-½∫β)` | `1 - m²` | `N(0, I)` |
    | VE (SMLD) | `1` | `sqrt(σ(t)² - σ_min²)` | `N(0, σ_max² I)` |
    """),
    code("""
        from scoresde.sde import VESDE, VPSDE, SubVPSDE

        sdes = {"VP": VPSDE(), "sub-VP": SubVPSDE(), "VE": VESDE()}
        t = torch.linspace(1e-3, 1.0, 400, dtype=torch.float64)
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
        for name, sde in sdes.items():
            m, std = sde.marginal_coeffs(t)
            axes[0].plot(t, m, label=name)
            axes[1].plot(t, std, label=name)
            axes[2].plot(t, sde.log_snr(t), label=name)
        axes[0].set_title("mean coefficient m(t)")
        axes[1].set_title("std(t)  (log scale)")
        axes[1].set_yscale("log")
        axes[2].set_title("log-SNR  λ(t) = log m(t)/std(t)")
        for ax in axes:
            ax.set_xlabel("t")
            ax.legend()
        plt.tight_layout()
        plt.show()
    """),
    md("""
    ## 2. A 2-D data set and the forward process

    `scoresde.data.toy2d.make_toy2d(name, n, generator)` draws from the usual 2-D toy sets. Below, the data noised by the VP SDE at a few
    times: `sde.marginal_prob(x0, t)` gives the mean and std of `x_t` given `x_0`.
    """),
    code("""
        from scoresde.data.toy2d import make_toy2d

        DATASET = "moons"   # or "checkerboard", "swissroll", "rings", "gmm8" (these need longer training)
        gen = torch.Generator().manual_seed(SEED)
        x_data, _ = make_toy2d(DATASET, 10000, generator=gen)   # [10000, 2] and labels
        x_test, _ = make_toy2d(DATASET, N_LIK, generator=gen)   # held out, for the likelihood

        sde = VPSDE()
        times = [0.0, 0.1, 0.25, 0.5, 1.0]
        fig, axes = plt.subplots(1, len(times), figsize=(3 * len(times), 3))
        for ax, ti in zip(axes, times):
            mean, std = sde.marginal_prob(x_data, torch.full((len(x_data),), ti))
            xt = mean + std[:, None] * torch.randn(x_data.shape, generator=gen)
            ax.scatter(xt[:, 0], xt[:, 1], s=1, alpha=0.4)
            ax.set_title(f"VP, t = {ti}")
            ax.set_xlim(-4, 4)
            ax.set_ylim(-4, 4)
            ax.set_aspect("equal")
        plt.tight_layout()
        plt.show()
    """),
    md("""
    ## 3. Training a score model

    `MLP` is a residual MLP with a time embedding; `ScoreModel(net, sde)` turns it into a score
    function (here the network predicts the noise `ε` and the score is `-ε / std(t)`), and
    `dsm_loss` is the continuous-time denoising score-matching loss with the `σ²` weighting
    (Song et al. 2021, eq. 7): `E_t E_{x0, z} ‖std(t) s(x_t, t) + z‖²`.
    """),
    code("""
        from scoresde.losses import dsm_loss
        from scoresde.nets import MLP
        from scoresde.score import ScoreModel

        torch.manual_seed(SEED)
        model = ScoreModel(MLP(2, hidden=128, num_blocks=3), sde)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, TRAIN_STEPS)
        losses = []
        t0 = time.perf_counter()
        for step in range(TRAIN_STEPS):
            idx = torch.randint(len(x_data), (BATCH,), generator=gen)
            loss = dsm_loss(model, sde, x_data[idx], generator=gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if (step + 1) % 1000 == 0:
                print(f"step {step + 1}: loss {np.mean(losses[-1000:]):.4f}")
        model.eval()
        print(f"{TRAIN_STEPS} steps in {time.perf_counter() - t0:.1f} s, final loss {np.mean(losses[-50:]):.3f}")

        plt.figure(figsize=(6, 3))
        plt.plot(losses, lw=0.5)
        plt.plot(np.convolve(losses, np.ones(50) / 50, mode="valid"), label="running mean")
        plt.yscale("log")
        plt.xlabel("step")
        plt.ylabel("DSM loss")
        plt.legend()
        plt.show()
    """),
    md("""
    ## 4. Sampling with each sampler

    `scoresde.sampling.sample(sde, score_fn, shape, method=..., steps=..., **options)` returns a
    result with the samples `.x` and `.nfe`, the number of score evaluations actually made. The
    score function is any callable `score_fn(x, t)`; `model.score_fn()` wraps the trained model.
    The sliced Wasserstein distance to held-out data (`scoresde.metrics.sliced_wasserstein`)
    measures the quality; the first panel is data, for reference.
    """),
    code("""
        from scoresde.metrics import sliced_wasserstein
        from scoresde.sampling import METHODS, sample

        print("available methods:", ", ".join(METHODS))
        score_fn = model.score_fn()
        steps = 10 if FAST else 100
        runs = {  # method -> options; every method in METHODS
            "euler_maruyama": {"steps": steps},
            "reverse_diffusion": {"steps": steps},
            "ancestral": {"steps": steps},
            "annealed_langevin": {"steps": steps // 2},
            "pc": {"steps": steps // 2, "predictor": "reverse_diffusion", "corrector": "langevin"},
            "sde": {"steps": steps},            # torchsde
            "adaptive": {"rtol": 0.05},         # adaptive-step SDE solver
            "ode": {"rtol": TOL, "atol": TOL},  # probability-flow ODE, dopri5
            "ddim": {"steps": 25},
            "heun": {"steps": 10},              # EDM's Heun, Karras time grid
            "dpm_solver": {"steps": 14},        # DPM-Solver-3, log-SNR grid
        }
        runs.update({m: {} for m in METHODS if m not in runs})  # any other method, default options
        x_ref, _ = make_toy2d(DATASET, N_SAMPLES, generator=gen)
        results = {}
        with torch.no_grad():
            for method, options in runs.items():
                t0 = time.perf_counter()
                res = sample(sde, score_fn, (N_SAMPLES, 2), method=method,
                             generator=torch.Generator().manual_seed(SEED), **options)
                secs = time.perf_counter() - t0
                sw = sliced_wasserstein(res.x, x_ref, generator=torch.Generator().manual_seed(1))
                results[method] = res
                print(f"{method:>18}: NFE {res.nfe:4d}, {secs:5.2f} s, sliced W2 to data {sw:.3f}")

        panels = [("data", x_ref, None)] + [(m, r.x, r.nfe) for m, r in results.items()]
        ncol = 6
        nrow = -(-len(panels) // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.8 * nrow))
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax, (title, xs, nfe) in zip(axes.flat, panels):
            ax.scatter(xs[:, 0], xs[:, 1], s=1, alpha=0.5)
            ax.set_title(title if nfe is None else f"{title}\\nNFE={nfe}", fontsize=9)
            ax.set_xlim(-4, 4)
            ax.set_ylim(-4, 4)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
        plt.tight_layout()
        plt.show()
    """),
    md("""
    The first-order SDE samplers need on the order of a hundred steps; the high-order ODE solvers
    (`heun`, `dpm_solver`) get close with 15-20 score evaluations. Samplers built on Langevin
    corrector steps (`annealed_langevin`, `pc`) depend on the signal-to-noise ratio `snr` and on
    the number of steps; with few steps they are the noisiest here (`02_samplers.ipynb` measures
    all of this against exact scores).

    The probability-flow ODE is deterministic: the same prior sample always maps to the same data
    point. `return_trajectory=True` keeps the path of every sample.
    """),
    code("""
        with torch.no_grad():
            traj = sample(sde, score_fn, (200, 2), method="ode", steps=10 if FAST else 40, return_trajectory=True,
                          generator=torch.Generator().manual_seed(SEED))
        path = traj.trajectory  # [steps + 1 (+1 for the final denoising step), 200, 2]
        plt.figure(figsize=(4.5, 4.5))
        plt.plot(path[:, :, 0], path[:, :, 1], color="0.6", lw=0.4)
        plt.scatter(path[0, :, 0], path[0, :, 1], s=4, label="prior, t = T")
        plt.scatter(path[-1, :, 0], path[-1, :, 1], s=4, label="data, t = eps")
        plt.legend()
        plt.title(f"probability-flow ODE paths (NFE={traj.nfe})")
        plt.show()
    """),
    md("""
    ## 5. Likelihood

    `scoresde.likelihood.log_likelihood` integrates the probability-flow ODE from data to the prior
    together with the divergence of its drift (Song et al. 2021, appendix D):
    `log p_0(x) = log p_T(x(T)) + ∫ ∇·f̃(x(t), t) dt`. In 2-D the divergence is computed exactly
    (`trace="exact"`); in high dimensions the Hutchinson estimator (`"rademacher"`) is unbiased.
    """),
    code("""
        from scoresde.likelihood import log_likelihood

        t0 = time.perf_counter()
        ll = log_likelihood(sde, score_fn, x_test, trace="exact", rtol=TOL, atol=TOL)
        print(f"exact trace:  NLL = {-ll.logp.mean():.3f} ± {ll.logp.std() / len(x_test) ** 0.5:.3f} nats,"
              f" NFE {ll.nfe}, {time.perf_counter() - t0:.1f} s")
        hut = log_likelihood(sde, score_fn, x_test, trace="rademacher", rtol=TOL, atol=TOL,
                             generator=torch.Generator().manual_seed(SEED))
        print(f"Hutchinson:   NLL = {-hut.logp.mean():.3f} nats, NFE {hut.nfe}")

        # The learned density on a grid
        lin = torch.linspace(-4, 4, GRID)
        gx, gy = torch.meshgrid(lin, lin, indexing="xy")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
        dens = log_likelihood(sde, score_fn, grid, trace="exact", rtol=10 * TOL, atol=10 * TOL).logp.exp()
        fig, axes = plt.subplots(1, 2, figsize=(8, 4))
        axes[0].scatter(x_data[:, 0], x_data[:, 1], s=1, alpha=0.3)
        axes[0].set_title("data")
        axes[1].imshow(dens.reshape(GRID, GRID).detach(), origin="lower", extent=(-4, 4, -4, 4), cmap="magma")
        axes[1].set_title("learned density exp(log p_0)")
        for ax in axes:
            ax.set_xlim(-4, 4)
            ax.set_ylim(-4, 4)
            ax.set_aspect("equal")
        plt.tight_layout()
        plt.show()
    """),
    md("""
    ## Where next

    - `02_samplers.ipynb`: how many score evaluations each sampler needs, measured against exact
      scores.
    - `03_digits.ipynb`: images, a U-Net, bits/dim and the probability-flow latent space.
    - `04_controllable.ipynb`: inpainting, class guidance and SDEdit.
    """),
]

# ==================================================================================================
# 02 samplers
# ==================================================================================================
NB02 = [
    md("""
    # 02 · Samplers: quality versus number of score evaluations

    With the Gaussian-mixture **oracle** (`scoresde.oracle.GaussianMixture`) the score of every
    noised marginal `p_t` is known in closed form, so the only error left in a sample is the
    sampler's discretization error. This notebook measures it against the number of score
    evaluations (NFE), the cost that matters when the score is a large network.

    Problem (as in `benchmarks/samplers.py`): 8 Gaussians of std 0.25 on a circle of radius 2.
    Quality: the sliced Wasserstein-2 distance to exact samples of the same size, and the mean exact
    log-density `log p_0` of the samples (over-dispersed samples score low), both compared with the
    spread between independent sets of exact samples (the Monte-Carlo **noise floor**).
    """),
    settings("""
        N = 400 if FAST else 4000                 # samples per run
        N_EXACT_SETS = 3 if FAST else 6           # exact sample sets for the noise floor
        STEP_GRID = [4, 12] if FAST else [3, 5, 8, 12, 20, 35, 60, 100, 200]
        TOLS = {  # tolerances (rtol = atol) swept for the adaptive solvers
            "ode": [1e-2] if FAST else [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4],
            "adaptive": [0.2] if FAST else [0.5, 0.2, 0.1, 0.05, 0.02],
        }
        dtype = torch.float64
        print(f"FAST={FAST}: n={N}, steps {STEP_GRID}")
    """),
    code("""
        import math

        from scoresde.metrics import sliced_wasserstein
        from scoresde.oracle import GaussianMixture
        from scoresde.sampling import METHODS, sample
        from scoresde.sde import VESDE, VPSDE

        angles = torch.arange(8, dtype=dtype) * (2 * math.pi / 8)
        means = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
        gmm = GaussianMixture(torch.ones(8, dtype=dtype), means, 0.25)


        def quality(x, ref, seed=1):
            \"\"\"(sliced W2 to the reference set, mean exact log p_0 of x).\"\"\"
            sw = sliced_wasserstein(x, ref, n_projections=128, generator=torch.Generator().manual_seed(seed))
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
    """),
    md("""
    ## Sweep the step count of every sampler

    Fixed-step samplers are swept over `steps`; the adaptive ones (`ode`, and `adaptive` when it is
    available) over their tolerance. The score function is the oracle's exact score,
    `gmm.score_fn(sde)`.
    """),
    code("""
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
        fixed.update({m: {} for m in METHODS if m not in fixed and m not in adaptive
                      and m not in ("annealed_langevin", "sde")})
        print("not shown:", [m for m in METHODS if m not in fixed and m not in adaptive])

        rows = []  # (sde, method, setting, nfe, seconds, sw2, mean log p0)
        for sde_name, sde in {"VP": VPSDE(), "VE": VESDE()}.items():
            score_fn = gmm.score_fn(sde)
            jobs = [(m, {"steps": k, **o}) for m, o in fixed.items() for k in STEP_GRID]
            jobs += [(m, {"rtol": tol, "atol": tol, **o}) for m, o in adaptive.items() for tol in TOLS[m]]
            for method, options in jobs:
                t0 = time.perf_counter()
                res = sample(sde, score_fn, (N, 2), method=method, dtype=dtype,
                             generator=torch.Generator().manual_seed(SEED), **options)
                secs = time.perf_counter() - t0
                sw, mlp = quality(res.x, ref)
                setting = options.get("steps", options.get("rtol"))
                rows.append((sde_name, method, setting, res.nfe, secs, sw, mlp))
        print(f"{len(rows)} runs")
        for r in rows:
            if r[2] == STEP_GRID[-1] or r[1] in adaptive:
                print(f"{r[0]:>3} {r[1]:>18} {r[2]!s:>6}: NFE {r[3]:5d}  SW2 {r[5]:.4f}  log p0 {r[6]:7.3f}")
    """),
    code("""
        fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
        for col, sde_name in enumerate(["VP", "VE"]):
            for method in list(fixed) + list(adaptive):
                pts = sorted((r[3], r[5], r[6]) for r in rows if r[0] == sde_name and r[1] == method)
                if not pts:
                    continue
                nfe, sw, mlp = zip(*pts)
                style = "o--" if method in adaptive else "o-"
                axes[0, col].plot(nfe, sw, style, ms=3, label=method)
                axes[1, col].plot(nfe, np.maximum(np.abs(lp.mean() - np.array(mlp)), 1e-4), style, ms=3, label=method)
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
    """),
    md("""
    Reading the plot: a sampler is indistinguishable from exact sampling once both of its curves are
    under the dotted lines (values below `1e-4` are drawn at `1e-4`). A mean log-density below the
    exact one means over-dispersed samples (mass between the modes), above it under-dispersed ones. First-order SDE samplers (Euler-Maruyama, reverse diffusion, ancestral)
    need on the order of a hundred steps; the high-order ODE solvers get there with far fewer score
    evaluations.

    ## The benchmark's figure

    `python benchmarks/samplers.py` runs the full version of this sweep (2-D and 16-D mixtures,
    VP / sub-VP / VE, with wall times) and writes `benchmarks/results/samplers.csv`. If that file
    exists it is plotted here.
    """),
    code("""
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
            fig, axes = plt.subplots(len(problems), len(sde_names), squeeze=False,
                                     figsize=(5 * len(sde_names), 4 * len(problems)))
            for i, prob in enumerate(problems):
                for j, sde_name in enumerate(sde_names):
                    ax = axes[i][j]
                    sub = [r for r in bench if r["problem"] == prob and r["sde"] == sde_name]
                    for k, label in enumerate(sorted({r["sampler"] for r in sub})):
                        pts = sorted((int(r["nfe"]), float(r["sliced_w2"])) for r in sub
                                     if r["sampler"] == label and r["nan"] != "True")
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
                    ok = [r for r in bench if r["problem"] == prob and r["sde"] == sde_name
                          and r["passed"] == "True"]
                    best = min(ok, key=lambda r: int(r["nfe"])) if ok else None
                    print(f"  {prob:8s} {sde_name:6s}: " + (
                        f"{best['sampler']} (steps {best['steps']}), NFE {best['nfe']}" if best else "none"))
    """),
]

# ==================================================================================================
# 03 digits
# ==================================================================================================
NB03 = [
    md("""
    # 03 · A small U-Net on scikit-learn digits

    scikit-learn ships 1,797 handwritten digits of 8 x 8 pixels with 17 grey levels (0..16) — no
    download needed, and small enough to train an image score model on a CPU. This notebook trains
    a small U-Net under the VP SDE, then shows

    - a grid of samples (and their nearest training digits: no memorization),
    - the model's **bits/dim** on held-out digits (`scoresde.likelihood.bits_per_dim`, 17 levels),
    - the **probability-flow latent**: `scoresde.sampling.encode` maps a digit to the prior
      deterministically and invertibly,
    - **interpolation** between two digits through their latents.
    """),
    settings("""
        TRAIN_STEPS = 10 if FAST else 2000   # Adam steps (batch BATCH)
        BATCH = 32 if FAST else 64
        N_SAMPLES = 16 if FAST else 64
        N_BPD = 8 if FAST else 100           # held-out digits for bits/dim
        TOL = 1e-2 if FAST else 1e-4         # ODE solver tolerances (likelihood, encode/decode)
        print(f"FAST={FAST}: {TRAIN_STEPS} training steps")
    """),
    md("""
    ## The data

    `scoresde.data.get_dataset("digits", split)` returns a data set of `(x, y)` with `x` in the model
    range [-1, 1] (`x = 2 v / 16 - 1` for grey level `v`) and `.info` describing it.
    `scoresde.io.plots.make_grid` tiles images into one array.
    """),
    code("""
        from scoresde.data import get_dataset
        from scoresde.io.plots import make_grid

        train_ds = get_dataset("digits", "train")
        test_ds = get_dataset("digits", "test")
        print(len(train_ds), "train,", len(test_ds), "test;", train_ds.info)
        x_train, y_train = train_ds.get_batch(torch.arange(len(train_ds)))   # [1500, 1, 8, 8], [1500]
        x_test, y_test = test_ds.get_batch(torch.arange(len(test_ds)))


        def show(images, title="", nrow=None, ax=None):
            \"\"\"Show images [N, 1, H, W] in [-1, 1] as one grid.\"\"\"
            if ax is None:
                ncol = nrow or int(np.ceil(np.sqrt(len(images))))
                ax = plt.figure(figsize=(0.9 * ncol, 0.9 * np.ceil(len(images) / ncol) + 0.5)).gca()
            ax.imshow(make_grid(images, nrow=nrow)[..., 0], cmap="gray", vmin=0, vmax=255)
            ax.set_title(title)
            ax.axis("off")
            return ax


        show(x_train[:64], "training digits", nrow=8)
        plt.show()
    """),
    md("""
    ## Training

    The network is `scoresde.nets.unet_small` (a DDPM++-style U-Net: residual blocks, attention at
    the lowest resolution, Gaussian Fourier time features) with 16 base channels, wrapped by
    `ScoreModel` (noise prediction). We keep an exponential moving average of the weights
    (`scoresde.training.ema.EMA`) and sample from it, as the paper does. The same model is trained by
    `python -m scoresde.train experiment=digits_vp`, which adds checkpoints, logging and resumption.
    """),
    code("""
        from scoresde.training.ema import EMA
        from scoresde.losses import dsm_loss
        from scoresde.nets import unet_small
        from scoresde.score import ScoreModel
        from scoresde.sde import VPSDE

        torch.manual_seed(SEED)
        sde = VPSDE()
        net = unet_small(in_channels=1, image_size=8, ch=16)
        model = ScoreModel(net, sde)
        ema = EMA(model, decay=0.995)
        print(f"{sum(p.numel() for p in net.parameters()):,} parameters")

        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        gen = torch.Generator().manual_seed(SEED)
        losses = []
        t0 = time.perf_counter()
        for step in range(TRAIN_STEPS):
            idx = torch.randint(len(x_train), (BATCH,), generator=gen)
            loss = dsm_loss(model, sde, x_train[idx], generator=gen)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            ema.update(model)
            losses.append(loss.item())
            if (step + 1) % 500 == 0:
                print(f"step {step + 1}: loss {np.mean(losses[-500:]):.4f}, {time.perf_counter() - t0:.0f} s")
        print(f"{TRAIN_STEPS} steps in {time.perf_counter() - t0:.0f} s")
        score_model = ema.model   # the averaged weights, in eval mode
        score_fn = score_model.score_fn()

        plt.figure(figsize=(6, 3))
        plt.plot(losses, lw=0.4)
        k = min(50, len(losses))
        plt.plot(np.arange(k - 1, len(losses)), np.convolve(losses, np.ones(k) / k, mode="valid"))
        plt.yscale("log")
        plt.xlabel("step")
        plt.ylabel("DSM loss")
        plt.show()
    """),
    md("""
    ## Samples

    DPM-Solver (third order, 14 steps, log-SNR grid) needs about 15 score evaluations; the
    predictor-corrector sampler of the paper (reverse diffusion + Langevin) a few hundred. Next to
    each sample: its nearest training digit, to see that the model does not just copy the data.
    """),
    code("""
        from scoresde.sampling import sample

        t0 = time.perf_counter()
        fast = sample(sde, score_fn, (N_SAMPLES, 1, 8, 8), method="dpm_solver", steps=14,
                      generator=torch.Generator().manual_seed(SEED))
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        pc = sample(sde, score_fn, (N_SAMPLES, 1, 8, 8), method="pc", steps=20 if FAST else 250,
                    generator=torch.Generator().manual_seed(SEED))
        t_pc = time.perf_counter() - t0

        fig, axes = plt.subplots(1, 3, figsize=(15, 5))
        show(fast.x, f"DPM-Solver: NFE {fast.nfe}, {t_fast:.1f} s", nrow=8, ax=axes[0])
        show(pc.x, f"PC (reverse diffusion + Langevin): NFE {pc.nfe}, {t_pc:.1f} s", nrow=8, ax=axes[1])
        nearest = torch.cdist(fast.x.flatten(1), x_train.flatten(1)).argmin(dim=1)
        show(x_train[nearest], "nearest training digit of each DPM-Solver sample", nrow=8, ax=axes[2])
        plt.show()
    """),
    md("""
    ## Bits per dimension

    The digits are discrete (17 levels), so the likelihood is that of uniformly dequantized data:
    `bits_per_dim` adds uniform noise within each level's bin, computes `log p` with the
    probability-flow ODE (Hutchinson trace estimator) and converts to bits per dimension, with the
    offset for the data scaling (see its docstring for the formula). For reference, a uniform
    distribution over the 17 levels costs `log2(17) = 4.09` bits/dim.
    """),
    code("""
        from scoresde.likelihood import bits_per_dim

        t0 = time.perf_counter()
        bpd = bits_per_dim(sde, score_fn, x_test[:N_BPD], levels=17, data_range=(-1, 1),
                           trace="rademacher", rtol=TOL, atol=TOL, generator=torch.Generator().manual_seed(SEED))
        print(f"bits/dim on {N_BPD} test digits: {bpd.bpd:.3f} ± {bpd.stderr:.3f}"
              f"  (NFE {bpd.nfe}, {time.perf_counter() - t0:.0f} s; uniform: {np.log2(17):.2f})")
    """),
    md("""
    ## The probability-flow latent

    The probability-flow ODE `dx/dt = f(x, t) - ½ g(t)² s(x, t)` is a deterministic, invertible
    map between data and prior. `encode(sde, score_fn, x)` integrates it forward (data → latent
    `z` at `T`); `sample(method="ode", x_init=z, denoise=False)` integrates it back.
    """),
    code("""
        from scoresde.sampling import encode

        x8 = x_test[:8]
        enc = encode(sde, score_fn, x8, rtol=TOL, atol=TOL)
        z = enc.x
        dec = sample(sde, score_fn, method="ode", x_init=z, denoise=False, rtol=TOL, atol=TOL)
        err = (dec.x - x8).abs().max().item()
        print(f"latent mean {z.mean():.3f}, std {z.std():.3f} (prior: 0, 1); encode NFE {enc.nfe}, "
              f"decode NFE {dec.nfe}; max |decode(encode(x)) - x| = {err:.3g}")

        fig, axes = plt.subplots(3, 1, figsize=(8, 3.6))
        show(x8, "digits", nrow=8, ax=axes[0])
        show(z.clamp(-3, 3) / 3, "latents z = encode(x)", nrow=8, ax=axes[1])
        show(dec.x, "decoded latents", nrow=8, ax=axes[2])
        plt.tight_layout()
        plt.show()
    """),
    md("""
    ## Interpolation

    Latents are (approximately) standard Gaussian, whose mass sits near the sphere of radius
    `sqrt(64) = 8`; spherical interpolation stays there, where linear interpolation would pass
    through the low-norm, unlikely middle. Each row decodes `slerp(z_a, z_b, α)`; the last row is
    the naive pixel-space blend of the first pair, for contrast.
    """),
    code("""
        def slerp(a, b, alpha):
            \"\"\"Spherical interpolation between latents a and b [*dims] for weights alpha [K].\"\"\"
            cos = (a * b).sum() / (a.norm() * b.norm())
            omega = torch.arccos(cos.clamp(-1, 1))
            alpha = alpha.reshape(-1, *([1] * a.dim()))
            return (torch.sin((1 - alpha) * omega) * a + torch.sin(alpha * omega) * b) / torch.sin(omega)


        pairs = [(0, 1), (2, 3), (4, 5)]
        alphas = torch.linspace(0, 1, 8)
        zs = torch.cat([slerp(z[i], z[j], alphas) for i, j in pairs])          # [3 * 8, 1, 8, 8]
        rows = sample(sde, score_fn, method="ode", x_init=zs, denoise=False, rtol=TOL, atol=TOL).x
        pixel = (1 - alphas.reshape(-1, 1, 1, 1)) * x8[0] + alphas.reshape(-1, 1, 1, 1) * x8[1]
        show(torch.cat([rows, pixel]), "latent interpolation (rows 1-3), pixel blend (row 4)", nrow=8)
        plt.show()
    """),
]

# ==================================================================================================
# 04 controllable
# ==================================================================================================
NB04 = [
    md("""
    # 04 · Controllable generation on digits: inpainting, guidance, SDEdit

    One class-conditional score model, trained with label dropout, serves every task here:

    - **inpainting** (Song et al. 2021, appendix I): generate the missing pixels of a digit,
      `scoresde.controllable.tasks.inpaint`;
    - **classifier-free guidance** (Ho & Salimans 2022): `s_w = (1 + w) s(x, t, y) - w s(x, t)`,
      `scoresde.controllable.guidance.classifier_free_score_fn`;
    - **classifier guidance** (Dhariwal & Nichol 2021; Song et al. 2021, section 5):
      `s(x, t) + scale ∇x log p_t(y | x)` with a noisy classifier,
      `scoresde.controllable.guidance.classifier_guided_score_fn`;
    - **SDEdit** (Meng et al. 2022): noise a rough guide to time `t0` and denoise it,
      `scoresde.controllable.tasks.sdedit`.

    Every one of them is a score function or a sampler option, so any sampler of
    `scoresde.sampling` works with it.
    """),
    settings("""
        TRAIN_STEPS = 10 if FAST else 2000   # score model (Adam steps, batch BATCH)
        CLF_STEPS = 10 if FAST else 800      # noisy classifier (batch 128)
        BATCH = 32 if FAST else 64
        P_UNCOND = 0.2                       # label dropout: P(train a batch without labels)
        N_PER_CLASS = 2 if FAST else 8       # samples per class in the guidance grids
        STEPS = 10 if FAST else 100          # predictor-corrector steps for inpainting / SDEdit
        print(f"FAST={FAST}: {TRAIN_STEPS} training steps")
    """),
    code("""
        from scoresde.data import get_dataset
        from scoresde.io.plots import make_grid

        train_ds = get_dataset("digits", "train")
        test_ds = get_dataset("digits", "test")
        x_train, y_train = train_ds.get_batch(torch.arange(len(train_ds)))   # [1500, 1, 8, 8] in [-1, 1]
        x_test, y_test = test_ds.get_batch(torch.arange(len(test_ds)))


        def show(images, title="", nrow=None, ax=None):
            \"\"\"Show images [N, 1, H, W] in [-1, 1] as one grid.\"\"\"
            if ax is None:
                ncol = nrow or int(np.ceil(np.sqrt(len(images))))
                ax = plt.figure(figsize=(0.9 * ncol, 0.9 * np.ceil(len(images) / ncol) + 0.5)).gca()
            ax.imshow(make_grid(images.clamp(-1, 1), nrow=nrow)[..., 0], cmap="gray", vmin=0, vmax=255)
            ax.set_title(title, fontsize=10)
            ax.axis("off")
            return ax
    """),
    md("""
    ## A class-conditional score model with label dropout

    `unet_small(num_classes=10)` adds a label embedding with an extra "null" label, used when
    `y=None`. Dropping the labels of a fraction `P_UNCOND` of the batches trains the conditional
    score `s(x, t, y)` and the unconditional one `s(x, t) = model(x, t, y=None)` in one network.
    (`python -m scoresde.train model.conditional=true training.label_dropout=0.2` does the same
    from the command line.)
    """),
    code("""
        from scoresde.training.ema import EMA
        from scoresde.losses import dsm_loss
        from scoresde.nets import unet_small
        from scoresde.score import ScoreModel
        from scoresde.sde import VPSDE

        torch.manual_seed(SEED)
        sde = VPSDE()
        model = ScoreModel(unet_small(in_channels=1, image_size=8, ch=16, num_classes=10), sde)
        ema = EMA(model, decay=0.995)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        gen = torch.Generator().manual_seed(SEED)
        t0 = time.perf_counter()
        for step in range(TRAIN_STEPS):
            idx = torch.randint(len(x_train), (BATCH,), generator=gen)
            y = None if torch.rand((), generator=gen) < P_UNCOND else y_train[idx]
            loss = dsm_loss(model, sde, x_train[idx], y=y, generator=gen)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            ema.update(model)
            if (step + 1) % 500 == 0:
                print(f"step {step + 1}: loss {loss.item():.4f}, {time.perf_counter() - t0:.0f} s")
        cond_model = ema.model                  # model(x, t, y) -> score; y=None: unconditional
        uncond_score = cond_model.score_fn()    # s(x, t) with the null label
        print(f"{TRAIN_STEPS} steps in {time.perf_counter() - t0:.0f} s, last loss {loss.item():.3f}")
    """),
    md("""
    To measure how well guided samples match their class we use an independent judge: a
    logistic-regression classifier on clean digits (scikit-learn; about 95% test accuracy).
    """),
    code("""
        from sklearn.linear_model import LogisticRegression

        judge = LogisticRegression(max_iter=2000).fit(x_train.flatten(1).numpy(), y_train.numpy())
        print(f"judge accuracy on test digits: {judge.score(x_test.flatten(1).numpy(), y_test.numpy()):.3f}")


        def class_accuracy(x, y):
            \"\"\"Fraction of images x [B, 1, 8, 8] that the judge assigns to their target class y [B].\"\"\"
            return float((judge.predict(x.clamp(-1, 1).flatten(1).numpy()) == y.numpy()).mean())
    """),
    md("""
    ## Inpainting

    The known pixels (mask 1) are replaced, after every predictor and corrector step, by the data
    noised to the current time; only the masked-out pixels (mask 0) are generated.
    `make_mask` has a few standard masks; any `[C, H, W]` tensor of 0/1 works. Each digit on the
    left is completed four times with the unconditional score.
    """),
    code("""
        from scoresde.controllable.tasks import inpaint, make_mask

        n_img, n_rep = (2, 2) if FAST else (6, 4)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for ax, mask_name in zip(axes, ["right_half", "center"]):
            mask = make_mask(mask_name, (1, 8, 8))                   # 1 = known, 0 = to generate
            data = x_test[:n_img].repeat_interleave(n_rep, dim=0)    # n_rep copies of each digit
            res = inpaint(sde, uncond_score, data, mask, method="pc", steps=STEPS,
                          generator=torch.Generator().manual_seed(SEED))
            masked = x_test[:n_img] * mask                           # unknown pixels shown grey
            panel = torch.cat([x_test[:n_img, None], masked[:, None],
                               res.x.reshape(n_img, n_rep, 1, 8, 8)], dim=1).flatten(0, 1)
            show(panel, f"mask {mask_name!r}: original | observed | {n_rep} completions (NFE {res.nfe})",
                 nrow=n_rep + 2, ax=ax)
        plt.tight_layout()
        plt.show()
    """),
    md("""
    ## Classifier-free guidance

    Row `k` of each grid asks for digit `k`. `w = 0` samples the learned class-conditional
    distribution; `w > 0` sharpens it toward what the model finds most typical of the class (higher
    class accuracy, less diversity); `w = -1` is the unconditional model.
    """),
    code("""
        from scoresde.controllable.guidance import classifier_free_score_fn
        from scoresde.sampling import sample

        y_grid = torch.arange(10).repeat_interleave(N_PER_CLASS)   # [10 * N_PER_CLASS]
        weights = [-1.0, 0.0, 1.0, 3.0]
        fig, axes = plt.subplots(1, len(weights), figsize=(4.2 * len(weights), 4.6))
        for ax, w in zip(axes, weights):
            score_w = classifier_free_score_fn(cond_model, y_grid, w=w)
            res = sample(sde, score_w, (len(y_grid), 1, 8, 8), method="dpm_solver", steps=14,
                         generator=torch.Generator().manual_seed(SEED))
            acc = class_accuracy(res.x, y_grid)
            show(res.x, f"w = {w}: judge accuracy {acc:.2f} (NFE {res.nfe})", nrow=N_PER_CLASS, ax=ax)
        plt.tight_layout()
        plt.show()
    """),
    md("""
    ## Classifier guidance

    A time-dependent classifier `p_t(y | x_t)` (`scoresde.nets.classifier.NoisyClassifier`) is
    trained on noised digits by `scoresde.training.classifier.fit_classifier`; its gradient,
    added to the *unconditional* score, steers sampling toward class `y`. `scale = 1` is Bayes' rule
    `∇log p_t(x | y) = ∇log p_t(x) + ∇log p_t(y | x)`; larger scales sharpen like `w = scale - 1`.
    (From the command line: `python -m scoresde.train task=classifier`.)
    """),
    code("""
        from scoresde.training.classifier import fit_classifier, noisy_accuracy
        from scoresde.controllable.guidance import classifier_guided_score_fn
        from scoresde.nets.classifier import NoisyClassifier

        torch.manual_seed(SEED)
        clf = NoisyClassifier((1, 8, 8), num_classes=10, channels=32, sde=sde)
        t0 = time.perf_counter()
        fit_classifier(clf, sde, train_ds, steps=CLF_STEPS, batch_size=128, lr=2e-3, seed=SEED)
        accs = {t: noisy_accuracy(clf, sde, x_test, y_test, t, generator=torch.Generator().manual_seed(0))
                for t in (0.01, 0.3, 0.6, 0.9)}
        print(f"classifier trained in {time.perf_counter() - t0:.0f} s; held-out accuracy at time t:",
              ", ".join(f"t={t}: {a:.2f}" for t, a in accs.items()))

        scales = [1.0, 4.0]
        fig, axes = plt.subplots(1, len(scales), figsize=(4.2 * len(scales), 4.6))
        for ax, scale in zip(axes, scales):
            score_c = classifier_guided_score_fn(uncond_score, clf, y_grid, scale=scale)
            res = sample(sde, score_c, (len(y_grid), 1, 8, 8), method="dpm_solver", steps=14,
                         generator=torch.Generator().manual_seed(SEED))
            acc = class_accuracy(res.x, y_grid)
            show(res.x, f"scale = {scale}: judge accuracy {acc:.2f}", nrow=N_PER_CLASS, ax=ax)
        plt.tight_layout()
        plt.show()
    """),
    md("""
    ## SDEdit

    A guide — here a crude "stroke painting" of a digit (2 x 2 blocks, three grey levels) — is
    noised to time `t0` with the forward SDE and then denoised by the reverse SDE. Small `t0` keeps
    the guide (and its blockiness); large `t0` gives realistic digits that drift away from it;
    `t0 = 1` ignores the guide altogether.
    """),
    code("""
        from scoresde.controllable.tasks import sdedit

        digits = x_test[:4 if FAST else 6]
        blocks = torch.nn.functional.avg_pool2d(digits, 2)                       # 4 x 4
        strokes = torch.nn.functional.interpolate(blocks, scale_factor=2, mode="nearest")
        guides = (strokes * 1.5).round().clamp(-1, 1)                            # 3 grey levels

        t0s = [0.2, 0.4, 0.6, 0.8, 1.0]
        cols = [digits, guides]
        for t0_ in t0s:
            res = sdedit(sde, uncond_score, guides, t0=t0_, method="pc", steps=max(2, int(STEPS * t0_)),
                         generator=torch.Generator().manual_seed(SEED))
            cols.append(res.x)
        panel = torch.stack(cols, dim=1).flatten(0, 1)
        show(panel, "digit | guide | SDEdit with t0 = " + ", ".join(map(str, t0s)), nrow=len(cols))
        plt.show()
    """),
]


def main() -> None:
    write("01_quickstart.ipynb", NB01)
    write("02_samplers.ipynb", NB02)
    write("03_digits.ipynb", NB03)
    write("04_controllable.ipynb", NB04)


if __name__ == "__main__":
    main()

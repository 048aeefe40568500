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
# # 01 · Quick start: SDEs, a score model on 2-D data, samplers, likelihood
#
# Score-based generative modeling (Song et al., *Score-Based Generative Modeling through
# Stochastic Differential Equations*, ICLR 2021) in four steps:
#
# 1. a **forward SDE** turns data into noise, `dx = f(x, t) dt + g(t) dw`, `t` from 0 to `T = 1`;
# 2. a network learns the **score** `∇x log p_t(x)` of the noised data by denoising score matching;
# 3. a **sampler** integrates the reverse-time SDE, or the probability-flow ODE, from noise
#    (`t = T`) back to data (`t ≈ 0`);
# 4. the probability-flow ODE, run forwards, gives the exact **log-likelihood** of a data point.
#
# The whole notebook runs on a CPU in a few minutes.

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

TRAIN_STEPS = 30 if FAST else 3000  # Adam steps for the 2-D score model
BATCH = 256
N_SAMPLES = 256 if FAST else 1000  # samples drawn by each sampler
N_LIK = 32 if FAST else 300  # held-out points for the likelihood
GRID = 10 if FAST else 40  # density heat map resolution (GRID x GRID)
TOL = 1e-2 if FAST else 1e-4  # ODE tolerances (ode sampler, likelihood)
print(f"FAST={FAST}: {TRAIN_STEPS} training steps, {N_SAMPLES} samples per sampler")

# %% [markdown]
# ## 1. The forward SDEs and their marginals
#
# All three SDEs of the paper are linear, so the perturbation kernel is Gaussian:
# `x_t = m(t) x_0 + std(t) z`. `marginal_coeffs(t)` returns `(m(t), std(t))`, `log_snr(t)` is
# `λ(t) = log(m(t) / std(t))`.
#
# | SDE | `m(t)` | `std(t)` | prior |
# |---|---|---|---|
# | VP (DDPM) | `exp(-½∫β)` | `sqrt(1 - m²)` | `N(0, I)` |
# | sub-VP | `exp(-½∫β)` | `1 - m²` | `N(0, I)` |
# | VE (SMLD) | `1` | `sqrt(σ(t)² - σ_min²)` | `N(0, σ_max² I)` |

# %%
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

# %% [markdown]
# ## 2. A 2-D data set and the forward process
#
# `scoresde.data.toy2d.make_toy2d(name, n, generator)` draws from the usual 2-D toy sets. Below,
# the data noised by the VP SDE at a few times: `sde.marginal_prob(x0, t)` gives the mean and std
# of `x_t` given `x_0`.

# %%
from scoresde.data.toy2d import make_toy2d

DATASET = "moons"  # or "checkerboard", "swissroll", "rings", "gmm8" (these need longer training)
gen = torch.Generator().manual_seed(SEED)
x_data, _ = make_toy2d(DATASET, 10000, generator=gen)  # [10000, 2] and labels
x_test, _ = make_toy2d(DATASET, N_LIK, generator=gen)  # held out, for the likelihood

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

# %% [markdown]
# ## 3. Training a score model
#
# `MLP` is a residual MLP with a time embedding; `ScoreModel(net, sde)` turns it into a score
# function (here the network predicts the noise `ε` and the score is `-ε / std(t)`), and
# `dsm_loss` is the continuous-time denoising score-matching loss with the `σ²` weighting
# (Song et al. 2021, eq. 7): `E_t E_{x0, z} ‖std(t) s(x_t, t) + z‖²`.

# %%
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
print(
    f"{TRAIN_STEPS} steps in {time.perf_counter() - t0:.1f} s, "
    f"final loss {np.mean(losses[-50:]):.3f}"
)

plt.figure(figsize=(6, 3))
plt.plot(losses, lw=0.5)
plt.plot(np.convolve(losses, np.ones(50) / 50, mode="valid"), label="running mean")
plt.yscale("log")
plt.xlabel("step")
plt.ylabel("DSM loss")
plt.legend()
plt.show()

# %% [markdown]
# ## 4. Sampling with each sampler
#
# `scoresde.sampling.sample(sde, score_fn, shape, method=..., steps=..., **options)` returns a
# result with the samples `.x` and `.nfe`, the number of score evaluations actually made. The
# score function is any callable `score_fn(x, t)`; `model.score_fn()` wraps the trained model.
# The sliced Wasserstein distance to held-out data (`scoresde.metrics.sliced_wasserstein`)
# measures the quality; the first panel is data, for reference.

# %%
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
    "sde": {"steps": steps},  # torchsde
    "adaptive": {"rtol": 0.05},  # adaptive-step SDE solver
    "ode": {"rtol": TOL, "atol": TOL},  # probability-flow ODE, dopri5
    "ddim": {"steps": 25},
    "heun": {"steps": 10},  # EDM's Heun, Karras time grid
    "dpm_solver": {"steps": 14},  # DPM-Solver-3, log-SNR grid
}
runs.update({m: {} for m in METHODS if m not in runs})  # any other method, default options
x_ref, _ = make_toy2d(DATASET, N_SAMPLES, generator=gen)
results = {}
with torch.no_grad():
    for method, options in runs.items():
        t0 = time.perf_counter()
        res = sample(
            sde,
            score_fn,
            (N_SAMPLES, 2),
            method=method,
            generator=torch.Generator().manual_seed(SEED),
            **options,
        )
        secs = time.perf_counter() - t0
        sw = sliced_wasserstein(res.x, x_ref, generator=torch.Generator().manual_seed(1))
        results[method] = res
        print(f"{method:>18}: NFE {res.nfe:4d}, {secs:5.2f} s, sliced W2 to data {sw:.3f}")

panels = [("data", x_ref, None)] + [(m, r.x, r.nfe) for m, r in results.items()]
ncol = 6
nrow = -(-len(panels) // ncol)
fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.8 * nrow))
for ax in axes.flat[len(panels) :]:
    ax.axis("off")
for ax, (title, xs, nfe) in zip(axes.flat, panels):
    ax.scatter(xs[:, 0], xs[:, 1], s=1, alpha=0.5)
    ax.set_title(title if nfe is None else f"{title}\nNFE={nfe}", fontsize=9)
    ax.set_xlim(-4, 4)
    ax.set_ylim(-4, 4)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# The first-order SDE samplers need on the order of a hundred steps; the high-order ODE solvers
# (`heun`, `dpm_solver`) get close with 15-20 score evaluations. Samplers built on Langevin
# corrector steps (`annealed_langevin`, `pc`) depend on the signal-to-noise ratio `snr` and on
# the number of steps; with few steps they are the noisiest here (`02_samplers.ipynb` measures
# all of this against exact scores).
#
# The probability-flow ODE is deterministic: the same prior sample always maps to the same data
# point. `return_trajectory=True` keeps the path of every sample.

# %%
with torch.no_grad():
    traj = sample(
        sde,
        score_fn,
        (200, 2),
        method="ode",
        steps=10 if FAST else 40,
        return_trajectory=True,
        generator=torch.Generator().manual_seed(SEED),
    )
path = traj.trajectory  # [steps + 1 (+1 for the final denoising step), 200, 2]
plt.figure(figsize=(4.5, 4.5))
plt.plot(path[:, :, 0], path[:, :, 1], color="0.6", lw=0.4)
plt.scatter(path[0, :, 0], path[0, :, 1], s=4, label="prior, t = T")
plt.scatter(path[-1, :, 0], path[-1, :, 1], s=4, label="data, t = eps")
plt.legend()
plt.title(f"probability-flow ODE paths (NFE={traj.nfe})")
plt.show()

# %% [markdown]
# ## 5. Likelihood
#
# `scoresde.likelihood.log_likelihood` integrates the probability-flow ODE from data to the prior
# together with the divergence of its drift (Song et al. 2021, appendix D):
# `log p_0(x) = log p_T(x(T)) + ∫ ∇·f̃(x(t), t) dt`. In 2-D the divergence is computed exactly
# (`trace="exact"`); in high dimensions the Hutchinson estimator (`"rademacher"`) is unbiased.

# %%
from scoresde.likelihood import log_likelihood

t0 = time.perf_counter()
ll = log_likelihood(sde, score_fn, x_test, trace="exact", rtol=TOL, atol=TOL)
print(
    f"exact trace:  NLL = {-ll.logp.mean():.3f} ± {ll.logp.std() / len(x_test) ** 0.5:.3f} nats,"
    f" NFE {ll.nfe}, {time.perf_counter() - t0:.1f} s"
)
hut = log_likelihood(
    sde,
    score_fn,
    x_test,
    trace="rademacher",
    rtol=TOL,
    atol=TOL,
    generator=torch.Generator().manual_seed(SEED),
)
print(f"Hutchinson:   NLL = {-hut.logp.mean():.3f} nats, NFE {hut.nfe}")

# The learned density on a grid
lin = torch.linspace(-4, 4, GRID)
gx, gy = torch.meshgrid(lin, lin, indexing="xy")
grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
dens = log_likelihood(sde, score_fn, grid, trace="exact", rtol=10 * TOL, atol=10 * TOL).logp.exp()
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
axes[0].scatter(x_data[:, 0], x_data[:, 1], s=1, alpha=0.3)
axes[0].set_title("data")
axes[1].imshow(
    dens.reshape(GRID, GRID).detach(), origin="lower", extent=(-4, 4, -4, 4), cmap="magma"
)
axes[1].set_title("learned density exp(log p_0)")
for ax in axes:
    ax.set_xlim(-4, 4)
    ax.set_ylim(-4, 4)
    ax.set_aspect("equal")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Where next
#
# - `02_samplers.ipynb`: how many score evaluations each sampler needs, measured against exact
#   scores.
# - `03_digits.ipynb`: images, a U-Net, bits/dim and the probability-flow latent space.
# - `04_controllable.ipynb`: inpainting, class guidance and SDEdit.

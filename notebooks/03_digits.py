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
# # 03 · A small U-Net on scikit-learn digits
#
# scikit-learn ships 1,797 handwritten digits of 8 x 8 pixels with 17 grey levels (0..16) — no
# download needed, and small enough to train an image score model on a CPU. This notebook trains
# a small U-Net under the VP SDE, then shows
#
# - a grid of samples (and their nearest training digits: no memorization),
# - the model's **bits/dim** on held-out digits (`scoresde.likelihood.bits_per_dim`, 17 levels),
# - the **probability-flow latent**: `scoresde.sampling.encode` maps a digit to the prior
#   deterministically and invertibly,
# - **interpolation** between two digits through their latents.

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

TRAIN_STEPS = 10 if FAST else 2000  # Adam steps (batch BATCH)
BATCH = 32 if FAST else 64
N_SAMPLES = 16 if FAST else 64
N_BPD = 8 if FAST else 100  # held-out digits for bits/dim
TOL = 1e-2 if FAST else 1e-4  # ODE solver tolerances (likelihood, encode/decode)
print(f"FAST={FAST}: {TRAIN_STEPS} training steps")

# %% [markdown]
# ## The data
#
# `scoresde.data.get_dataset("digits", split)` returns a data set of `(x, y)` with `x` in the model
# range [-1, 1] (`x = 2 v / 16 - 1` for grey level `v`) and `.info` describing it.
# `scoresde.io.plots.make_grid` tiles images into one array.

# %%
from scoresde.data import get_dataset
from scoresde.io.plots import make_grid

train_ds = get_dataset("digits", "train")
test_ds = get_dataset("digits", "test")
print(len(train_ds), "train,", len(test_ds), "test;", train_ds.info)
x_train, y_train = train_ds.get_batch(torch.arange(len(train_ds)))  # [1500, 1, 8, 8], [1500]
x_test, y_test = test_ds.get_batch(torch.arange(len(test_ds)))


def show(images, title="", nrow=None, ax=None):
    """Show images [N, 1, H, W] in [-1, 1] as one grid."""
    if ax is None:
        ncol = nrow or int(np.ceil(np.sqrt(len(images))))
        ax = plt.figure(figsize=(0.9 * ncol, 0.9 * np.ceil(len(images) / ncol) + 0.5)).gca()
    ax.imshow(make_grid(images, nrow=nrow)[..., 0], cmap="gray", vmin=0, vmax=255)
    ax.set_title(title)
    ax.axis("off")
    return ax


show(x_train[:64], "training digits", nrow=8)
plt.show()

# %% [markdown]
# ## Training
#
# The network is `scoresde.nets.unet_small` (a DDPM++-style U-Net: residual blocks, attention at
# the lowest resolution, Gaussian Fourier time features) with 16 base channels, wrapped by
# `ScoreModel` (noise prediction). We keep an exponential moving average of the weights
# (`scoresde.training.ema.EMA`) and sample from it, as the paper does. The same model is trained by
# `python -m scoresde.train experiment=digits_vp`, which adds checkpoints, logging and resumption.

# %%
from scoresde.losses import dsm_loss
from scoresde.nets import unet_small
from scoresde.score import ScoreModel
from scoresde.sde import VPSDE
from scoresde.training.ema import EMA

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
        print(
            f"step {step + 1}: loss {np.mean(losses[-500:]):.4f}, {time.perf_counter() - t0:.0f} s"
        )
print(f"{TRAIN_STEPS} steps in {time.perf_counter() - t0:.0f} s")
score_model = ema.model  # the averaged weights, in eval mode
score_fn = score_model.score_fn()

plt.figure(figsize=(6, 3))
plt.plot(losses, lw=0.4)
k = min(50, len(losses))
plt.plot(np.arange(k - 1, len(losses)), np.convolve(losses, np.ones(k) / k, mode="valid"))
plt.yscale("log")
plt.xlabel("step")
plt.ylabel("DSM loss")
plt.show()

# %% [markdown]
# ## Samples
#
# DPM-Solver (third order, 14 steps, log-SNR grid) needs about 15 score evaluations; the
# predictor-corrector sampler of the paper (reverse diffusion + Langevin) a few hundred. Next to
# each sample: its nearest training digit, to see that the model does not just copy the data.

# %%
from scoresde.sampling import sample

t0 = time.perf_counter()
fast = sample(
    sde,
    score_fn,
    (N_SAMPLES, 1, 8, 8),
    method="dpm_solver",
    steps=14,
    generator=torch.Generator().manual_seed(SEED),
)
t_fast = time.perf_counter() - t0
t0 = time.perf_counter()
pc = sample(
    sde,
    score_fn,
    (N_SAMPLES, 1, 8, 8),
    method="pc",
    steps=20 if FAST else 250,
    generator=torch.Generator().manual_seed(SEED),
)
t_pc = time.perf_counter() - t0

fig, axes = plt.subplots(1, 3, figsize=(15, 5))
show(fast.x, f"DPM-Solver: NFE {fast.nfe}, {t_fast:.1f} s", nrow=8, ax=axes[0])
show(pc.x, f"PC (reverse diffusion + Langevin): NFE {pc.nfe}, {t_pc:.1f} s", nrow=8, ax=axes[1])
nearest = torch.cdist(fast.x.flatten(1), x_train.flatten(1)).argmin(dim=1)
show(x_train[nearest], "nearest training digit of each DPM-Solver sample", nrow=8, ax=axes[2])
plt.show()

# %% [markdown]
# ## Bits per dimension
#
# The digits are discrete (17 levels), so the likelihood is that of uniformly dequantized data:
# `bits_per_dim` adds uniform noise within each level's bin, computes `log p` with the
# probability-flow ODE (Hutchinson trace estimator) and converts to bits per dimension, with the
# offset for the data scaling (see its docstring for the formula). For reference, a uniform
# distribution over the 17 levels costs `log2(17) = 4.09` bits/dim.

# %%
from scoresde.likelihood import bits_per_dim

t0 = time.perf_counter()
bpd = bits_per_dim(
    sde,
    score_fn,
    x_test[:N_BPD],
    levels=17,
    data_range=(-1, 1),
    trace="rademacher",
    rtol=TOL,
    atol=TOL,
    generator=torch.Generator().manual_seed(SEED),
)
print(
    f"bits/dim on {N_BPD} test digits: {bpd.bpd:.3f} ± {bpd.stderr:.3f}"
    f"  (NFE {bpd.nfe}, {time.perf_counter() - t0:.0f} s; uniform: {np.log2(17):.2f})"
)

# %% [markdown]
# ## The probability-flow latent
#
# The probability-flow ODE `dx/dt = f(x, t) - ½ g(t)² s(x, t)` is a deterministic, invertible
# map between data and prior. `encode(sde, score_fn, x)` integrates it forward (data → latent
# `z` at `T`); `sample(method="ode", x_init=z, denoise=False)` integrates it back.

# %%
from scoresde.sampling import encode

x8 = x_test[:8]
enc = encode(sde, score_fn, x8, rtol=TOL, atol=TOL)
z = enc.x
dec = sample(sde, score_fn, method="ode", x_init=z, denoise=False, rtol=TOL, atol=TOL)
err = (dec.x - x8).abs().max().item()
print(
    f"latent mean {z.mean():.3f}, std {z.std():.3f} (prior: 0, 1); encode NFE {enc.nfe}, "
    f"decode NFE {dec.nfe}; max |decode(encode(x)) - x| = {err:.3g}"
)

fig, axes = plt.subplots(3, 1, figsize=(8, 3.6))
show(x8, "digits", nrow=8, ax=axes[0])
show(z.clamp(-3, 3) / 3, "latents z = encode(x)", nrow=8, ax=axes[1])
show(dec.x, "decoded latents", nrow=8, ax=axes[2])
plt.tight_layout()
plt.show()


# %% [markdown]
# ## Interpolation
#
# Latents are (approximately) standard Gaussian, whose mass sits near the sphere of radius
# `sqrt(64) = 8`; spherical interpolation stays there, where linear interpolation would pass
# through the low-norm, unlikely middle. Each row decodes `slerp(z_a, z_b, α)`; the last row is
# the naive pixel-space blend of the first pair, for contrast.


# %%
def slerp(a, b, alpha):
    """Spherical interpolation between latents a and b [*dims] for weights alpha [K]."""
    cos = (a * b).sum() / (a.norm() * b.norm())
    omega = torch.arccos(cos.clamp(-1, 1))
    alpha = alpha.reshape(-1, *([1] * a.dim()))
    return (torch.sin((1 - alpha) * omega) * a + torch.sin(alpha * omega) * b) / torch.sin(omega)


pairs = [(0, 1), (2, 3), (4, 5)]
alphas = torch.linspace(0, 1, 8)
zs = torch.cat([slerp(z[i], z[j], alphas) for i, j in pairs])  # [3 * 8, 1, 8, 8]
rows = sample(sde, score_fn, method="ode", x_init=zs, denoise=False, rtol=TOL, atol=TOL).x
pixel = (1 - alphas.reshape(-1, 1, 1, 1)) * x8[0] + alphas.reshape(-1, 1, 1, 1) * x8[1]
show(torch.cat([rows, pixel]), "latent interpolation (rows 1-3), pixel blend (row 4)", nrow=8)
plt.show()

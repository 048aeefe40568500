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
# # 04 · Controllable generation on digits: inpainting, guidance, SDEdit
#
# One class-conditional score model, trained with label dropout, serves every task here:
#
# - **inpainting** (Song et al. 2021, appendix I): generate the missing pixels of a digit,
#   `scoresde.controllable.tasks.inpaint`;
# - **classifier-free guidance** (Ho & Salimans 2022): `s_w = (1 + w) s(x, t, y) - w s(x, t)`,
#   `scoresde.controllable.guidance.classifier_free_score_fn`;
# - **classifier guidance** (Dhariwal & Nichol 2021; Song et al. 2021, section 5):
#   `s(x, t) + scale ∇x log p_t(y | x)` with a noisy classifier,
#   `scoresde.controllable.guidance.classifier_guided_score_fn`;
# - **SDEdit** (Meng et al. 2022): noise a rough guide to time `t0` and denoise it,
#   `scoresde.controllable.tasks.sdedit`.
#
# Every one of them is a score function or a sampler option, so any sampler of
# `scoresde.sampling` works with it.

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

TRAIN_STEPS = 10 if FAST else 2000  # score model (Adam steps, batch BATCH)
CLF_STEPS = 10 if FAST else 800  # noisy classifier (batch 128)
BATCH = 32 if FAST else 64
P_UNCOND = 0.2  # label dropout: P(train a batch without labels)
N_PER_CLASS = 2 if FAST else 8  # samples per class in the guidance grids
STEPS = 10 if FAST else 100  # predictor-corrector steps for inpainting / SDEdit
print(f"FAST={FAST}: {TRAIN_STEPS} training steps")

# %%
from scoresde.data import get_dataset
from scoresde.io.plots import make_grid

train_ds = get_dataset("digits", "train")
test_ds = get_dataset("digits", "test")
x_train, y_train = train_ds.get_batch(torch.arange(len(train_ds)))  # [1500, 1, 8, 8] in [-1, 1]
x_test, y_test = test_ds.get_batch(torch.arange(len(test_ds)))


def show(images, title="", nrow=None, ax=None):
    """Show images [N, 1, H, W] in [-1, 1] as one grid."""
    if ax is None:
        ncol = nrow or int(np.ceil(np.sqrt(len(images))))
        ax = plt.figure(figsize=(0.9 * ncol, 0.9 * np.ceil(len(images) / ncol) + 0.5)).gca()
    ax.imshow(make_grid(images.clamp(-1, 1), nrow=nrow)[..., 0], cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    return ax


# %% [markdown]
# ## A class-conditional score model with label dropout
#
# `unet_small(num_classes=10)` adds a label embedding with an extra "null" label, used when
# `y=None`. Dropping the labels of a fraction `P_UNCOND` of the batches trains the conditional
# score `s(x, t, y)` and the unconditional one `s(x, t) = model(x, t, y=None)` in one network.
# (`python -m scoresde.train model.conditional=true training.label_dropout=0.2` does the same
# from the command line.)

# %%
from scoresde.losses import dsm_loss
from scoresde.nets import unet_small
from scoresde.score import ScoreModel
from scoresde.sde import VPSDE
from scoresde.training.ema import EMA

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
cond_model = ema.model  # model(x, t, y) -> score; y=None: unconditional
uncond_score = cond_model.score_fn()  # s(x, t) with the null label
print(f"{TRAIN_STEPS} steps in {time.perf_counter() - t0:.0f} s, last loss {loss.item():.3f}")

# %% [markdown]
# To measure how well guided samples match their class we use an independent judge: a
# logistic-regression classifier on clean digits (scikit-learn; about 95% test accuracy).

# %%
from sklearn.linear_model import LogisticRegression

judge = LogisticRegression(max_iter=2000).fit(x_train.flatten(1).numpy(), y_train.numpy())
print(
    f"judge accuracy on test digits: {judge.score(x_test.flatten(1).numpy(), y_test.numpy()):.3f}"
)


def class_accuracy(x, y):
    """Fraction of images x [B, 1, 8, 8] that the judge assigns to their target class y [B]."""
    return float((judge.predict(x.clamp(-1, 1).flatten(1).numpy()) == y.numpy()).mean())


# %% [markdown]
# ## Inpainting
#
# The known pixels (mask 1) are replaced, after every predictor and corrector step, by the data
# noised to the current time; only the masked-out pixels (mask 0) are generated.
# `make_mask` has a few standard masks; any `[C, H, W]` tensor of 0/1 works. Each digit on the
# left is completed four times with the unconditional score.

# %%
from scoresde.controllable.tasks import inpaint, make_mask

n_img, n_rep = (2, 2) if FAST else (6, 4)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
for ax, mask_name in zip(axes, ["right_half", "center"]):
    mask = make_mask(mask_name, (1, 8, 8))  # 1 = known, 0 = to generate
    data = x_test[:n_img].repeat_interleave(n_rep, dim=0)  # n_rep copies of each digit
    res = inpaint(
        sde,
        uncond_score,
        data,
        mask,
        method="pc",
        steps=STEPS,
        generator=torch.Generator().manual_seed(SEED),
    )
    masked = x_test[:n_img] * mask  # unknown pixels shown grey
    panel = torch.cat(
        [x_test[:n_img, None], masked[:, None], res.x.reshape(n_img, n_rep, 1, 8, 8)], dim=1
    ).flatten(0, 1)
    show(
        panel,
        f"mask {mask_name!r}: original | observed | {n_rep} completions (NFE {res.nfe})",
        nrow=n_rep + 2,
        ax=ax,
    )
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Classifier-free guidance
#
# Row `k` of each grid asks for digit `k`. `w = 0` samples the learned class-conditional
# distribution; `w > 0` sharpens it toward what the model finds most typical of the class (higher
# class accuracy, less diversity); `w = -1` is the unconditional model.

# %%
from scoresde.controllable.guidance import classifier_free_score_fn
from scoresde.sampling import sample

y_grid = torch.arange(10).repeat_interleave(N_PER_CLASS)  # [10 * N_PER_CLASS]
weights = [-1.0, 0.0, 1.0, 3.0]
fig, axes = plt.subplots(1, len(weights), figsize=(4.2 * len(weights), 4.6))
for ax, w in zip(axes, weights):
    score_w = classifier_free_score_fn(cond_model, y_grid, w=w)
    res = sample(
        sde,
        score_w,
        (len(y_grid), 1, 8, 8),
        method="dpm_solver",
        steps=14,
        generator=torch.Generator().manual_seed(SEED),
    )
    acc = class_accuracy(res.x, y_grid)
    show(res.x, f"w = {w}: judge accuracy {acc:.2f} (NFE {res.nfe})", nrow=N_PER_CLASS, ax=ax)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Classifier guidance
#
# A time-dependent classifier `p_t(y | x_t)` (`scoresde.nets.classifier.NoisyClassifier`) is
# trained on noised digits by `scoresde.training.classifier.fit_classifier`; its gradient,
# added to the *unconditional* score, steers sampling toward class `y`. `scale = 1` is Bayes' rule
# `∇log p_t(x | y) = ∇log p_t(x) + ∇log p_t(y | x)`; larger scales sharpen like `w = scale - 1`.
# (From the command line: `python -m scoresde.train task=classifier`.)

# %%
from scoresde.controllable.guidance import classifier_guided_score_fn
from scoresde.nets.classifier import NoisyClassifier
from scoresde.training.classifier import fit_classifier, noisy_accuracy

torch.manual_seed(SEED)
clf = NoisyClassifier((1, 8, 8), num_classes=10, channels=32, sde=sde)
t0 = time.perf_counter()
fit_classifier(clf, sde, train_ds, steps=CLF_STEPS, batch_size=128, lr=2e-3, seed=SEED)
accs = {
    t: noisy_accuracy(clf, sde, x_test, y_test, t, generator=torch.Generator().manual_seed(0))
    for t in (0.01, 0.3, 0.6, 0.9)
}
print(
    f"classifier trained in {time.perf_counter() - t0:.0f} s; held-out accuracy at time t:",
    ", ".join(f"t={t}: {a:.2f}" for t, a in accs.items()),
)

scales = [1.0, 4.0]
fig, axes = plt.subplots(1, len(scales), figsize=(4.2 * len(scales), 4.6))
for ax, scale in zip(axes, scales):
    score_c = classifier_guided_score_fn(uncond_score, clf, y_grid, scale=scale)
    res = sample(
        sde,
        score_c,
        (len(y_grid), 1, 8, 8),
        method="dpm_solver",
        steps=14,
        generator=torch.Generator().manual_seed(SEED),
    )
    acc = class_accuracy(res.x, y_grid)
    show(res.x, f"scale = {scale}: judge accuracy {acc:.2f}", nrow=N_PER_CLASS, ax=ax)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## SDEdit
#
# A guide — here a crude "stroke painting" of a digit (2 x 2 blocks, three grey levels) — is
# noised to time `t0` with the forward SDE and then denoised by the reverse SDE. Small `t0` keeps
# the guide (and its blockiness); large `t0` gives realistic digits that drift away from it;
# `t0 = 1` ignores the guide altogether.

# %%
from scoresde.controllable.tasks import sdedit

digits = x_test[: 4 if FAST else 6]
blocks = torch.nn.functional.avg_pool2d(digits, 2)  # 4 x 4
strokes = torch.nn.functional.interpolate(blocks, scale_factor=2, mode="nearest")
guides = (strokes * 1.5).round().clamp(-1, 1)  # 3 grey levels

t0s = [0.2, 0.4, 0.6, 0.8, 1.0]
cols = [digits, guides]
for t0_ in t0s:
    res = sdedit(
        sde,
        uncond_score,
        guides,
        t0=t0_,
        method="pc",
        steps=max(2, int(STEPS * t0_)),
        generator=torch.Generator().manual_seed(SEED),
    )
    cols.append(res.x)
panel = torch.stack(cols, dim=1).flatten(0, 1)
show(panel, "digit | guide | SDEdit with t0 = " + ", ".join(map(str, t0s)), nrow=len(cols))
plt.show()

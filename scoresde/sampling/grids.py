"""Time grids for the reverse samplers and the exact Gaussian-kernel coefficients they use.

Every grid runs from ``t_start`` (usually T) down to ``eps`` with ``steps + 1`` points,
``t_0 = t_start > t_1 > ... > t_steps = eps``, and is computed in float64:

* ``uniform``:  t_i = t_start - i (t_start - eps) / steps           (Song et al. 2021)
* ``logsnr``:   lambda_i uniform between lambda(t_start) and lambda(eps),
                lambda(t) = log(m(t) / std(t))                      (Lu et al. 2022)
* ``karras``:   sigma_i = (s_max^(1/rho) + i/steps (s_min^(1/rho) - s_max^(1/rho)))^rho,
                rho = 7, with sigma(t) = std(t) / m(t) = exp(-lambda(t))
                                                                    (Karras et al. 2022, eq. 5)
* ``quadratic``: t_i = eps + (t_start - eps) (1 - i/steps)^2         (Song, Meng & Ermon 2021)
* ``bump``:     logSNR points with density proportional to sech((lambda - c) / w): with
                F(lambda) = (2/pi) atan(exp((lambda - c) / w)) (its CDF), F(lambda_i) is
                uniform between F(lambda(t_start)) and F(lambda(eps)), i.e.
                lambda_i = c + w log tan(pi F_i / 2).
                Steps are dense where the noise level sigma = e^{-lambda} is comparable to the
                data's feature scale (c = 0.25, w = 1.25 by default: half the points at
                sigma ~ 0.2 .. 3, about the band EDM's training distribution also favours) and
                grow geometrically towards both ends, where the flow is nearly linear and the
                exponential integrators are nearly exact.

``logsnr``, ``karras`` and ``bump`` are mapped back to time through ``sde.t_from_log_snr``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoresde.sde import SDE

__all__ = ["GRIDS", "eps_for_sigma", "sigma_of", "time_grid", "transition"]

GRIDS = ("uniform", "logsnr", "karras", "quadratic", "bump")


def time_grid(
    sde: SDE,
    t_start: float,
    eps: float,
    steps: int,
    kind: str = "uniform",
    rho: float = 7.0,
    lambda_center: float = 0.25,
    lambda_width: float = 1.25,
) -> Tensor:
    """The float64 grid [steps + 1] from ``t_start`` to ``eps`` (see the module docstring);
    ``rho`` is used by ``karras``, ``lambda_center`` / ``lambda_width`` (c, w) by ``bump``."""
    if kind not in GRIDS:
        raise ValueError(f"time_grid must be one of {GRIDS}, got {kind!r}")
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    ends = torch.tensor([t_start, eps], dtype=torch.float64)
    if kind == "uniform":
        t = t_start + i * (eps - t_start)
    elif kind == "quadratic":
        t = eps + (t_start - eps) * (1.0 - i) ** 2
    else:
        lam = sde.log_snr(ends)
        if kind == "logsnr":
            lam_i = lam[0] + i * (lam[1] - lam[0])
        elif kind == "bump":
            if not lambda_width > 0:
                raise ValueError(f"lambda_width must be > 0, got {lambda_width!r}")
            c, w = float(lambda_center), float(lambda_width)
            f = (2.0 / math.pi) * torch.atan(torch.exp((lam - c) / w))
            f_i = f[0] + i * (f[1] - f[0])
            lam_i = c + w * torch.log(torch.tan(0.5 * math.pi * f_i))
        else:
            smax, smin = torch.exp(-lam[0]) ** (1.0 / rho), torch.exp(-lam[1]) ** (1.0 / rho)
            lam_i = -rho * torch.log(smax + i * (smin - smax))
        t = sde.t_from_log_snr(lam_i)
    t[0], t[-1] = t_start, eps  # exact endpoints despite round trips
    return t


def eps_for_sigma(sde: SDE, sigma: float) -> float:
    """The time t with sigma(t) = std(t) / m(t) = ``sigma``, i.e. lambda(t) = -log(sigma)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    return float(sde.t_from_log_snr(torch.tensor(-math.log(sigma), dtype=torch.float64)))


def sigma_of(sde: SDE, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(m(t), std(t), sigma(t) = std / m) for a time tensor (EDM's noise level)."""
    m, std = sde.marginal_coeffs(t)
    return m, std, std / m


def transition(sde: SDE, t: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Exact forward transition x_t = a x_s + b z from time s < t: a = m_t / m_s,
    b^2 = std_t^2 - a^2 std_s^2 (the Gaussian kernel composition; for VP on a uniform grid
    a = sqrt(1 - beta_i), b^2 = beta_i, the DDPM chain; for VE a = 1,
    b^2 = sigma_t^2 - sigma_s^2, SMLD).
    """
    m_t, std_t = sde.marginal_coeffs(t)
    m_s, std_s = sde.marginal_coeffs(s)
    a = m_t / m_s
    b2 = (std_t**2 - (a * std_s) ** 2).clamp(min=0.0)
    return a, b2

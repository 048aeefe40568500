"""Forward SDEs of Song et al., "Score-Based Generative Modeling through SDEs" (ICLR 2021).

Every SDE here is linear (affine drift, state-independent diffusion)::

    dx = f(x, t) dt + g(t) dw,      t in [0, T],  T = 1

so its perturbation kernel is Gaussian, ``p_{0t}(x_t | x_0) = N(m(t) x_0, std(t)^2 I)``.
``marginal_coeffs(t)`` returns ``(m(t), std(t))``; everything else (``marginal_prob``, the
log signal-to-noise ratio used by fast samplers, the oracle's exact marginals) derives from it.

Shapes: ``x`` is ``[B, *dims]``; ``t`` is ``[B]`` (a 0-d tensor or float is broadcast).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from scoresde.checks import check_size

ScoreFn = Callable[[Tensor, Tensor], Tensor]
TimeLike = Tensor | float

__all__ = ["SDE", "VESDE", "VPSDE", "ReverseSDE", "ScoreFn", "SubVPSDE", "batch_view"]


def batch_view(c: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample coefficient ``c`` ([B] or 0-d) to broadcast against ``x`` [B, *dims]."""
    if c.dim() == 0:
        return c
    return c.reshape(c.shape[0], *([1] * (x.dim() - 1)))


def _as_time(t: TimeLike, like: Tensor | None = None) -> Tensor:
    if isinstance(t, Tensor):
        return t
    if like is not None:
        return torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return torch.as_tensor(t, dtype=torch.get_default_dtype())


class SDE(abc.ABC):
    """A linear forward SDE ``dx = f(x, t) dt + g(t) dw`` on ``[0, T]``; ``N`` discrete steps."""

    T: float = 1.0

    def __init__(self, N: int = 1000):
        self.N = check_size("N", N)

    # ------------------------------------------------------------------ continuous time
    @abc.abstractmethod
    def drift(self, x: Tensor, t: TimeLike) -> Tensor:
        """f(x, t), shape of ``x``."""

    @abc.abstractmethod
    def diffusion(self, t: TimeLike) -> Tensor:
        """g(t), shape of ``t``."""

    @abc.abstractmethod
    def marginal_coeffs(self, t: TimeLike) -> tuple[Tensor, Tensor]:
        """(m(t), std(t)) with ``x_t = m(t) x_0 + std(t) z``; both shaped like ``t``."""

    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the isotropic Gaussian prior p_T."""

    def sde(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """(f(x, t), g(t)) as in the reference implementation."""
        t = _as_time(t, x)
        return self.drift(x, t), self.diffusion(t)

    def marginal_prob(self, x0: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """Mean ``m(t) x0`` ([B, *dims]) and std ``std(t)`` ([B]) of p_{0t}(x_t | x_0)."""
        t = _as_time(t, x0)
        m, std = self.marginal_coeffs(t)
        return batch_view(m, x0) * x0, std

    def log_snr(self, t: TimeLike) -> Tensor:
        """Half log signal-to-noise ratio, lambda(t) = log(m(t) / std(t)).

        (Lu et al. 2022, DPM-Solver.)
        """
        m, std = self.marginal_coeffs(_as_time(t))
        return torch.log(m) - torch.log(std)

    @abc.abstractmethod
    def t_from_log_snr(self, lmb: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr` (lambda is strictly decreasing in t)."""

    # ------------------------------------------------------------------ prior
    def prior_sample(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
    ) -> Tensor:
        """Draw ``shape`` samples from the prior N(0, prior_std^2 I)."""
        if device is None and generator is not None:
            device = generator.device
        z = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
        return z * self.prior_std()

    def prior_logp(self, z: Tensor) -> Tensor:
        """log N(z; 0, prior_std^2 I) summed over all non-batch dimensions, shape [B]."""
        s = self.prior_std()
        d = z[0].numel()
        sq = z.reshape(z.shape[0], -1).pow(2).sum(dim=1)
        return -0.5 * d * math.log(2 * math.pi * s * s) - sq / (2 * s * s)

    # ------------------------------------------------------------------ discrete chains
    def time_to_index(self, t: Tensor) -> Tensor:
        """Index i in {0, ..., N-1} of the discrete step nearest to t: round(t (N - 1) / T).

        The reference truncates instead, which maps t = i / (N - 1) computed in float32 to i - 1
        about half the time; rounding is exact for every grid time.
        """
        return (t * (self.N - 1) / self.T).round().long().clamp(0, self.N - 1)

    def discretize(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """Per-step (f_i, G_i) of ``x_{i+1} = x_i + f_i + G_i z_i``.

        The default is the Euler-Maruyama step with dt = T / N:
        f_i = f(x, t) dt, G_i = g(t) sqrt(dt).
        """
        t = _as_time(t, x)
        dt = self.T / self.N
        return self.drift(x, t) * dt, self.diffusion(t) * math.sqrt(dt)

    def tweedie(self, x: Tensor, t: TimeLike, score: Tensor) -> Tensor:
        """Tweedie's denoiser E[x_0 | x_t] = (x_t + std(t)^2 s(x_t, t)) / m(t) (Efron 2011).

        ``t`` is 0-d or [B]; m and std are computed in float64, then cast to x's dtype. The one
        copy: samplers, the Tweedie-only SDEdit path and the final denoising step all use it.
        """
        t64 = _as_time(t).to(dtype=torch.float64)
        m, std = self.marginal_coeffs(t64)
        m = batch_view(m.to(dtype=x.dtype, device=x.device), x)
        var = batch_view((std**2).to(dtype=x.dtype, device=x.device), x)
        return (x + var * score) / m

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (Anderson 1982) or probability-flow ODE driven by ``score_fn``."""
        return ReverseSDE(self, score_fn, probability_flow)


class _LinearBetaSDE(SDE):
    """Shared pieces of VP and sub-VP: beta(t) = beta_min + t (beta_max - beta_min)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        if not beta_min > 0:
            raise ValueError(f"beta_min must be > 0, got {beta_min!r}")
        if not beta_max > beta_min:
            raise ValueError(f"beta_max must be > beta_min ({beta_min}), got {beta_max!r}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def beta(self, t: TimeLike) -> Tensor:
        t = _as_time(t)
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_mean_coeff(self, t: TimeLike) -> Tensor:
        """log m(t) = -1/2 int_0^t beta(s) ds = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2."""
        t = _as_time(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def t_from_log_mean_coeff(self, log_m: Tensor) -> Tensor:
        """Invert log m(t) (a quadratic in t) for t >= 0."""
        db = self.beta_max - self.beta_min
        return (-self.beta_min + torch.sqrt(self.beta_min**2 - 4.0 * db * log_m)) / db

    def drift(self, x: Tensor, t: TimeLike) -> Tensor:
        t = _as_time(t, x)
        return -0.5 * batch_view(self.beta(t), x) * x

    def prior_std(self) -> float:
        return 1.0

    # discrete DDPM schedule (Ho et al. 2020): beta_i = beta(t_i) / N with t_i = i / (N - 1)
    @property
    def discrete_betas(self) -> Tensor:
        """DDPM betas, linspace(beta_min / N, beta_max / N, N) (1e-4 .. 0.02 for the defaults)."""
        return torch.linspace(
            self.beta_min / self.N, self.beta_max / self.N, self.N, dtype=torch.float64
        )

    @property
    def betas(self) -> Tensor:
        return self.discrete_betas

    @property
    def alphas(self) -> Tensor:
        return 1.0 - self.discrete_betas

    @property
    def alphas_cumprod(self) -> Tensor:
        return torch.cumprod(self.alphas, dim=0)


class VPSDE(_LinearBetaSDE):
    """Variance-preserving SDE, the continuous limit of DDPM.

    dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw;
    m(t) = exp(-1/2 int_0^t beta),  std(t)^2 = 1 - m(t)^2.
    """

    def diffusion(self, t: TimeLike) -> Tensor:
        return torch.sqrt(self.beta(_as_time(t)))

    def marginal_coeffs(self, t: TimeLike) -> tuple[Tensor, Tensor]:
        log_m = self.log_mean_coeff(_as_time(t))
        return torch.exp(log_m), torch.sqrt(-torch.expm1(2.0 * log_m))

    def log_snr(self, t: TimeLike) -> Tensor:
        log_m = self.log_mean_coeff(_as_time(t))
        return log_m - 0.5 * torch.log(-torch.expm1(2.0 * log_m))

    def t_from_log_snr(self, lmb: Tensor) -> Tensor:
        # m^2 = sigmoid(2 lambda)  =>  log m = -1/2 softplus(-2 lambda)
        log_m = -0.5 * torch.nn.functional.softplus(-2.0 * lmb)
        return self.t_from_log_mean_coeff(log_m)

    def discretize(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """DDPM step: x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z.

        So f_i = (sqrt(1-beta_i) - 1) x_i.
        """
        t = _as_time(t, x)
        idx = self.time_to_index(t)
        beta = self.discrete_betas.to(device=x.device, dtype=x.dtype)[idx]
        f = batch_view(torch.sqrt(1.0 - beta) - 1.0, x) * x
        return f, torch.sqrt(beta)


class SubVPSDE(_LinearBetaSDE):
    """Sub-VP SDE (Song et al. 2021, eq. 29): variance bounded by the VP one.

    dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 int_0^t beta))) dw;
    m(t) = exp(-1/2 int_0^t beta),  std(t) = 1 - m(t)^2.
    """

    def diffusion(self, t: TimeLike) -> Tensor:
        t = _as_time(t)
        # int_0^t beta = -2 log m(t), so 1 - exp(-2 int beta) = -expm1(4 log m)
        discount = -torch.expm1(4.0 * self.log_mean_coeff(t))
        return torch.sqrt(self.beta(t) * discount)

    def marginal_coeffs(self, t: TimeLike) -> tuple[Tensor, Tensor]:
        log_m = self.log_mean_coeff(_as_time(t))
        return torch.exp(log_m), -torch.expm1(2.0 * log_m)

    def log_snr(self, t: TimeLike) -> Tensor:
        log_m = self.log_mean_coeff(_as_time(t))
        return log_m - torch.log(-torch.expm1(2.0 * log_m))

    def t_from_log_snr(self, lmb: Tensor) -> Tensor:
        # e^lambda = m / (1 - m^2)  =>  e^lambda m^2 + m - e^lambda = 0, whose positive root is
        # m = 2 e^lambda / (1 + sqrt(1 + 4 e^{2 lambda}))
        #   = 2 / (e^{-lambda} + sqrt(e^{-2 lambda} + 4)).
        # Use the first form for lambda < 0 and the second for lambda >= 0 (no overflow either way).
        neg = torch.clamp(lmb, max=0.0)
        pos = torch.clamp(lmb, min=0.0)
        log_m_neg = math.log(2.0) + neg - torch.log1p(torch.sqrt(1.0 + 4.0 * torch.exp(2.0 * neg)))
        log_m_pos = math.log(2.0) - torch.log(
            torch.exp(-pos) + torch.sqrt(torch.exp(-2.0 * pos) + 4.0)
        )
        log_m = torch.where(lmb < 0, log_m_neg, log_m_pos)
        return self.t_from_log_mean_coeff(log_m)


class VESDE(SDE):
    """Variance-exploding SDE, the continuous limit of SMLD / NCSN.

    sigma(t) = sigma_min (sigma_max / sigma_min)^t,
    dx = sigma(t) sqrt(2 ln(sigma_max / sigma_min)) dw.

    The exact perturbation kernel of this SDE has m(t) = 1 and
    std(t)^2 = sigma(t)^2 - sigma_min^2 = sigma_min^2 ((sigma_max/sigma_min)^{2t} - 1);
    the reference implementation uses std(t) = sigma(t), which is off by sigma_min near t = 0.
    The prior is N(0, sigma_max^2 I) as in the paper.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        if not sigma_min > 0:
            raise ValueError(f"sigma_min must be > 0, got {sigma_min!r}")
        if not sigma_max > sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min ({sigma_min}), got {sigma_max!r}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: TimeLike) -> Tensor:
        """Noise level sigma(t) = sigma_min (sigma_max / sigma_min)^t."""
        return self.sigma_min * torch.exp(_as_time(t) * self._log_ratio)

    def drift(self, x: Tensor, t: TimeLike) -> Tensor:
        return torch.zeros_like(x)

    def diffusion(self, t: TimeLike) -> Tensor:
        return self.sigma(t) * math.sqrt(2.0 * self._log_ratio)

    def marginal_coeffs(self, t: TimeLike) -> tuple[Tensor, Tensor]:
        t = _as_time(t)
        std = self.sigma_min * torch.sqrt(torch.expm1(2.0 * t * self._log_ratio))
        return torch.ones_like(t), std

    def log_snr(self, t: TimeLike) -> Tensor:
        t = _as_time(t)
        return -math.log(self.sigma_min) - 0.5 * torch.log(torch.expm1(2.0 * t * self._log_ratio))

    def t_from_log_snr(self, lmb: Tensor) -> Tensor:
        # std = e^{-lambda};  t = log1p(std^2 / sigma_min^2) / (2 ln(sigma_max / sigma_min))
        return torch.log1p(torch.exp(-2.0 * lmb) / self.sigma_min**2) / (2.0 * self._log_ratio)

    def prior_std(self) -> float:
        return self.sigma_max

    @property
    def discrete_sigmas(self) -> Tensor:
        """SMLD / NCSN noise levels, geometric from sigma_min to sigma_max over N steps."""
        return torch.exp(
            torch.linspace(
                math.log(self.sigma_min), math.log(self.sigma_max), self.N, dtype=torch.float64
            )
        )

    @property
    def sigmas(self) -> Tensor:
        return self.discrete_sigmas

    def discretize(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """SMLD step: x_{i+1} = x_i + sqrt(sigma_{i+1}^2 - sigma_i^2) z (sigma_{-1} = 0).

        So f_i = 0.
        """
        t = _as_time(t, x)
        idx = self.time_to_index(t)
        sig = self.discrete_sigmas.to(device=x.device, dtype=x.dtype)
        s = sig[idx]
        s_prev = torch.where(idx == 0, torch.zeros_like(s), sig[(idx - 1).clamp(min=0)])
        return torch.zeros_like(x), torch.sqrt(s**2 - s_prev**2)


class ReverseSDE:
    """Reverse-time SDE dx = [f - g^2 s] dt + g dw-bar, or with ``probability_flow`` the ODE
    dx/dt = f - 1/2 g^2 s (Song et al. 2021, eqs. 6 and 13). Time still runs forward in the
    arguments; integrate it from T down to eps."""

    def __init__(self, sde: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.forward_sde = sde
        self.score_fn = score_fn
        self.probability_flow = bool(probability_flow)
        self.T = sde.T
        self.N = sde.N

    def drift(self, x: Tensor, t: TimeLike, score: Tensor | None = None) -> Tensor:
        """f(x, t) - c g(t)^2 s(x, t), c = 1/2 for the probability flow and 1 otherwise."""
        t = _as_time(t, x)
        if score is None:
            score = self.score_fn(x, t)
        g2 = batch_view(self.forward_sde.diffusion(t) ** 2, x)
        c = 0.5 if self.probability_flow else 1.0
        return self.forward_sde.drift(x, t) - c * g2 * score

    def diffusion(self, t: TimeLike) -> Tensor:
        g = self.forward_sde.diffusion(_as_time(t))
        return torch.zeros_like(g) if self.probability_flow else g

    def sde(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        t = _as_time(t, x)
        return self.drift(x, t), self.diffusion(t)

    def discretize(
        self, x: Tensor, t: TimeLike, score: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Reverse of the forward chain: (f_i - c G_i^2 s, G_i or 0) (Song et al. 2021, eq. 46)."""
        t = _as_time(t, x)
        f, G = self.forward_sde.discretize(x, t)
        if score is None:
            score = self.score_fn(x, t)
        c = 0.5 if self.probability_flow else 1.0
        rev_f = f - c * batch_view(G**2, x) * score
        rev_G = torch.zeros_like(G) if self.probability_flow else G
        return rev_f, rev_G

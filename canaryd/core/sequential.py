"""An anytime-valid test: does the canary produce more errors than its traffic share explains?

Lindon & Malek, "Anytime-Valid Inference for Multinomial Count Data" (NeurIPS 2022), as used
for Netflix's sequential regression detection: with the traffic split rho known (canaryd sets
it), each error lands on the canary or on stable like a multinomial draw with probabilities
proportional to rho_i * exp(delta_i). Under H0 (same error rate) they follow rho exactly. With a
Dirichlet(k * rho) mixture over the alternative, the e-value

    E_n = B(k*rho + N) / B(k*rho) / prod_i rho_i ** N_i        (B = multivariate Beta)

is a nonnegative martingale under H0, so P(E_n ever >= 1/alpha) <= alpha however often it is
looked at: checking at every analysis interval does not inflate false alarms the way repeated
fixed-sample tests do. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _log_beta(alphas: tuple[float, ...]) -> float:
    return sum(math.lgamma(a) for a in alphas) - math.lgamma(sum(alphas))


def log_e_value(counts: tuple[float, float], shares: tuple[float, float], k: float) -> float:
    """ln E for error counts (canary, stable) under traffic shares (canary, stable)."""
    if not all(0 < s < 1 for s in shares) or abs(sum(shares) - 1) > 1e-9:
        raise ValueError("traffic shares must be strictly between 0 and 1 and sum to 1")
    if any(c < 0 for c in counts) or k <= 0:
        raise ValueError("counts must be >= 0 and the prior strength > 0")
    prior = tuple(k * s for s in shares)
    posterior = tuple(p + c for p, c in zip(prior, counts, strict=True))
    return (
        _log_beta(posterior) - _log_beta(prior)
        - sum(c * math.log(s) for c, s in zip(counts, shares, strict=True))
    )


@dataclass(frozen=True)
class SequentialResult:
    e_value: float
    rejected: bool  # H0 rejected in the direction "canary worse"
    canary_error_share: float | None


def judge_errors(
    canary_errors: float, stable_errors: float, canary_share: float, *, alpha: float, k: float
) -> SequentialResult:
    total = canary_errors + stable_errors
    log_e = log_e_value((canary_errors, stable_errors), (canary_share, 1 - canary_share), k)
    e_value = math.exp(min(log_e, 700.0))
    share = canary_errors / total if total > 0 else None
    worse = share is not None and share > canary_share
    return SequentialResult(e_value, worse and log_e >= math.log(1 / alpha), share)

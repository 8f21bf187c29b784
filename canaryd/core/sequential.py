"""Anytime-valid tests of "the canary gets more of the bad events than its traffic share explains".

Bad events are errors (`*-error-count` templates) or slow requests (latency histograms: the
requests above a bucket bound). In each analysis interval the canary served a share rho of
the requests (measured from the same metric, over the same window). If the canary is no worse
than stable, a bad event is then the canary's with probability rho; if the canary's rate of
bad events is r = e^delta times stable's, with probability

    p(delta) = rho e^delta / (rho e^delta + 1 - rho)

Conditioning on the total number of bad events keeps the test valid whatever the overall rate
does: a shared incident that raises both versions' errors alike gives no evidence against the
canary. (Conditioning on the request counts too makes the canary's count hypergeometric
rather than binomial; the likelihood ratio below is convex in it, so by Hoeffding (1963) its
expectation stays <= 1 and the test stays valid.)

With c_t canary and s_t stable events at share rho_t in interval t, the likelihood ratio of
delta against 0 over the whole rollout is

    L(delta) = prod_t exp(delta c_t) / (rho_t e^delta + 1 - rho_t) ** (c_t + s_t)

a nonnegative supermartingale under "no worse" (delta <= 0) for every delta > 0, however the
share moves from interval to interval and step to step. An equal-weight mixture over a grid
of ratios (1.26x .. 64x) is one too, so by Ville's inequality P(E ever >= 1/alpha) <= alpha:
checking at every interval and carrying the evidence across steps does not inflate false
alarms the way repeated fixed-sample tests do. The whole state of a test is ln L on the grid
(`State.log_lr`), updated interval by interval.

The mirror test says when there is enough evidence to stop waiting: against "the canary is at
least `ratio` times worse", the mixture over smaller ratios on the grid is again a test
supermartingale; once it reaches 1/alpha, a canary that bad is ruled out at level alpha.

References: Lindon & Malek, "Anytime-Valid Inference for Multinomial Count Data" (NeurIPS
2022); Lindon, Sanden, Shirikian, "Rapid Regression Detection in Software Deployments through
Sequential Testing" (arXiv 2205.14762); Ville (1939); Hoeffding (1963). Pure, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Rate ratios canary/stable 2^(k/3), k = -15 .. 18 (1/32x .. 64x): where L is tracked.
GRID_K = tuple(range(-15, 19))
LOG_RATIOS = tuple(k * math.log(2) / 3 for k in GRID_K)
_WORSE = tuple(i for i, k in enumerate(GRID_K) if k > 0)  # the alternatives "worse"
_LOG_CAP = 700.0  # exp() overflows a float just above 709


def _log_norm(share: float, delta: float) -> float:
    """log(rho e^delta + 1 - rho), written so that no delta can overflow."""
    if delta > 0:
        return delta + math.log(share + (1 - share) * math.exp(-delta))
    return math.log(share * math.exp(delta) + 1 - share)


def _log_mean_exp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


@dataclass(frozen=True)
class State:
    """A test's evidence over the whole rollout: ln L at every grid ratio, and the totals."""

    log_lr: tuple[float, ...] = field(default=(0.0,) * len(GRID_K))
    canary: float = 0.0  # bad events on the canary
    stable: float = 0.0
    expected: float = 0.0  # canary events its traffic shares explain

    def __post_init__(self) -> None:
        if len(self.log_lr) != len(GRID_K):
            raise ValueError(f"log_lr needs {len(GRID_K)} values, one per grid ratio")

    def update(self, share: float, canary: float, stable: float) -> State:
        """Add one interval: `canary` and `stable` bad events at canary share `share`."""
        if not 0 < share < 1:
            raise ValueError("the traffic share must be strictly between 0 and 1")
        if not (math.isfinite(canary) and math.isfinite(stable)) or canary < 0 or stable < 0:
            raise ValueError("counts must be finite and >= 0")
        n = canary + stable
        if n == 0:
            return self
        log_lr = tuple(v + canary * d - n * _log_norm(share, d)
                       for v, d in zip(self.log_lr, LOG_RATIOS, strict=True))
        return State(log_lr, self.canary + canary, self.stable + stable,
                     self.expected + n * share)


def of(intervals: Iterable[tuple[float, float, float]]) -> State:
    """The state after intervals of (share, canary events, stable events)."""
    state = State()
    for share, canary, stable in intervals:
        state = state.update(share, canary, stable)
    return state


def log_e_worse(state: State) -> float:
    """ln E against "the canary is no worse than stable" (large: it is worse)."""
    return _log_mean_exp([state.log_lr[i] for i in _WORSE])


def snap_ratio(ratio: float) -> int:
    """Index of the largest grid ratio <= `ratio` (ruling that out rules out `ratio`)."""
    if ratio <= 1:
        raise ValueError("ratio must be > 1")
    k = math.floor(math.log2(ratio) * 3 + 1e-9)
    return GRID_K.index(max(1, min(k, GRID_K[-1])))


def log_e_within(state: State, ratio: float) -> float:
    """ln E against "the canary is at least `ratio` times worse" (large: it is not)."""
    edge = snap_ratio(ratio)
    null = state.log_lr[edge]
    return _log_mean_exp([state.log_lr[i] - null for i in range(edge)])


@dataclass(frozen=True)
class SequentialResult:
    e_value: float  # evidence that the canary is worse (reject at >= 1/alpha)
    rejected: bool
    settled: bool  # a canary `ratio` times worse is ruled out at level alpha
    log_e: float
    log_e_within: float


def judge(state: State, *, alpha: float, ratio: float) -> SequentialResult:
    log_e = log_e_worse(state)
    within = log_e_within(state, ratio)
    threshold = math.log(1 / alpha)
    return SequentialResult(e_value=math.exp(min(log_e, _LOG_CAP)), rejected=log_e >= threshold,
                            settled=within >= threshold, log_e=log_e, log_e_within=within)

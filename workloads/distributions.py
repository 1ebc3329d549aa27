"""Per-suite distributions, from the Autellix paper's workload table (Fig. 11, section 6).

| suite | calls per program | prompt tokens per call | output tokens per call | source |
|---|---|---|---|---|
| chatbot | mean 6.66, max 80, long tail | ~256 | ~277 | ShareGPT conversations |
| react | mean 10.75, max 70 | ~735 (shared system prompt, tool signatures) | ~34 | BFCL v3 |
| lats | mean ~160, in parallel expansions | ~467 | ~73 | LATS on HotpotQA |

The paper gives means and maxima, not shapes. Our choices (documented, seeded):

* calls per program (``--shape``): by default a discrete log-normal fitted to the
  paper's mean and maximum (:func:`fitted_sigma`): long-tailed with a decreasing hazard
  rate, so a program that has run long is likely to run longer, as the paper's "long
  tail" and its 80-turn maximum say. ``geometric`` (1 + geometric, the same mean) is
  memoryless: attained service says nothing about the work left, the worst case for
  any non-clairvoyant policy. ``lognormal:S`` sets the log-normal's sigma to ``S``;
* tokens per call: log-normal with the paper's mean (sigma 0.6 for prompts, 0.8 for
  outputs: chat outputs vary more than prompts), clipped to [4, 4096];
* react: 600 of the ~735 prompt tokens are the suite's shared system prompt (tool
  signatures); each call adds the rest;
* lats: expansion steps of ``LATS_WIDTH`` = 5 parallel candidate calls followed by 5
  parallel reflection calls (the LATS tutorial's N=5), steps with mean 16 (so ~160
  calls per program);

* think time between chat turns: log-normal with sigma 1.0 around a chosen mean. The
  ShareGPT conversations carry no timestamps and the paper gives no think time; a
  log-normal with a heavy tail is the usual model of user think times (most replies
  come within seconds, some after minutes). The mean is a setting
  (``autellix bench --think-time``): 3 s by default, to fit CPU runs whose turns take
  seconds; the engine keeps a thread's program for ``program_ttl_s`` (600 s) idle.

A ``token_scale`` shrinks every token length and a ``call_scale`` the number of calls
(chatbot turns, react steps, lats steps) to fit a CPU, keeping the shapes.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from dataclasses import dataclass

SUITES = ("chatbot", "react", "lats")
MIN_TOKENS, MAX_TOKENS = 4, 4096
LATS_WIDTH = 5


@dataclass(frozen=True, slots=True)
class SuiteShape:
    mean_units: float  # chatbot turns / react steps / lats expansion steps
    max_units: int
    prompt_mean: float
    output_mean: float
    system_tokens: int = 0


SHAPES = {
    "chatbot": SuiteShape(6.66, 80, 256.0, 277.0),
    "react": SuiteShape(10.75, 70, 135.0, 34.0, system_tokens=600),
    "lats": SuiteShape(16.0, 200, 467.0, 73.0),  # units: steps of 2 x LATS_WIDTH calls
}
PROMPT_SIGMA, OUTPUT_SIGMA = 0.6, 0.8
THINK_SIGMA = 1.0

#: Programs in the trace each suite's maximum comes from: the paper does not say. We
#: assume a few thousand ShareGPT conversations (3,000) and BFCL v3's 800 multi-turn
#: entries; the fitted maximum is the largest of that many draws (the 1 - 1/n
#: quantile). LATS has no maximum in the paper: its steps take ReAct's fitted sigma
#: (agent loops alike).
TRACE_PROGRAMS = {"chatbot": 3000, "react": 800}
SIGMA_LIKE = {"lats": "react"}
COUNT_SHAPES = ("lognormal", "geometric")


def lognormal_tokens(rng: random.Random, mean: float, sigma: float, scale: float) -> int:
    """A log-normal draw with the given mean (before scaling), clipped and scaled."""
    mu = math.log(mean) - sigma**2 / 2
    value = rng.lognormvariate(mu, sigma)
    return max(1, round(min(max(value, MIN_TOKENS), MAX_TOKENS) * scale))


def geometric_count(rng: random.Random, mean: float, maximum: int) -> int:
    """1 + Geometric, with the given mean, clipped at ``maximum``."""
    if mean <= 1:
        return 1
    p = 1.0 / mean
    u = 1.0 - rng.random()
    return min(maximum, 1 + int(math.log(u) / math.log(1.0 - p)))


def think_time_s(rng: random.Random, mean_s: float) -> float:
    """A user's think time between two chat turns: log-normal with mean ``mean_s``."""
    if mean_s <= 0:
        return 0.0
    mu = math.log(mean_s) - THINK_SIGMA**2 / 2
    return rng.lognormvariate(mu, THINK_SIGMA)


def _phi_inverse(p: float) -> float:
    return statistics.NormalDist().inv_cdf(p)


@functools.cache
def fitted_sigma(suite: str) -> float:
    """The log-normal sigma whose largest of ``TRACE_PROGRAMS[suite]`` draws is the
    paper's maximum, given its mean: ln(max/mean) = sigma z - sigma^2 / 2, with z the
    normal quantile at 1 - 1/n (the smaller root)."""
    suite = SIGMA_LIKE.get(suite, suite)
    shape, n = SHAPES[suite], TRACE_PROGRAMS[suite]
    z = _phi_inverse(1.0 - 1.0 / n)
    gap = math.log(shape.max_units / shape.mean_units)
    return z - math.sqrt(z * z - 2.0 * gap)


@functools.cache
def _lognormal_mu(mean: float, sigma: float, maximum: int) -> float:
    """The mu at which ``clip(round(LogNormal(mu, sigma)), 1, maximum)`` has ``mean``."""
    def discrete_mean(mu: float) -> float:
        dist = statistics.NormalDist(mu, sigma)
        below = lambda x: dist.cdf(math.log(x))  # noqa: E731 - P(X < x)
        total, prev = 0.0, 0.0
        for k in range(1, maximum):
            cdf = below(k + 0.5)
            total += k * (cdf - prev)
            prev = cdf
        return total + maximum * (1.0 - prev)

    lo, hi = -10.0, math.log(maximum) + 10.0
    for _ in range(100):  # bisection: the mean grows with mu
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if discrete_mean(mid) < mean else (lo, mid)
    return (lo + hi) / 2


def lognormal_count(rng: random.Random, mean: float, sigma: float, maximum: int) -> int:
    """A discrete log-normal count in [1, maximum] with the given mean."""
    if mean <= 1 or maximum <= 1:
        return 1
    mu = _lognormal_mu(mean, sigma, maximum)
    return min(maximum, max(1, round(rng.lognormvariate(mu, sigma))))


def parse_shape(name: str) -> tuple[str, float | None]:
    """``"lognormal"`` (fitted sigma), ``"lognormal:S"`` or ``"geometric"``."""
    kind, _, value = name.partition(":")
    if kind not in COUNT_SHAPES or (value and kind != "lognormal"):
        raise ValueError(f"Unknown shape {name!r} (valid: lognormal, lognormal:SIGMA, "
                         "geometric)")
    if not value:
        return kind, None
    try:
        sigma = float(value)
    except ValueError:
        sigma = math.nan
    if not 0 < sigma < 10:
        raise ValueError(f"A log-normal sigma must be a number in (0, 10), got {value!r}")
    return kind, sigma


def count_of(rng: random.Random, suite: str, shape: str, mean: float, maximum: int) -> int:
    """Calls (chat turns, ReAct steps, LATS steps) of one program of ``suite``."""
    kind, sigma = parse_shape(shape)
    if kind == "geometric":
        return geometric_count(rng, mean, maximum)
    return lognormal_count(rng, mean, sigma or fitted_sigma(suite), maximum)

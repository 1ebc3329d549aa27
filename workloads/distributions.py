"""Per-suite distributions, from the Autellix paper's workload table (Fig. 11, section 6).

| suite | calls per program | prompt tokens per call | output tokens per call | source |
|---|---|---|---|---|
| chatbot | mean 6.66, max 80, long tail | ~256 | ~277 | ShareGPT conversations |
| react | mean 10.75, max 70 | ~735 (shared system prompt, tool signatures) | ~34 | BFCL v3 |
| lats | mean ~160, in parallel expansions | ~467 | ~73 | LATS on HotpotQA |

The paper gives means and maxima, not shapes. Our choices (documented, seeded):

* calls per program: 1 + geometric (long-tailed, the shape of conversation lengths),
  with the paper's mean, clipped at the paper's maximum;
* tokens per call: log-normal with the paper's mean (sigma 0.6 for prompts, 0.8 for
  outputs: chat outputs vary more than prompts), clipped to [4, 4096];
* react: 600 of the ~735 prompt tokens are the suite's shared system prompt (tool
  signatures); each call adds the rest;
* lats: expansion steps of ``LATS_WIDTH`` = 5 parallel candidate calls followed by 5
  parallel reflection calls (the LATS tutorial's N=5), steps ~ 1 + geometric with mean
  16 (so ~160 calls per program).

A ``token_scale`` shrinks every token length and a ``call_scale`` the number of calls
(chatbot turns, react steps, lats steps) to fit a CPU, keeping the shapes.
"""

from __future__ import annotations

import math
import random
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

"""How much the shape of calls per program decides what a non-clairvoyant policy gains.

For each suite and each calls-per-program shape, from memoryless (``geometric``) through
the fitted log-normal to heavier tails (``lognormal:S``), simulates fcfs, atlas and the
clairvoyant srpt on a GPU cost profile at the suite's rates (``sim_fig12.RATES``), and
reports each policy's throughput at equal latency: the rate at which its mean program
token latency reaches 5x (and 10x) the unloaded mean (srpt's lowest), with its ratio to
fcfs; ">=": still under the SLO at the highest rate run. Chats run their turns back to
back (no think time): the shape alone changes.

Usage:
  python benchmarks/shape_sensitivity.py --profile a100-llama3.1-8b --programs 1000 \\
      --out docs/sim-a100/shapes [--suites chatbot,react,lats,mixed] \\
      [--shapes geometric,lognormal,lognormal:1.2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autellix_workloads.bench import BenchConfig
from autellix_workloads.distributions import fitted_sigma, parse_shape
from autellix_workloads.sim.des import SimConfig
from autellix_workloads.sim.profile import CostProfile
from autellix_workloads.sim.sweep import rate_at_latency, run_sweep

sys.path.insert(0, str(Path(__file__).parent))
from sim_fig12 import RATES  # noqa: E402

VARIANTS = ["fcfs", "atlas", "srpt"]
SLO_FACTORS = (5.0, 10.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="a100-llama3.1-8b")
    parser.add_argument("--suites", default="chatbot,react,lats,mixed")
    parser.add_argument("--shapes", default="geometric,lognormal,lognormal:1.2")
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="sim-results/shapes")
    args = parser.parse_args(argv)
    shapes = args.shapes.split(",")
    for shape in shapes:
        parse_shape(shape)
    profile = CostProfile.load(args.profile)
    sim = SimConfig(profile=profile)
    table: dict[str, dict[str, dict]] = {}
    for suite in args.suites.split(","):
        table[suite] = {}
        for shape in shapes:
            cfg = BenchConfig(suite=suite, rates=RATES[suite], policies=VARIANTS,
                              num_programs=args.programs, seed=args.seed, token_scale=1.0,
                              call_scale=1.0, model=profile.name, shape=shape,
                              think_time_s=0.0, max_num_seqs=profile.max_num_seqs)
            result = run_sweep(cfg, sim, log=lambda line: None)
            unloaded = min(x.mean for x in result.summaries if x.policy == "srpt")
            top = {x.policy: x.mean for x in result.summaries if x.rate == max(cfg.rates)}
            table[suite][shape] = {
                f"{f:g}x": {v: {"rate": rate_at_latency(result.summaries, v, f * unloaded),
                                # still under the SLO at the highest rate: a lower bound
                                "at_least": top[v] <= f * unloaded}
                            for v in VARIANTS} for f in SLO_FACTORS}
            print(f"{suite} {shape}: {table[suite][shape]}", file=sys.stderr,  # noqa: T201
                  flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"shapes-{profile.name}.json").write_text(json.dumps(
        {"profile": profile.name, "programs": args.programs, "seed": args.seed,
         "rates": {s: RATES[s] for s in table}, "throughput": table}, indent=2))
    text = markdown(table, shapes)
    (out / f"shapes-{profile.name}.md").write_text(text + "\n")
    print(text)  # noqa: T201
    return 0


def _shape_name(shape: str) -> str:
    kind, sigma = parse_shape(shape)
    if kind == "geometric":
        return "geometric"
    return f"log-normal, sigma {sigma:g}" if sigma else "log-normal, fitted"


def markdown(table: dict[str, dict[str, dict]], shapes: list[str]) -> str:
    rows = ["| suite | shape | " + " | ".join(
        f"{v} @ {f:g}x" for f in SLO_FACTORS for v in VARIANTS) + " |",
        "|---|---|" + "---|" * (len(SLO_FACTORS) * len(VARIANTS))]
    for suite, by_shape in table.items():
        for shape in shapes:
            cells = []
            for f in SLO_FACTORS:
                rates = by_shape[shape][f"{f:g}x"]
                for v in VARIANTS:
                    rate, fcfs = rates[v]["rate"], rates["fcfs"]["rate"]
                    mark = ">=" if rates[v]["at_least"] else ""
                    ratio = f" ({rate / fcfs:.2f}x)" if rate and fcfs and v != "fcfs" else ""
                    cells.append("-" if rate is None else f"{mark}{rate:.2f}{ratio}")
            name = _shape_name(shape)
            if shape == "lognormal" and suite != "mixed":
                name += f" ({fitted_sigma(suite):.2f})"
            rows.append(f"| {suite} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())

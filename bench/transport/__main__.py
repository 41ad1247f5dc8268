"""``python -m bench.transport``: per-round transport overhead without training.

For each (clients N, parameters P) point, real client processes send a P-parameter float32
update (split like a CNN's layers) and fetch the new global model, in lock-step rounds, through:
  ours         the real aggregator (waitress, safetensors, streaming FedAvg)
  ours-f16     the same with float16 updates (half the upload bytes)
  ours-secagg  the same with secure aggregation (SecAgg+: keys, shares, masks, unmasking)
  seed         the KFP sample's design rebuilt (Flask dev server, JSON form posts, sleep polls)
  floor        the same bytes over raw loopback TCP into a numpy running sum
  flower       Flower 1.42's gRPC round trip with its FedAvg (when flwr imports)
  flower-secagg  Flower 1.42's SecAggPlusWorkflow + secaggplus_mod in its simulation runtime
It prints a markdown table and, per point, one summary line of ratios from this run:
``transport: N=<n> P=<p> ours=<s>s seed_design=<s>s floor=<s>s speedup_vs_seed=<x>
ratio_to_floor=<x> flower=<s>s speedup_vs_flower=<x>``, and where ours-secagg ran
``transport_secagg: N=<n> P=<p> plain=<s>s secure=<s>s overhead=<x> plain_peak_mib=<m>
secure_peak_mib=<m> flower_secaggplus=<s>s speedup_vs_flower_secaggplus=<x>``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench.harness import MIB, markdown_table
from bench.transport import floor, flower, flower_secagg, ours, secure, seed_design
from bench.transport.rounds import DesignResult, RoundPlan

DESIGNS = ("ours", "ours-f16", "ours-secagg", "seed", "floor", "flower", "flower-secagg")


BASELINES = {"seed": "seed design (KFP sample)", "flower": "Flower 1.42 gRPC",
             "flower-secagg": "Flower 1.42 SecAgg+"}


def measure_point(plan: RoundPlan, designs: Sequence[str], args: argparse.Namespace
                  ) -> dict[str, DesignResult]:
    baseline = RoundPlan(plan.num_clients, plan.params, args.baseline_rounds, plan.warmup)
    results: dict[str, DesignResult] = {}
    for design in designs:
        print(f"# N={plan.num_clients} P={plan.params} {design} ...", file=sys.stderr,
              flush=True)
        if (design in ("seed", "flower")
                and plan.num_clients not in args.baseline_clients):
            results[design] = DesignResult(BASELINES[design], skipped=(
                f"N={plan.num_clients} not in --baseline-clients (time budget)"))
        elif design == "ours":
            results[design] = ours.measure(plan)
        elif design == "ours-f16":
            results[design] = ours.measure(plan, update_dtype="float16")
        elif design == "ours-secagg" and plan.params > args.secagg_max_params:
            results[design] = DesignResult("ours, secure aggregation (SecAgg+)", skipped=(
                f"P > {args.secagg_max_params}: each client expands N masks of 4P bytes "
                "(time budget on 2 cores)"))
        elif design == "ours-secagg":
            results[design] = secure.measure(plan)
        elif design == "floor":
            results[design] = floor.measure(plan)
        elif design == "flower":
            results[design] = flower.measure(baseline)
        elif design == "flower-secagg":
            results[design] = _flower_secagg(plan, baseline, args)
        elif plan.params > args.seed_max_params:
            results[design] = DesignResult(
                BASELINES["seed"], skipped=f"P > {args.seed_max_params}: needs ~13.6 s and "
                "1.6 GiB per round already at 5 x 1M, growing with N x P")
        else:
            results[design] = seed_design.measure(baseline)
    return results


def _flower_secagg(plan: RoundPlan, baseline: RoundPlan, args: argparse.Namespace
                   ) -> DesignResult:
    if plan.params > args.flower_secagg_max_params:
        return DesignResult(BASELINES["flower-secagg"],
                            skipped=f"P > {args.flower_secagg_max_params} (time budget)")
    missing = flower_secagg.available()
    if missing:
        return DesignResult(BASELINES["flower-secagg"], skipped=missing)
    return flower_secagg.measure(baseline)


def table_rows(plan: RoundPlan, results: dict[str, DesignResult]) -> list[tuple]:
    rows = []
    for r in results.values():
        if r.skipped:
            rows.append((plan.num_clients, plan.params, r.design, "skipped", "", "", "", "",
                         r.skipped))
            continue
        rows.append((plan.num_clients, plan.params, r.design, f"{r.median:.3f}",
                     f"{min(r.round_times):.3f}", f"{max(r.round_times):.3f}",
                     len(r.round_times), f"{r.wire_bytes_per_round / MIB:.0f}",
                     f"{r.server_peak_mib:.0f}", ""))
    return rows


def summary_line(plan: RoundPlan, results: dict[str, DesignResult]) -> str:
    def seconds(key: str) -> str:
        r = results.get(key)
        return "skipped" if r is None or r.skipped else f"{r.median:.3f}s"

    def ratio(num: str, den: str) -> str:
        a, b = results.get(num), results.get(den)
        if a is None or b is None or a.skipped or b.skipped:
            return "skipped"
        return f"{a.median / b.median:.2f}"

    line = (f"transport: N={plan.num_clients} P={plan.params} ours={seconds('ours')} "
            f"seed_design={seconds('seed')} floor={seconds('floor')} "
            f"speedup_vs_seed={ratio('seed', 'ours')} ratio_to_floor={ratio('ours', 'floor')} "
            f"flower={seconds('flower')} speedup_vs_flower={ratio('flower', 'ours')}")
    if "ours-secagg" not in results:
        return line
    return line + "\n" + secagg_line(plan, results, seconds, ratio)


def secagg_line(plan: RoundPlan, results: dict[str, DesignResult], seconds, ratio) -> str:
    """Secure against plain aggregation at one point, measured side by side in this run."""
    def peak(key: str) -> str:
        r = results.get(key)
        return "skipped" if r is None or r.skipped else f"{r.server_peak_mib:.0f}"

    return (f"transport_secagg: N={plan.num_clients} P={plan.params} plain={seconds('ours')} "
            f"secure={seconds('ours-secagg')} overhead={ratio('ours-secagg', 'ours')} "
            f"plain_peak_mib={peak('ours')} secure_peak_mib={peak('ours-secagg')} "
            f"flower_secaggplus={seconds('flower-secagg')} "
            f"speedup_vs_flower_secaggplus={ratio('flower-secagg', 'ours-secagg')}")


def _int_list(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=_int_list, default=[2, 5],
                        help="comma-separated client counts (default 2,5,10)")
    parser.add_argument("--params", type=_int_list, default=[1_000_000, 10_000_000, 25_000_000],
                        help="comma-separated parameter counts (default 1e6,1e7,2.5e7)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after warm-up")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--baseline-rounds", type=int, default=3,
                        help="timed rounds for the slow baselines (seed design, Flower)")
    parser.add_argument("--designs", default=",".join(DESIGNS),
                        help=f"comma-separated subset of {','.join(DESIGNS)}")
    parser.add_argument("--baseline-clients", type=_int_list, default=[2, 5],
                        help="client counts at which the slow baselines run (default 2,5)")
    parser.add_argument("--secagg-max-params", type=int, default=10_000_000,
                        help="skip secure aggregation above this many parameters (time)")
    parser.add_argument("--flower-secagg-max-params", type=int, default=1_000_000,
                        help="skip Flower's SecAgg+ above this many parameters (time)")
    parser.add_argument("--seed-max-params", type=int, default=1_000_000,
                        help="skip the seed design above this many parameters (memory/time)")
    args = parser.parse_args(argv)
    designs = [d for d in args.designs.split(",") if d]
    unknown = sorted(set(designs) - set(DESIGNS))
    if unknown:
        parser.error(f"unknown designs {unknown}; accepted: {', '.join(DESIGNS)}")
    if args.rounds < 1 or args.warmup < 0 or args.baseline_rounds < 1:
        parser.error("--rounds and --baseline-rounds must be >= 1, --warmup >= 0")
    rows, lines = [], []
    for params in args.params:
        for num_clients in args.clients:
            plan = RoundPlan(num_clients, params, args.rounds, args.warmup)
            results = measure_point(plan, designs, args)
            rows += table_rows(plan, results)
            lines.append(summary_line(plan, results))
    print(markdown_table(["clients", "params", "design", "median s", "min s", "max s",
                          "rounds", "MiB on wire/round", "server peak MiB", "note"], rows))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

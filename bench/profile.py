"""``python -m bench.profile``: where the aggregator's time goes in bench.transport rounds.

Runs the ``ours`` design of bench.transport with the aggregator under py-spy (sampling, so
it barely slows it), then sums the samples by what the code was doing. The raw samples are
kept (``--out``) for a flame graph: ``py-spy`` can render them, or any folded-stack viewer.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.harness import REPO_ROOT, markdown_table
from bench.transport import ours
from bench.transport.rounds import RoundPlan

# First match from the innermost frame outwards names the activity of a sample.
ACTIVITIES = (
    ("socket receive (waitress loop)", ("dispatcher.recv",)),
    ("spool bodies to temp files (waitress)", ("FileBasedBuffer", "OverflowableBuffer")),
    ("socket send (waitress loop)", ("dispatcher.send", "ReadOnlyFileBasedBuffer")),
    ("update checks: CRC-32, NaN/Inf", ("content_digest", "all_finite", "check_finite")),
    ("fold into float64 sums", ("add_chunks", "add_scaled")),
    ("read spooled update", ("read_exactly", "read_chunks")),
    ("average into the next model", ("_aggregate", "average_into", "allocate")),
    ("HTTP parsing, Flask, waitress tasks", ("waitress", "flask", "werkzeug")),
)


def activity(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, needles in ACTIVITIES:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def summarize(raw: Path) -> list[tuple[str, float]]:
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack and samples.isdigit():
            counts[activity(stack)] += int(samples)
    total = sum(counts.values()) or 1
    return [(name, 100 * n / total) for name, n in counts.most_common()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--params", type=int, default=25_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "profile")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        parser.error("py-spy is not installed: pip install py-spy (make profile does)")
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "aggregator.folded"
    launcher = [spy, "record", "--rate", "250", "--format", "raw", "--nonblocking",
                "--output", str(raw), "--"]
    result = ours.measure(RoundPlan(args.clients, args.params, args.rounds), launcher=launcher)
    print(markdown_table(["aggregator activity", "share of samples %"],
                         [(name, f"{share:.1f}") for name, share in summarize(raw)]))
    print(f"profile: N={args.clients} P={args.params} round_median={result.median:.3f}s "
          f"samples={raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

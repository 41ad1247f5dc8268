"""``python -m bench.memory``: aggregator peak RSS against the number of clients.

For each strategy and N, a real aggregator process serves N concurrent clients posting
P-parameter float32 updates over loopback HTTP for a few rounds; its peak resident memory
(VmHWM) is read before it exits. FedAvg folds updates into a running sum, so its peak must
stay flat in N (target: at most 3 x model bytes + 150 MiB); median and trimmed mean keep every
update of a round, so theirs grows with N (reported, not a target).
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

from bench.harness import MIB, AggregatorProcess, markdown_table, model_weights
from client_component.transport import AggregatorClient
from contract import wire

TOKEN = "bench"
ENCODE_SLOTS = 4  # bounds the bench's own memory: updates are built a few at a time


def measure(strategy: str, num_clients: int, params: int, rounds: int) -> dict:
    server = AggregatorProcess("--num-clients", str(num_clients), "--rounds", str(rounds),
                               "--strategy", strategy, "--token", TOKEN,
                               "--shutdown-grace", "30")
    baseline = server.rss_mib("VmRSS")
    base = model_weights(params)
    clients = [AggregatorClient(server.url, TOKEN) for _ in range(num_clients)]
    slots = threading.BoundedSemaphore(ENCODE_SLOTS)

    def offer(cid: int) -> None:
        with slots:
            clients[cid].post_init(base, cid)

    def post(cid: int, round_: int) -> None:
        with slots:
            update = [w + 0.001 * (cid + 1) for w in base]
            clients[cid].post_update(update, wire.UpdateMeta(cid, round_, 10 + cid))

    # Every real client offers its initial model at start (the first is adopted).
    _all_at_once(offer, num_clients)
    for round_ in range(1, rounds + 1):
        _all_at_once(lambda cid, r=round_: post(cid, r), num_clients)
        clients[0].fetch_model(round_)
    peak = server.rss_mib("VmHWM")
    for cid, client in enumerate(clients):
        client.post_done(cid, {}, 1)
    exit_code = server.stop()
    if exit_code != 0:
        raise RuntimeError(f"aggregator exited {exit_code}:\n{''.join(server.lines[-20:])}")
    return {"strategy": strategy, "clients": num_clients, "peak_mib": peak,
            "baseline_mib": baseline, "model_mib": params * 4 / MIB}


def _all_at_once(send, num_clients: int) -> None:
    threads = [threading.Thread(target=send, args=(cid,)) for cid in range(num_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--clients-list", default="2,10,50")
    parser.add_argument("--params", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--strategies", default="fedavg,median")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.clients_list.split(",")]
    results = [measure(s, n, args.params, args.rounds)
               for s in args.strategies.split(",") for n in counts]
    model_mib = args.params * 4 / MIB
    bound = 3 * model_mib + 150
    print(markdown_table(
        ["strategy", "clients", "params", "model MiB", "peak RSS MiB", "start RSS MiB",
         "FedAvg bound MiB"],
        [(r["strategy"], r["clients"], args.params, f"{r['model_mib']:.1f}",
          f"{r['peak_mib']:.1f}", f"{r['baseline_mib']:.1f}", f"{bound:.1f}") for r in results]))
    fedavg = [r for r in results if r["strategy"] == "fedavg"]
    line = f"memory: P={args.params} model_mib={model_mib:.1f}"
    if fedavg:
        peaks = [r["peak_mib"] for r in fedavg]
        line += (" fedavg_peak_mib=" + ",".join(f"{r['clients']}:{r['peak_mib']:.0f}"
                                                for r in fedavg)
                 + f" fedavg_flat_ratio={max(peaks) / min(peaks):.2f}"
                 + f" bound_mib={bound:.0f} within_bound={'yes' if max(peaks) <= bound else 'no'}")
    for strategy in sorted({r["strategy"] for r in results} - {"fedavg"}):
        rows = [r for r in results if r["strategy"] == strategy]
        line += (f" {strategy}_growth={rows[-1]['peak_mib'] / rows[0]['peak_mib']:.2f}"
                 f"(x{rows[-1]['clients'] / rows[0]['clients']:.0f} clients)")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

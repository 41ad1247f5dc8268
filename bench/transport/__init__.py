"""``python -m bench.transport``: per-round transport overhead without training, for our
aggregator and, side by side in the same run, the KFP-sample design, the raw-socket floor
and Flower's gRPC transport."""

"""Benchmarks (`make bench`): each prints a markdown table and a final summary line of
ratios measured side by side in the same run."""

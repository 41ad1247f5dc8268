"""Shared fixtures: a live aggregator, no aggregator process outliving its test, and the
reliability table's hooks. Helpers live in ``tests/support``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.live_aggregator import Aggregator, start_aggregator


@pytest.fixture
def aggregator() -> Iterator[Aggregator]:
    agg = start_aggregator(num_clients=2, rounds=2, max_update_bytes=64 * 1024)
    yield agg
    agg.server.stop()


@pytest.fixture(autouse=True)
def _no_aggregator_outlives_its_test():
    """Aggregator processes a test started (tests/support/aggregator_process.py) die with it."""
    yield
    from tests.support.aggregator_process import kill_leftovers

    kill_leftovers()


# The reliability table (tests/support/reliability_report.py): a row per reliability test.
from tests.support.reliability_report import observe, record_outcome, write_table  # noqa: E402,F401


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    record_outcome(item, report)
    return report


def pytest_terminal_summary(terminalreporter):
    write_table(terminalreporter)

"""The reliability table: every test marked ``reliability(scenario, expected)`` becomes one
row (scenario, expected, observed, pass) printed at the end of the session, so that
``make test-reliability`` shows at a glance what the pipeline survives and how.

A test reports what it measured through the ``observe`` fixture; a failing test's row shows
the first line of its failure instead of a pass."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MARKER = "reliability"


@dataclass
class Row:
    scenario: str
    expected: str
    observed: list[str] = field(default_factory=list)
    outcome: str = "not run"


ROWS: dict[str, Row] = {}


def row_for(item: pytest.Item) -> Row | None:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    if item.nodeid not in ROWS:
        scenario = marker.kwargs["scenario"]
        if getattr(item, "callspec", None) is not None:
            scenario = f"{scenario} [{item.callspec.id}]"
        ROWS[item.nodeid] = Row(scenario, marker.kwargs["expected"])
    return ROWS[item.nodeid]


@pytest.fixture
def observe(request: pytest.FixtureRequest):
    """``observe("text")`` adds what the test measured to its row of the table."""
    row = row_for(request.node)
    if row is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses observe but is not marked "
                                f"{MARKER}(scenario=..., expected=...)")
    return row.observed.append


def record_outcome(item: pytest.Item, report: pytest.TestReport) -> None:
    row = row_for(item)
    if row is None:
        return
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        first_line = crash.message.splitlines()[0] if crash else str(report.longrepr)[:160]
        row.outcome = "FAIL"
        row.observed.append(f"{report.when} failed: {first_line[:160]}")
    elif report.skipped:
        row.outcome = "skipped"
    elif report.when == "call" and row.outcome != "FAIL":
        row.outcome = "pass"


def markdown_table() -> str:
    lines = ["| scenario | expected | observed | pass |", "|---|---|---|---|"]
    for row in ROWS.values():
        observed = "; ".join(row.observed) or "-"
        cells = (row.scenario, row.expected, observed, row.outcome)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def write_table(terminalreporter) -> None:
    if not ROWS:
        return
    table = markdown_table()
    terminalreporter.section("reliability")
    terminalreporter.write_line(table)
    target = os.environ.get("FL_RELIABILITY_TABLE")
    if target:
        Path(target).write_text(table + "\n")

"""The HTML report: self-contained (no script, no external asset), and in a real browser
(headless Chromium) it shows the curves, the participation grid and the ROC curve."""

import dataclasses
import re
from pathlib import Path

import numpy as np
from PIL import Image

from client_component.evaluation import count_outcomes
from server_component.checkpoint import RoundRecord
from server_component.evaluation_counts import EvaluationCounts
from server_component.report import ReportData, render_report
from tests.support.browser import rendered_dom, screenshot

PLOT_BLUE = (31, 119, 180)  # matplotlib's first colour: the global curves and the ROC


def sample_report() -> ReportData:
    history = []
    for r in range(1, 5):
        reporting = [0, 1, 2] if r != 2 else [0, 2]  # client 1 was late in round 2
        client_metrics = {str(c): {"val_loss": 1 / (r + c), "val_accuracy": 0.6 + 0.05 * r,
                                   "val_auc": 0.7 + 0.04 * r} for c in reporting}
        history.append(RoundRecord(
            round=r, client_ids=reporting, num_examples=100 * len(reporting),
            metrics={"val_loss": 1 / r, "val_accuracy": 0.6 + 0.05 * r, "val_auc": 0.7 + 0.04 * r},
            duration_s=1.0, missing=[c for c in range(3) if c not in reporting],
            client_metrics=client_metrics, client_examples={c: 100 for c in client_metrics}))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(0.4 * y + rng.uniform(0, 0.6, 300), 0, 1)
    counts = EvaluationCounts.parse(count_outcomes(y, np.column_stack([1 - p1, p1]), 2), 300)
    return ReportData(
        parameters={"num_clients": 3, "rounds": 4, "strategy": "fedavg",
                    "dataset": "<script>alert(1)</script>"}, num_clients=3,
        history=history, final_metrics={"test_accuracy": 0.81, "test_auc": 0.9},
        client_final_metrics={0: {"test_accuracy": 0.8}, 1: {"<b>x</b>": 0.82}},
        partitions={0: {"examples": 100, "labels": ["<i>", 60]}}, counts=counts,
        totals={"rounds_completed": 4, "bytes_exchanged": 1234})


def test_the_report_is_self_contained_and_escapes_what_it_shows():
    page = render_report(sample_report())
    assert page.count("<svg") == 4  # global curves, per-client curves, participation, ROC
    assert "<script" not in page.replace("&lt;script&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page  # a metric name
    assert "<i>" not in page and "&lt;i&gt;" in page  # a partition label
    # Nothing to fetch: the KFP UI's sandboxed frame would not load it (xmlns are names).
    for fetched in ("<link", " src=", 'href="http', "url(http", "@import"):
        assert fetched not in page


def check_in_browser(page: Path, tmp_path: Path, min_svgs: int = 4) -> str:
    """Open ``page`` in headless Chromium; assert the plots are there and visible."""
    dom = rendered_dom(page)
    assert dom.count("<svg") >= min_svgs, dom[:2000]
    assert dom.count("<path") > 20  # curves, markers, axes
    for heading in ("Per round", "Confusion matrix", "Partitions", "Run parameters"):
        assert heading in dom
    image = Image.open(screenshot(page, tmp_path / "report.png")).convert("RGB")
    assert image.size == (1200, 2400)
    pixels = np.asarray(image).reshape(-1, 3)
    blue = np.all(np.abs(pixels.astype(int) - PLOT_BLUE) < 12, axis=1).sum()
    assert blue > 500, "no curve drawn in the screenshot"
    assert len(np.unique(pixels, axis=0)) > 50, "the screenshot is blank"
    return dom


def test_the_report_shows_its_plots_in_headless_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_report(sample_report()))
    dom = check_in_browser(page, tmp_path)
    assert "participation" in dom and "ROC" in dom


def test_a_report_that_cannot_be_drawn_is_a_page_saying_so(caplog):
    broken = sample_report()
    broken.history = [None]  # not a RoundRecord: plotting fails
    page = render_report(broken)
    assert "The report could not be drawn" in page and "<svg" not in page
    assert "event=report_failed" in caplog.text


def test_a_long_run_keeps_the_participation_grid_within_a_page():
    data = sample_report()
    data.history = [dataclasses.replace(data.history[0], round=r) for r in range(1, 1001)]
    page = render_report(data)
    widths = [float(w) for w in re.findall(r'<svg[^>]* width="([\d.]+)pt"', page)]
    assert max(widths) < 1100  # 14 inches at 72 pt, plus margins

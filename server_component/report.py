"""The run's HTML report: one self-contained page (inline SVG plots, no script, no external
asset: the KFP UI shows HTML artifacts in a sandboxed frame) with the global and per-client
curves, who took part in each round, the partitions, the confusion matrix and ROC curve,
and the run's parameters.

Plots use matplotlib's object API (``Figure``, no pyplot): no global state, safe in a server
thread, no display needed."""

from __future__ import annotations

import html
import io
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from server_component.checkpoint import RoundRecord
from server_component.evaluation_counts import Counts, MultiLabelCounts

log = logging.getLogger("server_component")
CURVES = ("loss", "accuracy", "auc")
_RDF_METADATA = re.compile(r"<metadata>.*?</metadata>", re.DOTALL)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 70em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: .2em .6em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; }
"""


@dataclass
class ReportData:
    """Everything the HTML report shows, gathered by ``write_outputs``: the settings, the
    round history, the final evaluation, the clients' partitions, totals and any failure."""

    parameters: Mapping[str, object]
    num_clients: int
    history: Sequence[RoundRecord]
    final_metrics: Mapping[str, float]
    client_final_metrics: Mapping[int, Mapping[str, float]]
    partitions: Mapping[int, Mapping]
    counts: Counts | None = None
    totals: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


def render_report(data: ReportData) -> str:
    """The whole page as one string; if plotting fails, a page that says so (the report must
    never cost a run its other outputs)."""
    try:
        return _page(data)
    except Exception as exc:  # matplotlib raises many types; none may fail the run
        log.error("event=report_failed error=%r", exc)
        return ("<!DOCTYPE html><html><body><h1>Federated run report</h1><p>The report could "
                f"not be drawn: {html.escape(repr(exc))}. The metrics tables are in the "
                "run's Dataset and Metrics artifacts.</p></body></html>\n")


def _page(data: ReportData) -> str:
    sections = [
        _section("Final global model (clients' test splits)",
                 _table(["metric", "value"], [[k, _num(v)] for k, v in
                                              sorted({**data.final_metrics,
                                                      **data.totals}.items())])),
        _section("Per round", _plots(_global_curves(data.history), _client_curves(data.history),
                                     _participation(data.history, data.num_clients))),
        _privacy_section(data.history),
        _section("Evaluation", _evaluation(data.counts, data.client_final_metrics)),
        _section("Partitions", _partitions(data.partitions)),
        _section("Run parameters", _table(["parameter", "value"],
                                          [[k, str(v)] for k, v in data.parameters.items()])),
    ]
    status = (f'<p style="color:#b00"><b>Run failed:</b> {html.escape(data.error)}</p>'
              if data.error else "")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Federated run report"
            f"</title><style>{STYLE}</style></head><body><h1>Federated run report</h1>"
            f"{status}{''.join(sections)}</body></html>\n")


def _global_curves(history: Sequence[RoundRecord]) -> str:
    rounds = [r.round for r in history]
    fig, axes = _figure(len(CURVES), "global model, validation (weighted by examples)")
    for ax, name in zip(axes, CURVES, strict=True):
        values = [r.metrics.get(f"val_{name}") for r in history]
        ax.plot(rounds, values, marker="o", color="#1f77b4")
        _label(ax, name)
    return _svg(fig)


def _privacy_section(history: Sequence[RoundRecord]) -> str:
    """ε spent after each round beside the validation AUC (only with differential privacy)."""
    private = [r for r in history if r.privacy]
    if not private:
        return ""
    last = private[-1].privacy
    fig, (spent, auc) = _figure(2, f"differential privacy: dp={last['mode']}, "
                                   f"δ={last['delta']:.3g}")
    rounds = [r.round for r in private]
    spent.plot(rounds, [r.privacy["epsilon"] for r in private], marker="o", color="#d62728")
    _label(spent, "ε spent (RDP accountant)")
    auc.plot(rounds, [r.metrics.get("val_auc") for r in private], marker="o", color="#1f77b4")
    _label(auc, "validation auc")
    stopped = next((r.privacy["stopped"] for r in private if r.privacy.get("stopped")), "")
    note = f"<p><b>Training ended early:</b> {html.escape(stopped)}</p>" if stopped else ""
    return _section("Privacy", note + _plots(_svg(fig)) + _table(
        ["ε", "δ", "noise multiplier", "clip norm"],
        [[_num(last["epsilon"]), _num(last["delta"]), _num(last["noise_multiplier"]),
          _num(last["clip_norm"])]]))


def _client_curves(history: Sequence[RoundRecord]) -> str:
    clients = sorted({int(c) for r in history for c in r.client_metrics}, key=int)
    fig, axes = _figure(len(CURVES), "per client, validation")
    for ax, name in zip(axes, CURVES, strict=True):
        for cid in clients:
            points = [(r.round, r.client_metrics[str(cid)].get(f"val_{name}")) for r in history
                      if str(cid) in r.client_metrics]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=f"client {cid}")
        _label(ax, name)
    if 0 < len(clients) <= 12:
        axes[-1].legend(fontsize=7)
    return _svg(fig)


def participation_grid(history: Sequence[RoundRecord], num_clients: int) -> list[list[int]]:
    """Clients x rounds: 2 reported, 1 sampled but missing (late or dropped), 0 not sampled
    (``fraction_fit`` < 1; a record without a sample asked every client)."""
    def cell(client: int, record: RoundRecord) -> int:
        if client in record.client_ids:
            return 2
        return 1 if not record.selected or client in record.selected else 0
    return [[cell(c, r) for r in history] for c in range(num_clients)]


def _participation(history: Sequence[RoundRecord], num_clients: int) -> str:
    """A rounds x clients grid: reported (green), missing (red), not sampled (grey)."""
    grid = participation_grid(history, num_clients)
    sampled = any(r.selected and len(r.selected) < num_clients for r in history)
    # Grows with the run, within a page: cells shrink past ~35 rounds or ~35 clients.
    fig = Figure(figsize=(min(14.0, max(3.0, 0.35 * len(history) + 1.5)),
                          min(10.0, max(2.0, 0.25 * num_clients + 1.2))))
    ax = fig.subplots()
    if history:
        colours = matplotlib.colors.ListedColormap(["#d9d9d9", "#d62728", "#2ca02c"])
        ax.imshow(grid, cmap=colours, vmin=0, vmax=2, aspect="auto", interpolation="nearest",
                  extent=(0.5, len(history) + 0.5, num_clients - 0.5, -0.5))
    ax.set_xlabel("round")
    ax.set_ylabel("client")
    ax.set_title("participation (green: reported, red: late or dropped"
                 + (", grey: not sampled)" if sampled else ")"), fontsize=9)
    fig.tight_layout()
    return _svg(fig)


def _evaluation(counts: Counts | None, per_client: Mapping[int, Mapping]) -> str:
    parts = []
    if isinstance(counts, MultiLabelCounts):
        parts.append(_per_label(counts))
    elif counts is not None:
        categories, matrix = counts.confusion_matrix()
        rows = [[f"true {c}", *map(str, row)] for c, row in zip(categories, matrix,
                                                                 strict=True)]
        parts.append("<h3>Confusion matrix (summed over clients)</h3>" +
                     _table(["", *(f"predicted {c}" for c in categories)], rows))
        roc = counts.roc_curve()
        if roc is not None:
            fpr, tpr, _ = roc
            fig = Figure(figsize=(3.6, 3.4))
            ax = fig.subplots()
            ax.plot(fpr, tpr, color="#1f77b4")
            ax.plot([0, 1], [0, 1], linestyle=":", color="#999")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            ax.set_title("ROC (counts at 101 thresholds)", fontsize=9)
            fig.tight_layout()
            parts.append(_plots(_svg(fig)))
    if per_client:
        names = sorted({k for m in per_client.values() for k in m})
        parts.append("<h3>Per client</h3>" + _table(
            ["client", *names],
            [[str(c), *(_num(m.get(k)) for k in names)] for c, m in per_client.items()]))
    return "".join(parts) or "<p>No client reported an evaluation.</p>"


def _per_label(counts: MultiLabelCounts) -> str:
    """Multi-label findings: a table per observation from the summed counts (a positive
    call is a score above 0.5) and every observation's ROC curve in one plot."""
    rows = []
    fig = Figure(figsize=(4.6, 3.8))
    ax = fig.subplots()
    for name, label in zip(counts.labels, counts.per_label, strict=True):
        (tn, fp), (fn, tp) = label.confusion.tolist()
        auc = label.auc()
        rows.append([name, str(tp + fn), str(tn + fp), _num(auc),
                     _num(tp / (tp + fn) if tp + fn else None),
                     _num(tn / (tn + fp) if tn + fp else None)])
        roc = label.roc_curve()
        if roc is not None and auc is not None:
            ax.plot(roc[0], roc[1], label=f"{name} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="#999")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC per finding (counts at 101 thresholds)", fontsize=9)
    if len(counts.labels) <= 14:
        ax.legend(fontsize=6)
    fig.tight_layout()
    return ("<h3>Per finding (summed over clients)</h3>" + _table(
        ["finding", "positives", "negatives", "AUC", "sensitivity", "specificity"], rows)
        + _plots(_svg(fig)))


def _partitions(partitions: Mapping[int, Mapping]) -> str:
    if not partitions:
        return "<p>No partition statistics were reported.</p>"
    rows = [[str(c), str(p.get("examples", "")), str(p.get("labels", ""))]
            for c, p in sorted(partitions.items())]
    return _table(["client", "examples", "labels (count per class)"], rows)


# ---- small HTML and plotting helpers ------------------------------------------------------

def _figure(columns: int, title: str):
    fig = Figure(figsize=(3.3 * columns, 2.8), layout="constrained")
    axes = fig.subplots(1, columns)
    fig.suptitle(title, fontsize=10)
    return fig, list(axes)


def _label(ax, name: str) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_title(name, fontsize=9)
    ax.grid(alpha=0.3)


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    # Text stays text (searchable, small) rather than outlines.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    svg = buffer.getvalue()
    svg = _RDF_METADATA.sub("", svg[svg.index("<svg"):])  # creator/date: noise in a report
    return f"<figure>{svg}</figure>"


def _plots(*svgs: str) -> str:
    return f"<div class='plots'>{''.join(svgs)}</div>"


def _section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>{body}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th class='l'>{html.escape(h)}</th>" if i == 0 else
                   f"<th>{html.escape(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(
        f"<td class='l'>{html.escape(str(v))}</td>" if i == 0 else
        f"<td>{html.escape(str(v))}</td>" for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _num(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)

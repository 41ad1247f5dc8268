"""make run-local's live status line, fed the aggregator's real log lines."""

import io

from pipelines.live_status import LiveStatus

LINES = [
    "12:00:01 aggregator event=init client=0 tensors=6 parameters=1234 strategy=fedavg",
    "12:00:02 aggregator event=update round=1 client=2 examples=120 reported=1/3",
    "12:00:02 aggregator event=update round=1 client=0 examples=121 reported=2/3",
    "12:00:03 aggregator event=update round=1 client=1 examples=122 reported=3/3",
    "12:00:03 aggregator event=round_closed round=1/4 clients=3 examples=363 "
    "val_accuracy=0.9000 duration_s=1.20 elapsed_s=2.0 eta_s=6.0",
    "12:00:04 aggregator event=update round=2 client=1 examples=122 reported=1/3",
]


def test_on_a_terminal_the_line_tracks_rounds_and_reports():
    out = io.StringIO()
    status = LiveStatus(out, interactive=True)
    for line in LINES[:3]:
        status.feed(line)
    assert status.text().startswith("[status] rounds done 0, round 1: 2/3 clients reported")
    for line in LINES[3:]:
        status.feed(line)
    assert status.text().startswith("[status] rounds done 1/4, round 2: 1/3 clients reported")
    status.print_line("[aggregator] round=1/4 clients=3")
    status.feed("x aggregator event=round_closed round=4/4 clients=3 examples=363 duration_s=1")
    assert status.text().startswith("[status] rounds done 4/4, ")  # no "round 5" after the end
    status.close()
    shown = out.getvalue()
    assert "\r\x1b[K[aggregator] round=1/4 clients=3\n" in shown  # above the status line
    assert shown.endswith("\r\x1b[K")  # cleared before the summary


def test_in_a_pipe_only_plain_lines_are_written():
    out = io.StringIO()
    status = LiveStatus(out, interactive=False)
    for line in LINES:
        status.feed(line)
    status.print_line("[aggregator] round=1/4 clients=3")
    status.close()
    assert out.getvalue() == "[aggregator] round=1/4 clients=3\n"

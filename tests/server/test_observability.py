"""/metrics (Prometheus text) and / (status page): informative, and never the token."""

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.live_aggregator import TOKEN


def scrape(agg) -> dict:
    text = requests.get(agg.url + "/metrics", timeout=5).text
    assert TOKEN not in text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_rounds_updates_rejections_and_bytes(aggregator):
    aggregator.init()
    aggregator.update(0, 1)
    aggregator.update(0, 1)  # duplicate
    aggregator.update(0, 5)  # 409
    aggregator.post("/v1/update", b"junk")  # 400
    aggregator.update(1, 1)
    samples = scrape(aggregator)
    assert samples[("fl_rounds_closed_total", ())] == 1
    assert samples[("fl_updates_accepted_total", ())] == 2
    assert samples[("fl_updates_duplicate_total", ())] == 1
    assert samples[("fl_updates_rejected_total", (("reason", "round_conflict"),))] == 1
    assert samples[("fl_updates_rejected_total", (("reason", "malformed"),))] == 1
    assert samples[("fl_bytes_received_total", ())] > 0
    assert samples[("fl_round", ())] == 2
    assert samples[("fl_round_duration_seconds_count", ())] == 1


def test_status_page_is_html_without_secrets(aggregator):
    aggregator.init()
    aggregator.update(0, 1, metrics={"val_auc": 0.5})
    aggregator.update(1, 1, metrics={"val_auc": 0.7})
    page = requests.get(aggregator.url + "/", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html")
    assert "round</td><td>2 / 2" in page.text and "val_auc" in page.text
    assert TOKEN not in page.text

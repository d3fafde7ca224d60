"""Samples kept between processes: the next `health` within a `rate()` range scrapes once."""

from __future__ import annotations

import json
import time
from pathlib import Path

from crystal_runbook import service
from crystal_runbook.triggers import promql, scrape, store
from tests.unit.triggers.metrics_server import MetricsServer
from tests.unit.triggers.test_watch import make_workspace

ERROR_RATE = """
apiVersion: crystal-runbook/v1
kind: Triggers
services:
  maia:
    rules:
      - name: error-rate
        query: 'sum(rate(http_request_errors_total[1m])) / sum(rate(http_requests_total[1m]))'
        op: ">"
        threshold: 0.05
        for: 2m
"""


def workspace(root: Path, url: str) -> service.Workspace:
    ws = make_workspace(root, url)
    (root / "inventory" / "triggers.yaml").write_text(ERROR_RATE.lstrip())
    return ws


def report_value(ws: service.Workspace) -> float | None:
    report = service.triggers.trigger_report(ws, "maia")
    assert report is not None
    return report.rule("error-rate").value


class TestKeptSamples:
    """`health` keeps the latest samples its rules read and uses them while they are recent."""

    def test_second_look_scrapes_once(self, tmp_path: Path, metrics: MetricsServer) -> None:
        """The first evaluation scrapes twice a gap apart; the next, a gap later, once."""
        ws = workspace(tmp_path, metrics.url)
        try:
            assert report_value(ws) is not None
            assert metrics.service.hits == 2
            time.sleep(scrape.MIN_GAP)
            started = time.monotonic()
            assert report_value(ws) is not None
            assert metrics.service.hits == 3
            assert time.monotonic() - started < scrape.MIN_GAP
        finally:
            ws.close()

    def test_a_look_at_once_after_another_scrapes_once(
        self, tmp_path: Path, metrics: MetricsServer
    ) -> None:
        """`health` again at once: its scrape is less than a gap after the last kept one, but
        the earlier kept scrape (a gap before that) makes the rate, with no wait."""
        ws = workspace(tmp_path, metrics.url)
        try:
            assert report_value(ws) is not None
            assert metrics.service.hits == 2
            started = time.monotonic()
            assert report_value(ws) is not None
            assert metrics.service.hits == 3
            assert time.monotonic() - started < scrape.MIN_GAP / 2
            started = time.monotonic()
            assert report_value(ws) is not None
            assert metrics.service.hits == 4
            assert time.monotonic() - started < scrape.MIN_GAP / 2
        finally:
            ws.close()

    def test_samples_older_than_the_range_are_not_used(
        self, tmp_path: Path, metrics: MetricsServer
    ) -> None:
        """A kept sample outside the rules' shortest range (1m here) cannot serve rate()."""
        ws = workspace(tmp_path, metrics.url)
        try:
            report_value(ws)
            path = store.samples_path(ws.state_dir, "maia", "sandbox")
            data = json.loads(path.read_text())
            for entry in data["targets"].values():
                entry["at"] -= 120
                entry["earlier"]["at"] -= 120
            path.write_text(json.dumps(data))
            report_value(ws)
            assert metrics.service.hits == 4
        finally:
            ws.close()

    def test_only_the_series_read_and_no_url_are_kept(
        self, tmp_path: Path, metrics: MetricsServer
    ) -> None:
        """The file holds the rules' series under a digest of the target, not its URL."""
        ws = workspace(tmp_path, metrics.url)
        try:
            report_value(ws)
        finally:
            ws.close()
        text = store.samples_path(ws.state_dir, "maia", "sandbox").read_text()
        assert metrics.url not in text
        assert str(metrics.port) not in json.loads(text)["targets"]
        names = {
            dict(tuple(pair) for pair in labels)["__name__"]
            for entry in json.loads(text)["targets"].values()
            for labels, _ in entry["samples"]
        }
        assert names == {"http_request_errors_total", "http_requests_total"}


class TestDumpAndLoad:
    """The ring's latest scrape goes out and comes back with its labels and time."""

    def test_round_trip(self) -> None:
        """Labels become lists in JSON and tuples again; future samples are refused."""
        ring = scrape.Ring()
        labels = (("__name__", "x_total"), ("job", "maia"))
        ring.add("http://a/metrics", scrape.Scrape(at=100.0, samples={labels: 5.0}))
        selector = promql.selectors(promql.parse("rate(x_total[1m])"))
        saved = json.loads(json.dumps(scrape.dump_latest(ring, ["http://a/metrics"], selector)))
        back = scrape.Ring()
        assert scrape.load_latest(back, ["http://a/metrics"], saved, now=110.0, max_age=59) == 1
        assert back.scrapes("http://a/metrics")[0].samples == {labels: 5.0}
        assert scrape.load_latest(scrape.Ring(), ["http://a/metrics"], saved, now=99.0, max_age=59) == 0

    def test_an_earlier_scrape_a_gap_before_the_latest_goes_too(self) -> None:
        """Of scrapes at 100, 100.6, 101.2 and 101.5 the latest goes out with the newest at
        least MIN_GAP older (100); an old file without `earlier` still loads."""
        ring = scrape.Ring()
        labels = (("__name__", "x_total"), ("job", "maia"))
        for at in (100.0, 100.6, 101.2, 101.5):
            ring.add("http://a/metrics", scrape.Scrape(at=at, samples={labels: at}))
        selector = promql.selectors(promql.parse("rate(x_total[1m])"))
        saved = json.loads(json.dumps(scrape.dump_latest(ring, ["http://a/metrics"], selector)))
        entry = next(iter(saved.values()))
        assert (entry["earlier"]["at"], entry["at"]) == (100.0, 101.5)
        back = scrape.Ring()
        assert scrape.load_latest(back, ["http://a/metrics"], saved, now=102.0, max_age=59) == 1
        assert [s.at for s in back.scrapes("http://a/metrics")] == [100.0, 101.5]
        del entry["earlier"]
        old = scrape.Ring()
        assert scrape.load_latest(old, ["http://a/metrics"], saved, now=102.0, max_age=59) == 1
        assert [s.at for s in old.scrapes("http://a/metrics")] == [101.5]

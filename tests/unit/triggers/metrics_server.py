"""A service whose /metrics a test controls: the scrape source's (and Prometheus') target.

``SimService`` integrates its request counters over time like a real service (so ``rate()``
means something), and a test flips it between a good and a bad release with ``set``. It is
served by a standard-library HTTP server on a free loopback port, stopped by the fixture.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CDF_GOOD = (0.9, 0.995, 1.0, 1.0, 1.0, 1.0)  # p99 about 0.24 s
CDF_BAD = (0.2, 0.4, 0.6, 0.8, 0.95, 1.0)  # p99 about 4.6 s


class SimService:
    """Counters integrated over time; gauges as set; good by default."""

    def __init__(self, rps: float = 100.0) -> None:
        self.lock = threading.Lock()
        self.rps = rps
        self.last = time.time()
        self.requests = 0.0
        self.errors = 0.0
        self.buckets = [0.0] * len(BUCKETS)
        self.error_ratio = 0.005
        self.slow = False
        self.coherence = 0.8
        self.memory = 200e6
        self.memory_growth = 0.0
        self.db_in_use = 20.0
        self.db_max = 100.0
        self.status = 200
        self.hits = 0
        self.hit_times: list[float] = []
        """time.time() of each scrape, in order."""
        self.scraped = threading.Condition(self.lock)
        """Notified after each scrape, for ``wait_for_hits``."""

    def _advance(self) -> None:
        now = time.time()
        dt, self.last = now - self.last, now
        n = self.rps * dt
        self.requests += n
        self.errors += n * self.error_ratio
        cdf = CDF_BAD if self.slow else CDF_GOOD
        self.buckets = [b + n * p for b, p in zip(self.buckets, cdf, strict=True)]
        self.memory += self.memory_growth * dt

    def set(self, **values: Any) -> None:
        with self.lock:
            self._advance()
            for key, value in values.items():
                if not hasattr(self, key):
                    raise AttributeError(key)
                setattr(self, key, value)

    def wait_for_hits(self, count: int, *, timeout: float) -> bool:
        """Block until ``count`` scrapes were served (True) or ``timeout`` seconds pass."""
        with self.scraped:
            return self.scraped.wait_for(lambda: self.hits >= count, timeout=timeout)

    def bad(self) -> None:
        """The burning release: the sandbox's `-bad` figures."""
        self.set(error_ratio=0.12, slow=True, coherence=0.3, memory_growth=4e6, db_in_use=98.0)

    def good(self) -> None:
        self.set(error_ratio=0.005, slow=False, coherence=0.8, memory_growth=0.0, db_in_use=20.0)

    def render(self) -> str:
        with self.lock:
            self._advance()
            self.hits += 1
            self.hit_times.append(time.time())
            self.scraped.notify_all()
            lines = [
                "# TYPE http_requests_total counter",
                f"http_requests_total {self.requests:.3f}",
                "# TYPE http_request_errors_total counter",
                f"http_request_errors_total {self.errors:.3f}",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for bound, count in zip(BUCKETS, self.buckets, strict=True):
                lines.append(f'http_request_duration_seconds_bucket{{le="{bound}"}} {count:.3f}')
            lines += [
                f'http_request_duration_seconds_bucket{{le="+Inf"}} {self.requests:.3f}',
                f"http_request_duration_seconds_count {self.requests:.3f}",
                "http_request_duration_seconds_sum 0",
                "# TYPE coherence_ratio gauge",
                f"coherence_ratio {self.coherence}",
                "# TYPE process_resident_memory_bytes gauge",
                f"process_resident_memory_bytes {self.memory:.0f}",
                "# TYPE db_connections_in_use gauge",
                f"db_connections_in_use {self.db_in_use}",
                "# TYPE db_connections_max gauge",
                f"db_connections_max {self.db_max}",
            ]
            return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves ``service.render()`` at ``/metrics`` (or ``status`` without a body)."""

    def __init__(self, service: SimService | None = None) -> None:
        self.service = service or SimService()
        sim = self.service

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status = sim.status
                body = sim.render().encode() if status == 200 else b"down\n"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

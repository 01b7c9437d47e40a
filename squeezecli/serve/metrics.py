"""What `GET /metrics` reports, in Prometheus' text format (version 0.0.4): requests by endpoint and
status, texts served, batch sizes, request latency, the texts waiting, the models loaded.

Written by hand rather than with prometheus_client: five series, and no dependency for them.
"""

from __future__ import annotations

import bisect
import collections
import threading
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last: above every bucket
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip((*map(_number, self.buckets), "+Inf"), self.counts):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        tail = f"{{{labels}}}" if labels else ""
        return [*out, f"{name}_sum{tail} {_number(self.total)}", f"{name}_count{tail} {self.count}"]


class Metrics:
    """Counters and histograms updated from the event loop and the model workers (hence the lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.texts = 0
        self.latency: dict[str, Histogram] = {}
        self.batches = Histogram(BATCH_BUCKETS)
        self.batch_seconds = Histogram(LATENCY_BUCKETS)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, texts: int, seconds: float) -> None:
        with self._lock:
            self.texts += texts
            self.batches.observe(texts)
            self.batch_seconds.observe(seconds)

    def render(self, queue_depth: int, models: Callable[[], list[str]]) -> str:
        with self._lock:
            lines = ["# HELP squeeze_requests_total HTTP requests answered, by endpoint and status.",
                     "# TYPE squeeze_requests_total counter"]
            lines += [f'squeeze_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}'
                      for (endpoint, status), count in sorted(self.requests.items())]
            lines += ["# HELP squeeze_texts_total Texts run through a model.", "# TYPE squeeze_texts_total counter",
                      f"squeeze_texts_total {self.texts}",
                      "# HELP squeeze_request_seconds Time from a request's arrival to its answer.",
                      "# TYPE squeeze_request_seconds histogram"]
            for endpoint, histogram in sorted(self.latency.items()):
                lines += histogram.lines("squeeze_request_seconds", f'endpoint="{endpoint}"')
            lines += ["# HELP squeeze_batch_texts Texts in each batch a model ran.", "# TYPE squeeze_batch_texts histogram",
                      *self.batches.lines("squeeze_batch_texts"),
                      "# HELP squeeze_batch_seconds Time each batch took.", "# TYPE squeeze_batch_seconds histogram",
                      *self.batch_seconds.lines("squeeze_batch_seconds")]
        lines += ["# HELP squeeze_queue_texts Texts admitted and not yet answered.", "# TYPE squeeze_queue_texts gauge",
                  f"squeeze_queue_texts {queue_depth}",
                  "# HELP squeeze_models_loaded Models loaded, by name.", "# TYPE squeeze_models_loaded gauge"]
        lines += [f'squeeze_models_loaded{{model="{_escape(name)}"}} 1' for name in models()]
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value)) if abs(value) < 1e15 else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

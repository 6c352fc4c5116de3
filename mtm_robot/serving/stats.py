"""Serving statistics: per-stage latency percentiles, batch sizes and outcome counters."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

import numpy as np

#: Stages timed per request (``inference`` once per batch).
STAGES = ("decode", "queue", "inference", "encode", "server_total")


class ServingStats:
    """Thread-safe rolling windows (last ``window`` samples) per stage, plus counters."""

    def __init__(self, window: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, deque[float]] = {s: deque(maxlen=window) for s in STAGES}
        self._batches: deque[int] = deque(maxlen=window)
        self._counters: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._started = time.monotonic()

    def record(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._stages[stage].append(seconds)

    def record_batch(self, size: int) -> None:
        with self._lock:
            self._batches.append(size)
            self._counters["batches"] += 1

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] += n

    def count_error(self, code: str) -> None:
        with self._lock:
            self._errors[code] += 1
            self._counters["errors"] += 1

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready: ``stages_us`` {stage: {count, p50, p99, mean}}, ``batch``, counters."""
        with self._lock:
            stages = {s: np.asarray(v, dtype=np.float64) * 1e6 for s, v in self._stages.items()}
            batches = np.asarray(self._batches, dtype=np.int64)
            counters = dict(self._counters)
            errors = dict(self._errors)
        out: dict[str, Any] = {"uptime_s": round(time.monotonic() - self._started, 3)}
        out["stages_us"] = {
            s: (
                {
                    "count": len(v),
                    "p50": round(float(np.percentile(v, 50)), 1),
                    "p99": round(float(np.percentile(v, 99)), 1),
                    "mean": round(float(v.mean()), 1),
                }
                if len(v)
                else {"count": 0, "p50": None, "p99": None, "mean": None}
            )
            for s, v in stages.items()
        }
        sizes, counts = np.unique(batches, return_counts=True)
        out["batch"] = {
            "count": len(batches),
            "mean": round(float(batches.mean()), 3) if len(batches) else None,
            "max": int(batches.max()) if len(batches) else None,
            "histogram": {str(int(s)): int(c) for s, c in zip(sizes, counts)},
        }
        out["counters"] = {
            k: counters.get(k, 0)
            for k in (
                "requests",
                "ok",
                "expired",
                "errors",
                "batches",
                "reloads",
                "dropped_replies",
                "inline",
            )
        }
        out["errors"] = errors
        return out

"""Per-request metrics cost, in process and in multiprocess mode: ``python bench/metrics_observation.py``.

Times ``Metrics.observe_latency`` plus ``Metrics.count_operation`` (what every push adds to the metrics),
then a scrape (``generate_latest`` of the app's registry) and, in multiprocess mode, one
``publish_runtime``. Each mode runs in a process of its own, since prometheus_client chooses it as it is
first imported: in process (one worker), and with ``PROMETHEUS_MULTIPROC_DIR`` set (``serve --workers N``).
Figures: RESULTS.md, "Metrics with several workers".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import timeit

OBSERVATIONS = 20_000
SCRAPES = 200
REPEATS = 7
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # read before anything imports prometheus_client


def measure() -> None:
    from prometheus_client import generate_latest

    from app.api.observability import Metrics

    metrics = Metrics()
    route = "/services/{service_id}/par"

    def observe() -> None:
        metrics.observe_latency(route, "POST", 201, 0.003)
        metrics.count_operation("push", "4800685359172158", "created", "")

    observe()  # the label children exist before timing, as on a running server
    metrics.publish_runtime()
    per_request = min(timeit.repeat(observe, number=OBSERVATIONS, repeat=REPEATS)) / OBSERVATIONS
    per_scrape = min(timeit.repeat(lambda: generate_latest(metrics.registry), number=SCRAPES, repeat=REPEATS)) / SCRAPES
    mode = "multiprocess" if metrics.multiprocess_dir else "in process"
    print(f"{mode:>13}: {per_request * 1e6:6.2f} µs per request, {per_scrape * 1e6:7.0f} µs per scrape", end="")
    if metrics.runtime is not None:
        per_publish = min(timeit.repeat(metrics.publish_runtime, number=SCRAPES, repeat=REPEATS)) / SCRAPES
        print(f", {per_publish * 1e6:5.0f} µs per publish_runtime", end="")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # in the child
    if parser.parse_args().measure:
        measure()
        return
    for multiprocess in (False, True):
        env = {name: value for name, value in os.environ.items() if name != MULTIPROCESS_DIR_VARIABLE}
        with tempfile.TemporaryDirectory() as directory:
            if multiprocess:
                env[MULTIPROCESS_DIR_VARIABLE] = directory
            subprocess.run([sys.executable, __file__, "--measure"], env=env, check=True)


if __name__ == "__main__":
    main()

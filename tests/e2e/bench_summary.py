#!/usr/bin/env python3
"""Tabulates scripts/bench-e2e's runs from their verdict.json files (written by verdict.py).

Usage: bench_summary.py REPLICAS MIN_READY_SECONDS VERDICT.json...

Per run: failed requests (all probes), p99 during the rollout / steady state (worst probe), and the
rollout time / its floor, the floor being replicas x (start + ready + minReady): the creation-to-Ready
time of each new pod (Kubernetes timestamps, 1 s resolution) plus minReadySeconds each, one pod
after the other (maxSurge 1).
"""

import json
import statistics
import sys


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    replicas, min_ready = int(argv[0]), float(argv[1])
    rows = []
    for path in argv[2:]:
        with open(path) as handle:
            result = json.load(handle)
        failed = sum(p["failed"] for p in result["probes"])
        requests = sum(p["requests"] for p in result["probes"])
        ratios = [p["p99_rollout_ms"] / p["p99_steady_ms"] for p in result["probes"]
                  if p["p99_steady_ms"]]
        ready = [s for app in result["pods"].values() for s in app["new_pod_ready_seconds"]]
        floor = (statistics.mean(ready) + min_ready) * replicas if ready else None
        rollout = result["rollout_seconds"]
        rows.append((result["scenario"], requests, failed, max(ratios, default=0.0), rollout,
                     floor, rollout / floor if floor else None, result["passed"]))
    print(f"{'run':<24}{'requests':>9}{'failed':>8}{'p99 x':>8}{'rollout s':>11}{'floor s':>9}"
          f"{'ratio':>7}  verdict")
    for name, requests, failed, ratio, rollout, floor, over, passed in rows:
        print(f"{name:<24}{requests:>9}{failed:>8}{ratio:>8.2f}{rollout:>11.1f}"
              f"{(floor or 0):>9.1f}{(over or 0):>7.2f}  {'PASS' if passed else 'FAIL'}")
    failed_runs = sum(1 for row in rows if row[2])
    print(f"bench: {len(rows)} runs, failed requests per run {[row[2] for row in rows]}, "
          f"{failed_runs} runs with failures; p99 rollout/steady median "
          f"{statistics.median(row[3] for row in rows):.2f}; rollout/floor median "
          f"{statistics.median(row[6] or 0 for row in rows):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

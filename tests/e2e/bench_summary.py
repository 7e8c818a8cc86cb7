#!/usr/bin/env python3
"""Tabulates scripts/bench-e2e's runs from their verdict.json files (written by verdict.py).

Usage: bench_summary.py --deployment SPEC.json --long-sleep 15s --stream-seconds 20 VERDICT.json...

Per run: failed requests (all probes), p99 during the rollout / steady state (worst probe), and the
rollout time (the deploy-apps call, until every old pod has exited) / its floor.

The floor is the least a rollout of this Deployment can take under this load:
  steps x (start + ready + minReadySeconds)  +  max(drain pause, longest request)
- steps = ceil(replicas / (maxSurge + maxUnavailable)): each step starts that many new pods at once,
  and the next step waits until they are available;
- start + ready: each new pod's creation-to-Ready time (Kubernetes timestamps, 1 s resolution),
  averaged over the run;
- the old pods drain in parallel with the next steps, except the last step's: it is deleted when the
  rollout completes, then keeps accepting for its drain pause (the kubelet's preStop sleep plus the
  app's SHUTDOWN_DELAY_SECONDS) while, in parallel, the longest request it may hold (the load's
  streams or long sleeps, started just before the deletion) runs to its end. It cannot exit before
  both are over. (Before 2026-12-07 the two were added, as if the longest request could only start
  at the end of the pause; the routers stop sending new requests within about 2 s of the deletion.)
Not in the floor: the deployer's own work (its probe's warm-up before the apply, the API calls, the
checks at the end) and a request a keep-alive client sends to an old pod on a connection whose
previous response began before the pod's deletion (served in full: see apps/README.md).
"""

import argparse
import json
import math
import re
import statistics
import sys


def seconds(text):
    """'15s', '1500ms', '2m' or a bare number of seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def pods_of(value, replicas):
    """maxSurge / maxUnavailable as a number of pods: an integer, or a percentage of replicas."""
    text = str(value)
    if text.endswith("%"):
        return math.ceil(replicas * float(text[:-1]) / 100)
    return int(text)


class Floor:
    def __init__(self, deployment, longest_request):
        spec = deployment["spec"]
        self.replicas = int(spec["replicas"])
        rolling = spec.get("strategy", {}).get("rollingUpdate", {})
        self.surge = pods_of(rolling.get("maxSurge", "25%"), self.replicas)
        unavailable = pods_of(rolling.get("maxUnavailable", "25%"), self.replicas)
        self.steps = math.ceil(self.replicas / max(1, self.surge + unavailable))
        self.min_ready = float(spec.get("minReadySeconds", 0))
        container = spec["template"]["spec"]["containers"][0]
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        app_delay = next((variable.get("value", "0") for variable in container.get("env", [])
                          if variable.get("name") == "SHUTDOWN_DELAY_SECONDS"), "0")
        self.pause = float(pre_stop) + (float(app_delay) if app_delay.isdigit() else 0.0)
        self.longest_request = longest_request

    def seconds(self, ready):
        if not ready:
            return None
        return (self.steps * (statistics.mean(ready) + self.min_ready)
                + max(self.pause, self.longest_request))

    def describe(self):
        return (f"floor = {self.steps} step(s) (replicas {self.replicas}, maxSurge {self.surge}) x "
                f"(start + ready + minReady {self.min_ready:g} s) + max(drain pause {self.pause:g} s, "
                f"longest request {self.longest_request:g} s)")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployment", required=True, help="the Deployment as JSON (kubectl -o json)")
    parser.add_argument("--long-sleep", type=seconds, required=True)
    parser.add_argument("--stream-seconds", type=seconds, required=True)
    parser.add_argument("verdicts", nargs="+")
    args = parser.parse_args(argv)
    with open(args.deployment) as handle:
        floor = Floor(json.load(handle), max(args.long_sleep, args.stream_seconds))

    rows = []
    for path in args.verdicts:
        with open(path) as handle:
            result = json.load(handle)
        failed = sum(p["failed"] for p in result["probes"])
        requests = sum(p["requests"] for p in result["probes"])
        ratios = [p["p99_rollout_ms"] / p["p99_steady_ms"] for p in result["probes"]
                  if p["p99_steady_ms"]]
        ready = [s for app in result["pods"].values() for s in app["new_pod_ready_seconds"]]
        least = floor.seconds(ready)
        rollout = result["rollout_seconds"]
        rows.append((result["scenario"], requests, failed, max(ratios, default=0.0), rollout,
                     least, rollout / least if least else None, result["passed"]))
    print(floor.describe())
    print(f"{'run':<24}{'requests':>9}{'failed':>8}{'p99 x':>8}{'rollout s':>11}{'floor s':>9}"
          f"{'ratio':>7}  verdict")
    for name, requests, failed, ratio, rollout, least, over, passed in rows:
        print(f"{name:<24}{requests:>9}{failed:>8}{ratio:>8.2f}{rollout:>11.1f}"
              f"{(least or 0):>9.1f}{(over or 0):>7.2f}  {'PASS' if passed else 'FAIL'}")
    failed_runs = sum(1 for row in rows if row[2])
    print(f"bench: {len(rows)} runs, failed requests per run {[row[2] for row in rows]}, "
          f"{failed_runs} runs with failures; p99 rollout/steady median "
          f"{statistics.median(row[3] for row in rows):.2f}; rollout/floor median "
          f"{statistics.median(row[6] or 0 for row in rows):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

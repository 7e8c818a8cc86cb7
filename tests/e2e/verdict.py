#!/usr/bin/env python3
"""Judges one e2e scenario from the probe reports, the pod watch and the script's marks.

Usage:
  verdict.py --scenario NAME --expect zero-downtime|no-op|rolled-back|failures|drained
             --old V --new V
             --marks FILE --probe LABEL=REPORT.json... --pods APP=DIR... --out VERDICT.json

Inputs:
  --marks   lines "NAME EPOCH_SECONDS" written by scripts/lib/e2e.sh: rollout-start, rollout-end,
            old-pods-gone (wall clock; converted to probe offsets with each report's started_at).
  --probe   a `deploy-apps probe --json` report per traffic path, e.g. service-go-app=....json.
  --pods    a directory with watch.json (kubectl get pods -w -o json --output-watch-events),
            before.json and after.json (kubectl get pods -o json).

Expectations:
  zero-downtime  every probe: 0 failed requests; long requests and streams started before the
                 rollout all complete on the old version; requests started after the last old pod
                 is gone are all served by the new version; every old pod's container exits 0.
  no-op          every probe: 0 failed requests, one version only; the same pods before and after,
                 no restarts, no pod deleted.
  rolled-back    a broken release the deployer rolled back: every probe: 0 failed requests, only
                 the old version answered; afterwards only old-version pods are left.
  failures       the control run: every probe reports failed requests (> 0).
  drained        a node drain (no release): every probe: 0 failed requests, one version only;
                 every pod deleted exits 0; the Ready pods not being deleted never fell below
                 the pods before it less one (what the PodDisruptionBudget allows).

Prints a summary per probe and exits 0 when the expectation holds, 1 when it does not, 2 on bad
input. Writes the figures and the findings to --out.
"""

import argparse
import datetime
import json
import pathlib
import sys

SHORT_KINDS = ("keepalive-get", "keepalive-post", "fresh-get")
LONG_LIVED_KINDS = ("long-get", "stream")
NOT_FAILED = ("none", "cancelled")
# Requests started after the last old pod is gone that must exist for the "all new" check to mean
# something.
MIN_REQUESTS_AFTER = 10


class BadInput(Exception):
    pass


def parse_time(text):
    """RFC 3339 UTC (the probe's started_at, Kubernetes timestamps) to epoch seconds."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_marks(path):
    marks = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if line.strip():
            name, at = line.split()
            marks.setdefault(name, float(at))
    return marks


def read_json_stream(path):
    """The concatenated JSON documents kubectl --watch writes."""
    text = pathlib.Path(path).read_text()
    decoder = json.JSONDecoder()
    position, documents = 0, []
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return documents
        document, position = decoder.raw_decode(text, position)
        documents.append(document)


def pod_version(pod):
    for container in pod["spec"]["containers"]:
        for variable in container.get("env", []):
            if variable["name"] == "APP_VERSION":
                return variable.get("value", "")
    return ""


def nearest_rank(values, percent):
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]


def latency_ms(record):
    return (record["end_us"] - record["start_us"]) / 1000.0


class ProbeFigures:
    """The numbers of one probe report, with the rollout window taken from the script's marks."""

    def __init__(self, label, report, marks):
        self.label = label
        started = parse_time(report["probe"]["started_at"])
        to_offset = lambda name: (marks[name] - started) * 1e6 if name in marks else None
        self.rollout_start = to_offset("rollout-start")
        self.rollout_end = to_offset("rollout-end")
        self.old_gone = to_offset("old-pods-gone")
        records = report["records"]
        self.records = records
        self.failed = [r for r in records if r["error"] not in NOT_FAILED]
        self.cancelled = [r for r in records if r["error"] == "cancelled"]
        self.failures_by_class = {}
        for record in self.failed:
            self.failures_by_class[record["error"]] = self.failures_by_class.get(record["error"], 0) + 1
        self.versions = {}
        for record in records:
            if record["version"]:
                self.versions[record["version"]] = self.versions.get(record["version"], 0) + 1
        disturbed_end = self.old_gone if self.old_gone is not None else self.rollout_end
        short_ok = [r for r in records if r["kind"] in SHORT_KINDS and r["error"] == "none"]
        if self.rollout_start is None or disturbed_end is None:
            during, steady = [], short_ok
        else:
            during = [r for r in short_ok
                      if r["start_us"] <= disturbed_end and r["end_us"] >= self.rollout_start]
            steady = [r for r in short_ok
                      if not (r["start_us"] <= disturbed_end and r["end_us"] >= self.rollout_start)]
        self.p99_steady_ms = nearest_rank([latency_ms(r) for r in steady], 99)
        self.p99_rollout_ms = nearest_rank([latency_ms(r) for r in during], 99)
        self.requests_during = len(during)
        self.switch_over_s = self._switch_over()

    def _switch_over(self):
        """First response of the newest version to the last of the oldest, short requests only."""
        short = [r for r in self.records if r["kind"] in SHORT_KINDS and r["version"]]
        if not short:
            return None
        order = sorted({r["version"] for r in short},
                       key=lambda v: min(r["start_us"] for r in short if r["version"] == v))
        if len(order) < 2:
            return None
        first_new = min(r["end_us"] for r in short if r["version"] == order[-1])
        last_old = max(r["end_us"] for r in short if r["version"] == order[0])
        return max(0.0, (last_old - first_new) / 1e6)

    def long_lived_before_rollout(self):
        if self.rollout_start is None:
            return []
        return [r for r in self.records
                if r["kind"] in LONG_LIVED_KINDS and r["start_us"] < self.rollout_start]

    def started_after_old_gone(self):
        if self.old_gone is None:
            return []
        return [r for r in self.records if r["start_us"] > self.old_gone]

    def as_json(self):
        return {
            "label": self.label,
            "requests": len(self.records),
            "failed": len(self.failed),
            "cancelled": len(self.cancelled),
            "failures_by_class": self.failures_by_class,
            "versions": self.versions,
            "switch_over_s": self.switch_over_s,
            "p99_steady_ms": self.p99_steady_ms,
            "p99_rollout_ms": self.p99_rollout_ms,
            "requests_during_rollout": self.requests_during,
            "first_failures": [
                {k: r[k] for k in ("id", "kind", "start_us", "end_us", "error", "detail",
                                   "served_by", "connection_served_by")}
                for r in sorted(self.failed, key=lambda r: r["end_us"])[:5]],
        }


class PodFigures:
    """What the pod watch and the snapshots say about one app's pods."""

    def __init__(self, app, directory):
        directory = pathlib.Path(directory)
        self.app = app
        self.pods = {}  # name -> the last state seen
        self.deleted = set()
        self.events = list(read_json_stream(directory / "watch.json"))
        for event in self.events:
            pod = event["object"]
            self.pods[pod["metadata"]["name"]] = pod
            if event["type"] == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                self.deleted.add(pod["metadata"]["name"])
        self.before = {p["metadata"]["uid"]: p for p in
                       json.loads((directory / "before.json").read_text())["items"]}
        self.after = {p["metadata"]["uid"]: p for p in
                      json.loads((directory / "after.json").read_text())["items"]}

    def exit_codes(self, version):
        """name -> exit code of the app container (None when its end was not seen)."""
        codes = {}
        for name, pod in self.pods.items():
            if pod_version(pod) != version:
                continue
            code = None
            for status in pod.get("status", {}).get("containerStatuses", []):
                terminated = status.get("state", {}).get("terminated")
                if status["name"] == self.app and terminated:
                    code = terminated["exitCode"]
            codes[name] = code
        return codes

    def deleted_exit_codes(self):
        """name -> exit code of the app container of every pod deleted (None: end not seen)."""
        codes = {}
        for name in sorted(self.deleted):
            code = None
            for status in self.pods[name].get("status", {}).get("containerStatuses", []):
                terminated = status.get("state", {}).get("terminated")
                if status["name"] == self.app and terminated:
                    code = terminated["exitCode"]
            codes[name] = code
        return codes

    @staticmethod
    def healthy(pod):
        """Ready and not being deleted: what a PodDisruptionBudget counts."""
        return not pod["metadata"].get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", []))

    def fewest_healthy(self):
        """The fewest healthy pods at any point of the watch, starting from before.json."""
        state = {p["metadata"]["name"]: self.healthy(p) for p in self.before.values()}
        fewest = sum(state.values())
        for event in self.events:
            name = event["object"]["metadata"]["name"]
            if event["type"] == "DELETED":
                state.pop(name, None)
            else:
                state[name] = self.healthy(event["object"])
            fewest = min(fewest, sum(state.values()))
        return fewest

    @staticmethod
    def restarts(pods):
        return sum(s.get("restartCount", 0) for p in pods.values()
                   for s in p.get("status", {}).get("containerStatuses", []))

    def new_pod_start_seconds(self, version):
        """Seconds from creation to Ready of each pod of `version` (Kubernetes' 1 s resolution)."""
        seconds = []
        for pod in self.pods.values():
            if pod_version(pod) != version:
                continue
            ready = [c for c in pod.get("status", {}).get("conditions", [])
                     if c["type"] == "Ready" and c["status"] == "True"]
            if ready:
                seconds.append(parse_time(ready[0]["lastTransitionTime"])
                               - parse_time(pod["metadata"]["creationTimestamp"]))
        return seconds


def judge(args, probes, pods, marks):
    """Returns the list of findings (empty: the expectation holds)."""
    findings = []
    for probe in probes:
        where = probe.label
        if args.expect == "failures":
            if not probe.failed:
                findings.append(f"{where}: the control run saw no failed request; the setup is "
                                "not sensitive enough")
            continue
        if probe.failed:
            findings.append(f"{where}: {len(probe.failed)} failed requests {probe.failures_by_class}")
        if probe.cancelled:
            findings.append(f"{where}: {len(probe.cancelled)} requests cancelled")
        if args.expect == "drained" and probe.requests_during == 0:
            findings.append(f"{where}: no request overlapped the drain")
        if args.expect in ("no-op", "rolled-back", "drained"):
            only = args.old if args.expect == "rolled-back" else args.new
            if set(probe.versions) != {only}:
                findings.append(f"{where}: versions {probe.versions}, expected only {only}")
            continue
        long_lived = probe.long_lived_before_rollout()
        if not long_lived:
            findings.append(f"{where}: no long request or stream started before the rollout")
        for record in long_lived:
            if record["error"] != "none" or record["version"] != args.old:
                findings.append(f"{where}: {record['kind']} #{record['id']} started before the "
                                f"rollout ended {record['error']} on version "
                                f"'{record['version']}' (expected {args.old})")
        after = probe.started_after_old_gone()
        if len(after) < MIN_REQUESTS_AFTER:
            findings.append(f"{where}: only {len(after)} requests started after the old pods were "
                            f"gone (need {MIN_REQUESTS_AFTER})")
        stale = [r for r in after if r["version"] != args.new and r["error"] == "none"]
        if stale:
            findings.append(f"{where}: {len(stale)} requests started after the old pods were gone "
                            f"were not served by {args.new}")
        if probe.requests_during == 0:
            findings.append(f"{where}: no request overlapped the rollout")
    for app in pods:
        if args.expect == "no-op":
            if set(app.before) != set(app.after) or app.deleted:
                findings.append(f"{app.app}: pods changed ({sorted(app.deleted)} deleted)")
            if app.restarts(app.after) != app.restarts(app.before):
                findings.append(f"{app.app}: restarts went from {app.restarts(app.before)} to "
                                f"{app.restarts(app.after)}")
        elif args.expect == "rolled-back":
            left = sorted({pod_version(p) for p in app.after.values()})
            if left != [args.old]:
                findings.append(f"{app.app}: pods left run {left}, expected only {args.old}")
        elif args.expect == "drained":
            codes = app.deleted_exit_codes()
            if not codes:
                findings.append(f"{app.app}: the drain deleted no pod")
            for name, code in codes.items():
                if code != 0:
                    findings.append(f"{app.app}: drained pod {name} exited "
                                    f"{'(not seen)' if code is None else code}, expected 0")
            allowed = sum(app.healthy(p) for p in app.before.values()) - 1
            if app.fewest_healthy() < allowed:
                findings.append(f"{app.app}: {app.fewest_healthy()} healthy pods during the drain, "
                                f"the budget allows no fewer than {allowed}")
        elif args.expect == "zero-downtime":
            codes = app.exit_codes(args.old)
            if not codes:
                findings.append(f"{app.app}: no old ({args.old}) pod was seen terminating")
            for name, code in sorted(codes.items()):
                if code != 0:
                    findings.append(f"{app.app}: old pod {name} exited "
                                    f"{'(not seen)' if code is None else code}, expected 0")
    return findings


def print_summary(args, probes, pods, findings, rollout_seconds):
    for probe in probes:
        failures = ", ".join(f"{k}={v}" for k, v in sorted(probe.failures_by_class.items()))
        versions = " ".join(f"{k}={v}" for k, v in probe.versions.items())
        ratio = (probe.p99_rollout_ms / probe.p99_steady_ms) if probe.p99_steady_ms else 0.0
        switch = "-" if probe.switch_over_s is None else f"{probe.switch_over_s:.1f}s"
        print(f"  {probe.label}: {len(probe.records)} requests, {len(probe.failed)} failed"
              f"{' (' + failures + ')' if failures else ''}; versions {versions or '-'}; "
              f"switch-over {switch}; p99 steady {probe.p99_steady_ms:.1f} ms, rollout "
              f"{probe.p99_rollout_ms:.1f} ms (x{ratio:.2f})")
        if args.expect == "zero-downtime":
            long_lived = probe.long_lived_before_rollout()
            on_old = sum(1 for r in long_lived if r["error"] == "none" and r["version"] == args.old)
            after = probe.started_after_old_gone()
            on_new = sum(1 for r in after if r["error"] == "none" and r["version"] == args.new)
            print(f"    long requests and streams started before the rollout: {on_old} of "
                  f"{len(long_lived)} completed on {args.old}; started after the old pods were "
                  f"gone: {on_new} of {len(after)} served by {args.new}")
    for app in pods:
        if args.expect in ("zero-downtime", "failures"):
            codes = app.exit_codes(args.old)
            print(f"  {app.app}: old pods' exit codes "
                  + (" ".join(f"{n}={c}" for n, c in sorted(codes.items())) or "-"))
        if args.expect == "drained":
            codes = app.deleted_exit_codes()
            print(f"  {app.app}: drained pods' exit codes "
                  + (" ".join(f"{n}={c}" for n, c in codes.items()) or "-")
                  + f"; fewest healthy pods {app.fewest_healthy()} of {len(app.before)}")
    if rollout_seconds is not None:
        print(f"  rollout took {rollout_seconds:.1f}s")
    for finding in findings:
        print(f"  FAIL {finding}")
    print(f"{args.scenario}: {'FAIL' if findings else 'PASS'}")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--expect", required=True, choices=("zero-downtime", "no-op", "rolled-back", "failures", "drained"))
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", required=True)
    parser.add_argument("--marks", required=True)
    parser.add_argument("--probe", action="append", default=[], metavar="LABEL=REPORT")
    parser.add_argument("--pods", action="append", default=[], metavar="APP=DIR")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        marks = read_marks(args.marks)
        if not args.probe:
            raise BadInput("no --probe report given")
        probes = []
        for item in args.probe:
            label, _, path = item.partition("=")
            probes.append(ProbeFigures(label, json.loads(pathlib.Path(path).read_text()), marks))
        pods = []
        for item in args.pods:
            app, _, directory = item.partition("=")
            pods.append(PodFigures(app, directory))
    except (OSError, ValueError, KeyError, BadInput) as error:
        print(f"verdict.py: bad input: {error}", file=sys.stderr)
        return 2
    findings = judge(args, probes, pods, marks)
    rollout_seconds = None
    if "rollout-start" in marks and "rollout-end" in marks:
        rollout_seconds = marks["rollout-end"] - marks["rollout-start"]
    print_summary(args, probes, pods, findings, rollout_seconds)
    result = {
        "scenario": args.scenario,
        "expect": args.expect,
        "old": args.old,
        "new": args.new,
        "passed": not findings,
        "findings": findings,
        "rollout_seconds": rollout_seconds,
        "probes": [p.as_json() for p in probes],
        "pods": {a.app: {"old_exit_codes": a.exit_codes(args.old),
                         "new_pod_ready_seconds": a.new_pod_start_seconds(args.new),
                         "restarts_before": a.restarts(a.before),
                         "restarts_after": a.restarts(a.after)} for a in pods},
    }
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

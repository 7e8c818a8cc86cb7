#!/usr/bin/env python3
"""Unit tests of verdict.py: each rule of the gate must fail on the evidence it is there to catch.

Run: python3 tests/e2e/verdict_test.py (scripts/test-e2e runs it before touching the cluster).
"""

import contextlib
import io
import json
import pathlib
import sys
import tempfile
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import verdict  # noqa: E402  (the module under test, next to this file)

STARTED = "2026-11-28T12:00:00.000Z"
EPOCH = verdict.parse_time(STARTED)
# The scenario's marks, in seconds after the probe started.
ROLLOUT_START, ROLLOUT_END, OLD_GONE = 4.0, 20.0, 40.0


def record(ident, kind, start_s, end_s, version, error="none"):
    return {"id": ident, "kind": kind, "worker": 0, "connection": ident, "connection_reused": False,
            "stale_connection_replaced": False, "start_us": int(start_s * 1e6),
            "response_us": int(start_s * 1e6), "end_us": int(end_s * 1e6),
            "status": 200 if error == "none" else 0, "error": error, "detail": "",
            "version": version, "served_by": "pod", "connection_served_by": "",
            "server_closed": False, "stream_lines": 0}


def clean_records():
    """A rollout as it should look: v1, then both, then v2 only; long-lived ones finish on v1."""
    records, ident = [], 0
    for tenth in range(0, 500):
        at = tenth / 10.0
        version = "v1" if at < 12 else ("v2" if at > 30 else ("v1", "v2")[tenth % 2])
        ident += 1
        records.append(record(ident, "keepalive-get", at, at + 0.01, version))
    records.append(record(ident + 1, "long-get", 1.0, 16.0, "v1"))
    records.append(record(ident + 2, "stream", 2.0, 22.0, "v1"))
    return records


def pod(name, version, exit_code=None, restarts=0, uid=None):
    status = {"name": "go-app", "restartCount": restarts, "state": {"running": {}}}
    if exit_code is not None:
        status["state"] = {"terminated": {"exitCode": exit_code}}
    return {"metadata": {"name": name, "uid": uid or name,
                         "creationTimestamp": "2026-11-28T12:00:05Z"},
            "spec": {"containers": [{"name": "go-app",
                                     "env": [{"name": "APP_VERSION", "value": version}]}]},
            "status": {"containerStatuses": [status], "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-28T12:00:09Z"}]}}


class Scenario:
    """Writes the files one scenario leaves behind and runs the verdict on them."""

    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.records = clean_records()
        self.watch = [("ADDED", pod("old-a", "v1")), ("ADDED", pod("old-b", "v1")),
                      ("MODIFIED", pod("old-a", "v1", exit_code=0)), ("DELETED", pod("old-a", "v1", 0)),
                      ("MODIFIED", pod("old-b", "v1", exit_code=0)), ("DELETED", pod("old-b", "v1", 0)),
                      ("ADDED", pod("new-a", "v2")), ("ADDED", pod("new-b", "v2"))]
        self.before = [pod("old-a", "v1"), pod("old-b", "v1")]
        self.after = [pod("new-a", "v2"), pod("new-b", "v2")]

    def run(self, expect="zero-downtime", old="v1", new="v2"):
        report = {"probe": {"url": "http://x", "host_header": "", "started_at": STARTED,
                            "elapsed_us": 0}, "summary": {}, "marks": [], "records": self.records}
        (self.dir / "report.json").write_text(json.dumps(report))
        (self.dir / "marks.txt").write_text(
            "".join(f"{name} {EPOCH + at}\n" for name, at in
                    (("rollout-start", ROLLOUT_START), ("rollout-end", ROLLOUT_END),
                     ("old-pods-gone", OLD_GONE))))
        pods = self.dir / "pods"
        pods.mkdir(exist_ok=True)
        (pods / "watch.json").write_text(
            "\n".join(json.dumps({"type": kind, "object": obj}, indent=2) for kind, obj in self.watch))
        (pods / "before.json").write_text(json.dumps({"items": self.before}))
        (pods / "after.json").write_text(json.dumps({"items": self.after}))
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            code = verdict.main(["--scenario", "t", "--expect", expect, "--old", old, "--new", new,
                                 "--marks", str(self.dir / "marks.txt"),
                                 "--probe", f"service={self.dir / 'report.json'}",
                                 "--pods", f"go-app={pods}", "--out", str(self.dir / "v.json")])
        return code, output.getvalue()


class VerdictTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.scenario = Scenario(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def assert_fails(self, expected_text, **kwargs):
        code, output = self.scenario.run(**kwargs)
        self.assertEqual(code, 1, output)
        self.assertIn(expected_text, output)

    def test_a_clean_rollout_passes(self):
        code, output = self.scenario.run()
        self.assertEqual(code, 0, output)
        self.assertIn("t: PASS", output)

    def test_one_failed_request_fails(self):
        self.scenario.records.append(record(9001, "keepalive-post", 15.0, 15.1, "", "reset"))
        self.assert_fails("1 failed requests {'reset': 1}")

    def test_a_cut_stream_started_before_the_rollout_fails(self):
        self.scenario.records.append(record(9002, "stream", 3.0, 21.0, "v1", "truncated"))
        self.assert_fails("stream #9002 started before the rollout ended truncated")

    def test_old_version_after_the_old_pods_are_gone_fails(self):
        self.scenario.records.append(record(9003, "fresh-get", 45.0, 45.1, "v1"))
        self.assert_fails("were not served by v2")

    def test_an_old_pod_killed_at_the_deadline_fails(self):
        self.scenario.watch[4] = ("MODIFIED", pod("old-b", "v1", exit_code=137))
        self.scenario.watch[5] = ("DELETED", pod("old-b", "v1", exit_code=137))
        self.assert_fails("old pod old-b exited 137")

    def test_an_old_pod_whose_end_was_not_seen_fails(self):
        self.scenario.watch = [w for w in self.scenario.watch if w[1]["metadata"]["name"] != "old-b"
                               or w[0] == "ADDED"]
        self.assert_fails("old pod old-b exited (not seen)")

    def test_no_long_lived_request_before_the_rollout_fails(self):
        self.scenario.records = [r for r in self.scenario.records if r["kind"] == "keepalive-get"]
        self.assert_fails("no long request or stream started before the rollout")

    def test_the_control_run_must_see_failures(self):
        self.assert_fails("not sensitive enough", expect="failures")
        self.scenario.records.append(record(9004, "keepalive-get", 10.0, 10.1, "", "refused"))
        code, output = self.scenario.run(expect="failures")
        self.assertEqual(code, 0, output)

    def test_a_noop_with_a_restart_or_a_new_pod_fails(self):
        self.scenario.records = [record(i, "keepalive-get", i / 10, i / 10 + 0.01, "v2")
                                 for i in range(100)]
        self.scenario.watch = [("ADDED", pod("new-a", "v2")), ("ADDED", pod("new-b", "v2"))]
        self.scenario.before = [pod("new-a", "v2"), pod("new-b", "v2")]
        self.scenario.after = [pod("new-a", "v2"), pod("new-b", "v2", restarts=1)]
        self.assert_fails("restarts went from 0 to 1", expect="no-op", old="v2")
        self.scenario.after = [pod("new-a", "v2"), pod("new-c", "v2")]
        self.assert_fails("pods changed", expect="no-op", old="v2")
        self.scenario.after = list(self.scenario.before)
        code, output = self.scenario.run(expect="no-op", old="v2")
        self.assertEqual(code, 0, output)

    def test_a_rolled_back_release_must_leave_only_old_pods_and_versions(self):
        self.scenario.records = [record(i, "keepalive-get", i / 10, i / 10 + 0.01, "v1")
                                 for i in range(100)]
        self.scenario.after = [pod("old-a", "v1"), pod("old-b", "v1")]
        code, output = self.scenario.run(expect="rolled-back")
        self.assertEqual(code, 0, output)
        self.scenario.after = [pod("old-a", "v1"), pod("new-a", "v2")]
        self.assert_fails("pods left run ['v1', 'v2']", expect="rolled-back")
        self.scenario.after = [pod("old-a", "v1"), pod("old-b", "v1")]
        self.scenario.records.append(record(9005, "fresh-get", 12.0, 12.1, "v2"))
        self.assert_fails("expected only v1", expect="rolled-back")

    def test_a_drain_must_drop_nothing_and_keep_the_budget(self):
        self.scenario.records = [record(i, "keepalive-get", i / 10, i / 10 + 0.01, "v2")
                                 for i in range(100)]
        self.scenario.before = [pod("a", "v2"), pod("b", "v2")]
        draining = pod("a", "v2")
        draining["metadata"]["deletionTimestamp"] = "2026-11-28T12:00:10Z"
        self.scenario.watch = [("ADDED", pod("a", "v2")), ("ADDED", pod("b", "v2")),
                               ("MODIFIED", draining), ("ADDED", pod("c", "v2")),
                               ("DELETED", pod("a", "v2", exit_code=0))]
        self.scenario.after = [pod("b", "v2"), pod("c", "v2")]
        code, output = self.scenario.run(expect="drained", old="v2", new="v2")
        self.assertEqual(code, 0, output)
        self.assertIn("fewest healthy pods 1 of 2", output)
        # Both evicted at once: the budget (one at a time) was not honoured.
        both = pod("b", "v2")
        both["metadata"]["deletionTimestamp"] = "2026-11-28T12:00:10Z"
        self.scenario.watch.insert(3, ("MODIFIED", both))
        self.assert_fails("0 healthy pods during the drain", expect="drained", old="v2", new="v2")
        del self.scenario.watch[3]
        self.scenario.watch[-1] = ("DELETED", pod("a", "v2", exit_code=137))
        self.assert_fails("drained pod a exited 137", expect="drained", old="v2", new="v2")
        self.scenario.watch[-1] = ("DELETED", pod("a", "v2", exit_code=0))
        self.scenario.records.append(record(9006, "fresh-get", 5.0, 5.1, "", "reset"))
        self.assert_fails("1 failed requests", expect="drained", old="v2", new="v2")
        self.scenario.records.pop()
        self.scenario.watch = self.scenario.watch[:2]
        self.assert_fails("the drain deleted no pod", expect="drained", old="v2", new="v2")

    def test_bad_input_exits_2(self):
        with contextlib.redirect_stderr(io.StringIO()):
            code = verdict.main(["--scenario", "t", "--expect", "no-op", "--old", "a", "--new", "b",
                                 "--marks", "/nonexistent", "--probe", "x=/nonexistent",
                                 "--out", "/dev/null"])
        self.assertEqual(code, 2)


if __name__ == "__main__":
    unittest.main()

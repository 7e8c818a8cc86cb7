#!/usr/bin/env python3
"""Unit tests of bench_summary.py's floor: the number a benchmark's rollout time is judged against.

Run: python3 tests/e2e/bench_summary_test.py (scripts/test-e2e runs it before touching the cluster).
"""

import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_summary  # noqa: E402  (the module under test, next to this file)


def deployment(replicas=2, surge=1, unavailable=0, min_ready=5, pre_stop=10, app_delay=None):
    container = {"name": "app"}
    if pre_stop is not None:
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": pre_stop}}}
    if app_delay is not None:
        container["env"] = [{"name": "PORT", "value": "8080"},
                            {"name": "SHUTDOWN_DELAY_SECONDS", "value": app_delay}]
    return {"spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "strategy": {"rollingUpdate": {"maxSurge": surge,
                                                    "maxUnavailable": unavailable}},
                     "template": {"spec": {"containers": [container]}}}}


class FloorTest(unittest.TestCase):
    def test_one_pod_per_step_then_the_last_drain(self):
        floor = bench_summary.Floor(deployment(), longest_request=20)
        # 2 steps of (2 s to Ready + 5 s minReady), then the last pod's 10 s pause, during which
        # a 20 s request that began just before its deletion runs on.
        self.assertEqual(floor.seconds([2.0, 2.0]), 2 * 7 + 20)
        # A pause longer than any request decides instead.
        self.assertEqual(bench_summary.Floor(deployment(pre_stop=30), 20).seconds([2.0, 2.0]),
                         2 * 7 + 30)

    def test_the_pause_is_the_prestop_sleep_plus_the_apps_delay(self):
        floor = bench_summary.Floor(deployment(pre_stop=0, app_delay="25"), longest_request=20)
        self.assertEqual(floor.seconds([2.0, 2.0]), 2 * 7 + 25)
        self.assertEqual(bench_summary.Floor(deployment(pre_stop=3, app_delay="7"), 20).pause, 10)
        self.assertEqual(bench_summary.Floor(deployment(pre_stop=None, app_delay="x"), 20).pause, 0)

    def test_a_larger_surge_takes_fewer_steps(self):
        self.assertEqual(bench_summary.Floor(deployment(surge=2), 20).seconds([2.0, 2.0]), 27)
        self.assertEqual(bench_summary.Floor(deployment(replicas=3, surge=2), 20).steps, 2)
        self.assertEqual(bench_summary.Floor(deployment(replicas=3, surge="50%"), 20).steps, 2)
        self.assertEqual(bench_summary.Floor(deployment(replicas=4, surge="25%",
                                                        unavailable="25%"), 20).steps, 2)

    def test_no_prestop_and_no_ready_pods(self):
        floor = bench_summary.Floor(deployment(pre_stop=None, min_ready=0), longest_request=5)
        self.assertEqual(floor.seconds([3.0, 1.0]), 2 * 2 + 5)
        self.assertIsNone(floor.seconds([]))

    def test_durations(self):
        self.assertEqual(bench_summary.seconds("15s"), 15)
        self.assertEqual(bench_summary.seconds("1500ms"), 1.5)
        self.assertEqual(bench_summary.seconds("20"), 20)
        with self.assertRaises(Exception):
            bench_summary.seconds("soon")


if __name__ == "__main__":
    unittest.main()

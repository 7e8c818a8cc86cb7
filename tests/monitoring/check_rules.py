#!/usr/bin/env python3
"""Checks the alert rules beyond what promtool does, and tests the promtool tests themselves.

1. Contract: every alert has a known severity, a summary, a description and a runbook_url that
   names an existing runbook (manifests/monitoring/runbooks/<Alert>.md) with the required sections.
2. Mutation: each alert rule in turn is broken - made never to fire, made to fire always, and each
   numeric threshold in its expression multiplied and divided by 10 - and `promtool test rules` must
   fail for every such mutant. A mutant that survives means that part of the alert is untested.

Usage: check_rules.py REPO_ROOT
"""

import concurrent.futures
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

SEVERITIES = {"page", "ticket", "heartbeat"}
RUNBOOK_SECTIONS = ["## Meaning", "## Impact", "## Diagnose", "## Mitigate", "## Escalate"]
# A number standing alone in PromQL: not part of a name, a [5m] range, or a quoted label value.
NUMBER = re.compile(r'(?<![\w.\["])(\d+(?:\.\d+)?)(?![\w.\]"])')


def mutants(expr):
    """Yields (description, mutated expression) for one alert expression."""
    yield "never fires", "vector(1) == 0"
    if expr.strip() != "vector(1)":
        yield "always fires", "vector(1)"
    for match in NUMBER.finditer(expr):
        value = float(match.group(1))
        before = expr[:match.start()].rstrip()
        # Skip 0, vector(1) (same alert either way) and the second factor of "(14.4 * 0.001)",
        # which would repeat the mutant of the first.
        if value == 0 or before.endswith("vector(") or before.endswith("*"):
            continue
        for factor, word in ((10, "x10"), (0.1, "/10")):
            mutated = expr[:match.start()] + repr(value * factor) + expr[match.end():]
            yield f"{match.group(1)} {word} at offset {match.start()}", mutated


def alert_rules(rule_files):
    """Yields (file, group index, rule index, rule) for every alerting rule."""
    for path in rule_files:
        doc = yaml.safe_load(path.read_text())
        for g, group in enumerate(doc["groups"]):
            for r, rule in enumerate(group["rules"]):
                if "alert" in rule:
                    yield path, g, r, rule


def check_contract(repo, rule_files):
    problems = []
    for path, _, _, rule in alert_rules(rule_files):
        name = rule["alert"]
        labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity must be one of {sorted(SEVERITIES)}")
        for key in ("summary", "description", "runbook_url"):
            if not annotations.get(key):
                problems.append(f"{name}: missing annotation {key}")
        expected = f"manifests/monitoring/runbooks/{name}.md"
        if annotations.get("runbook_url") != expected:
            problems.append(f"{name}: runbook_url should be {expected}")
            continue
        runbook = repo / expected
        if not runbook.is_file():
            problems.append(f"{name}: runbook {expected} does not exist")
            continue
        text = runbook.read_text()
        missing = [s for s in RUNBOOK_SECTIONS if s not in text]
        if missing:
            problems.append(f"{name}: runbook lacks sections {missing}")
    return problems


def promtool_passes(test_files):
    result = subprocess.run(["promtool", "test", "rules", *map(str, test_files)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return result.returncode == 0


def tests_for_alert(test_docs, alert, rule_file_name, workdir):
    """Writes, per test file about `rule_file_name`, only its groups that test `alert`, pointing at
    the rule files in `workdir`; returns the files written."""
    files = []
    for name, doc in test_docs.items():
        if rule_file_name not in (pathlib.Path(f).name for f in doc["rule_files"]):
            continue
        groups = [
            {key: value for key, value in group.items() if key != "promql_expr_test"}
            for group in doc["tests"]
            if any(case.get("alertname") == alert for case in group.get("alert_rule_test", []))
        ]
        if groups:
            copy = dict(doc, tests=groups,
                        rule_files=[str(workdir / pathlib.Path(f).name) for f in doc["rule_files"]])
            path = workdir / name
            path.write_text(yaml.safe_dump(copy, sort_keys=False))
            files.append(path)
    return files


def run_mutants(rule_files, test_files, workers=2):
    """Returns (mutants tried, descriptions of the mutants that survived)."""
    originals = {path: yaml.safe_load(path.read_text()) for path in rule_files}
    test_docs = {test.name: yaml.safe_load(test.read_text()) for test in test_files}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []  # (description, test files) per mutant, each in its own directory
        for path, g, r, rule in alert_rules(rule_files):
            severity = rule.get("labels", {}).get("severity")
            for label, mutated in mutants(rule["expr"]):
                workdir = pathlib.Path(tmp) / str(len(jobs))
                workdir.mkdir()
                for other, doc in originals.items():
                    if other == path:
                        doc = yaml.safe_load(yaml.safe_dump(doc))
                        doc["groups"][g]["rules"][r]["expr"] = mutated
                    (workdir / other.name).write_text(yaml.safe_dump(doc, sort_keys=False))
                # Only the test groups about this alert run, so the check stays fast.
                tests = tests_for_alert(test_docs, rule["alert"], path.name, workdir)
                jobs.append((f"{rule['alert']} ({severity}) {label}", tests))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            survived = pool.map(lambda job: not job[1] or promtool_passes(job[1]), jobs)
            survivors = [job[0] for job, alive in zip(jobs, survived) if alive]
    return len(jobs), survivors


def main():
    repo = pathlib.Path(sys.argv[1]).resolve()
    rule_files = sorted((repo / "manifests/monitoring").glob("*.rules.yaml"))
    test_files = sorted((repo / "tests/monitoring").glob("*.test.yaml"))
    if not rule_files or not test_files:
        sys.exit("no rule files or no promtool tests found")
    if not promtool_passes(test_files):
        sys.exit("promtool tests fail on the unmodified rules; fix them first")
    problems = check_contract(repo, rule_files)
    for problem in problems:
        print(f"contract: {problem}")
    tried, survivors = run_mutants(rule_files, test_files)
    for survivor in survivors:
        print(f"mutant survived (tests did not notice): {survivor}")
    print(f"alert contract: {len(problems)} problems; mutants: {tried} tried, "
          f"{tried - len(survivors)} killed, {len(survivors)} survived")
    sys.exit(1 if problems or survivors else 0)


if __name__ == "__main__":
    main()

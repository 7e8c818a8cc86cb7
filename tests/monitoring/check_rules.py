#!/usr/bin/env python3
"""Checks the alert rules beyond what promtool does, and tests the promtool tests themselves.

1. Contract: every alert has a promtool test case and every alert ANSWERS.md names exists; every
   alert has a known severity, a summary, a description and a runbook_url that
   names an existing runbook (manifests/monitoring/runbooks/<Alert>.md) with the required sections.
   A runbook's burn-rate factors ("14.4x") must be the ones its alert's expression uses.
2. Mutation: each alert rule in turn is broken - made never to fire, made to fire always, each
   numeric threshold in its expression multiplied and divided by 10, each range window ([5m]) in it
   multiplied and divided by 4, and its `for:` dropped or tripled - and so is each recording rule's
   window, against the tests of every alert that reads that record and of the record's own values. `promtool test rules`
   must fail for every such mutant. A mutant that survives means that part of the alert is untested.
3. Group order: promtool evaluates the rule groups of a tick in an unspecified order, so the tests of
   an alert that reads another group's record run with the groups in both orders. The unmodified
   rules must pass in both, and a mutant counts as killed only if it fails in both.

Usage: check_rules.py REPO_ROOT [MUTANT_REGEX]
  MUTANT_REGEX runs only the mutants whose description matches (e.g. "^LogOutputFailing"), for quick
  iterations; scripts/test-alerts always runs them all.
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
# A range or for: duration made of one unit, e.g. 5m in rate(x[5m]) or for: 15m.
WINDOW = re.compile(r"\[(\d+)([smhd])\]")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"^(\d+)([smhd])$")
BURN_FACTOR = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)x\b")


def seconds(duration):
    match = DURATION.match(str(duration))
    if not match:
        raise ValueError(f"unsupported duration {duration!r}: use one unit, such as 90s or 15m")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def duration(total):
    """Formats seconds in the largest unit that divides them (900 -> 15m)."""
    for unit in ("d", "h", "m"):
        if total % UNIT_SECONDS[unit] == 0:
            return f"{total // UNIT_SECONDS[unit]}{unit}"
    return f"{total}s"


def window_mutants(expr):
    """Yields (description, expression) with each range window in turn x4 and /4."""
    for match in WINDOW.finditer(expr):
        length = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
        for new, word in ((length * 4, "x4"), (max(length // 4, 1), "/4")):
            mutated = expr[:match.start()] + f"[{duration(new)}]" + expr[match.end():]
            yield f"window {match.group(0)} {word} at offset {match.start()}", mutated


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
    yield from window_mutants(expr)


def record_window_mutants(expr):
    """Yields (description, expression) with a recording rule's window changed everywhere it is
    used (numerator and denominator alike) x4 and /4: the record then averages over another span."""
    for window in sorted(set(WINDOW.findall(expr))):
        length = int(window[0]) * UNIT_SECONDS[window[1]]
        for new, word in ((length * 4, "x4"), (max(length // 4, 1), "/4")):
            mutated = expr.replace(f"[{window[0]}{window[1]}]", f"[{duration(new)}]")
            yield f"window [{window[0]}{window[1]}] {word}", mutated


def rule_mutants(rule):
    """Yields (description, field, value) for one alerting rule: its expression's mutants, then its
    for: duration dropped and tripled."""
    for label, mutated in mutants(rule["expr"]):
        yield label, "expr", mutated
    if rule.get("for"):
        yield f"for {rule['for']} dropped", "for", "0s"
        yield f"for {rule['for']} x3", "for", duration(seconds(rule["for"]) * 3)


def all_rules(rule_files, kind):
    """Yields (file, group index, rule index, rule) for every rule of `kind` ("alert" or "record")."""
    for path in rule_files:
        doc = yaml.safe_load(path.read_text())
        for g, group in enumerate(doc["groups"]):
            for r, rule in enumerate(group["rules"]):
                if kind in rule:
                    yield path, g, r, rule


def alert_rules(rule_files):
    return all_rules(rule_files, "alert")


def readers(rule_files, record):
    """Names of the alerts whose expression reads `record`, directly or through other records."""
    names, alerts = {record}, set()
    changed = True
    while changed:
        changed = False
        for _, _, _, rule in all_rules(rule_files, "record"):
            if rule["record"] not in names and any(
                    re.search(rf"(?<![\w:]){re.escape(n)}(?![\w:])", rule["expr"]) for n in names):
                names.add(rule["record"])
                changed = True
    for _, _, _, rule in alert_rules(rule_files):
        if any(re.search(rf"(?<![\w:]){re.escape(n)}(?![\w:])", rule["expr"]) for n in names):
            alerts.add(rule["alert"])
    return alerts


def check_contract(repo, rule_files):
    problems = []
    factors = {}  # alert -> [burn factors its expressions use, its runbook's text]
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
        factors.setdefault(name, [set(), text])[0].update(
            re.findall(r"\((\d+(?:\.\d+)?) \*", rule["expr"]))
    # A runbook that quotes a burn rate no rule uses describes an alert that does not exist.
    for name, (used, text) in factors.items():
        for quoted in sorted(set(BURN_FACTOR.findall(text)) - used):
            problems.append(f"{name}: runbook names a {quoted}x burn rate; the rules use {sorted(used)}")
    return problems


def check_coverage(repo, rule_files, test_files):
    """Every alert has a promtool test case, and every alert ANSWERS.md names exists."""
    alerts = {rule["alert"] for _, _, _, rule in alert_rules(rule_files)}
    tested = {case.get("alertname")
              for test in test_files for group in yaml.safe_load(test.read_text())["tests"]
              for case in group.get("alert_rule_test", [])}
    problems = [f"{name}: no promtool test case" for name in sorted(alerts - tested)]
    named = set(re.findall(r"`((?:App|Kube|Node|Log|Watchdog)[A-Za-z]*)`",
                           (repo / "ANSWERS.md").read_text()))
    problems += [f"ANSWERS.md names {name}, which no rule file defines" for name in sorted(named - alerts)]
    return problems


def promtool_passes(test_files):
    result = subprocess.run(["promtool", "test", "rules", *map(str, test_files)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return result.returncode == 0


def group_orders(rule_docs):
    """Prometheus evaluates each rule group on its own schedule, and promtool evaluates the groups of
    one tick in an unspecified order, so an alert may see a record of another group one tick late.
    A test that passes in only one order is flaky; the tests of such alerts run with the groups in
    file order and reversed, which tries every pair of groups both ways."""
    names = [group["name"] for doc in rule_docs for group in doc["groups"]]
    return [names, names[::-1]]


def order_sensitive(rule_files):
    """Names of the rules that read a record of another group, directly or through other records:
    only their tests can depend on the order of the groups."""
    groups, exprs = {}, {}
    for path, g, _, rule in all_rules(rule_files, "expr"):
        name = rule.get("alert") or rule["record"]
        groups[name], exprs[name] = (path.name, g), rule["expr"]
    records = {name for _, _, _, rule in all_rules(rule_files, "record") for name in [rule["record"]]}

    def reads(name):
        return [r for r in records
                if re.search(rf"(?<![\w:]){re.escape(r)}(?![\w:])", exprs[name])]
    sensitive, changed = set(), True
    while changed:
        changed = False
        for name in exprs:
            if name not in sensitive and any(groups[r] != groups[name] or r in sensitive
                                             for r in reads(name)):
                sensitive.add(name)
                changed = True
    return sensitive


def write_ordered(doc, name, workdir, rule_docs, orders=2):
    """Writes test `doc` into `workdir`, reading the rule files there, once per group order (the
    first `orders` of group_orders); returns the files written, one per order."""
    rule_names = [pathlib.Path(f).name for f in doc["rule_files"]]
    files = []
    all_orders = group_orders([rule_docs[n] for n in rule_names])
    for i, order in enumerate(all_orders[:orders]):
        copy = dict(doc, rule_files=[str(workdir / n) for n in rule_names], group_eval_order=order)
        path = workdir / f"order{i}-{name}"
        path.write_text(yaml.safe_dump(copy, sort_keys=False))
        files.append(path)
    return files


def passes_in_every_order(files_by_order):
    return all(promtool_passes(files) for files in files_by_order)


def passes_in_some_order(files_by_order):
    return any(promtool_passes(files) for files in files_by_order)


def tests_for_alerts(test_docs, alerts, rule_file_name, workdir, rule_docs, orders, record=None):
    """Writes, per test file about `rule_file_name`, only its groups that test one of `alerts` (or,
    given a `record`, check its value), pointing at the rule files in `workdir`, once per group
    order; returns the files written, one list per order."""
    files = [[] for _ in range(orders)]
    for name, doc in test_docs.items():
        if rule_file_name not in (pathlib.Path(f).name for f in doc["rule_files"]):
            continue
        def about_record(case):
            return record is not None and re.search(rf"(?<![\w:]){re.escape(record)}(?![\w:])",
                                                    case["expr"])
        groups = []
        for group in doc["tests"]:
            checks = [case for case in group.get("promql_expr_test", []) if about_record(case)]
            if checks or any(case.get("alertname") in alerts
                             for case in group.get("alert_rule_test", [])):
                copy = {key: value for key, value in group.items() if key != "promql_expr_test"}
                if checks:
                    copy["promql_expr_test"] = checks
                groups.append(copy)
        if groups:
            written = write_ordered(dict(doc, tests=groups), name, workdir, rule_docs, orders)
            for order_files, path in zip(files, written):
                order_files.append(path)
    return files


def unmodified_tests_pass(rule_files, test_files):
    rule_docs = {path.name: yaml.safe_load(path.read_text()) for path in rule_files}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        for name, doc in rule_docs.items():
            (workdir / name).write_text(yaml.safe_dump(doc, sort_keys=False))
        files_by_order = [[], []]
        for test in test_files:
            written = write_ordered(yaml.safe_load(test.read_text()), test.name, workdir, rule_docs)
            for order_files, path in zip(files_by_order, written):
                order_files.append(path)
        return passes_in_every_order(files_by_order)


def run_mutants(rule_files, test_files, only=None, workers=2):
    """Returns (mutants tried, descriptions of the mutants that survived)."""
    originals = {path: yaml.safe_load(path.read_text()) for path in rule_files}
    test_docs = {test.name: yaml.safe_load(test.read_text()) for test in test_files}
    sensitive = order_sensitive(rule_files)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []  # (description, test files) per mutant, each in its own directory

        def add(path, g, r, field, value, alerts, description, record=None):
            if only is not None and not re.search(only, description):
                return
            workdir = pathlib.Path(tmp) / str(len(jobs))
            workdir.mkdir()
            rule_docs = {}
            for other, doc in originals.items():
                if other == path:
                    doc = yaml.safe_load(yaml.safe_dump(doc))
                    doc["groups"][g]["rules"][r][field] = value
                (workdir / other.name).write_text(yaml.safe_dump(doc, sort_keys=False))
                rule_docs[other.name] = doc
            # Only the test groups about the affected alerts run, so the check stays fast.
            orders = 2 if alerts & sensitive or record in sensitive else 1
            tests = [[] for _ in range(orders)]
            for other in originals:
                written = tests_for_alerts(test_docs, alerts, other.name, workdir, rule_docs, orders,
                                           record)
                for order_files, more in zip(tests, written):
                    order_files.extend(more)
            jobs.append((description, tests))

        for path, g, r, rule in alert_rules(rule_files):
            severity = rule.get("labels", {}).get("severity")
            for label, field, value in rule_mutants(rule):
                add(path, g, r, field, value, {rule["alert"]}, f"{rule['alert']} ({severity}) {label}")
        for path, g, r, rule in all_rules(rule_files, "record"):
            alerts = readers(rule_files, rule["record"])
            for label, mutated in record_window_mutants(rule["expr"]):
                add(path, g, r, "expr", mutated, alerts, f"record {rule['record']} {label}",
                    rule["record"])
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            # Killed means failed in every group order: a mutant one order lets through is untested.
            survived = pool.map(lambda job: not job[1][0] or passes_in_some_order(job[1]), jobs)
            survivors = [job[0] for job, alive in zip(jobs, survived) if alive]
    return len(jobs), survivors


def main():
    repo = pathlib.Path(sys.argv[1]).resolve()
    rule_files = sorted((repo / "manifests/monitoring").glob("*.rules.yaml"))
    test_files = sorted((repo / "tests/monitoring").glob("*.test.yaml"))
    if not rule_files or not test_files:
        sys.exit("no rule files or no promtool tests found")
    if not unmodified_tests_pass(rule_files, test_files):
        sys.exit("promtool tests fail on the unmodified rules in some group order; fix them first")
    problems = check_contract(repo, rule_files) + check_coverage(repo, rule_files, test_files)
    for problem in problems:
        print(f"contract: {problem}")
    only = sys.argv[2] if len(sys.argv) > 2 else None
    tried, survivors = run_mutants(rule_files, test_files, only)
    for survivor in survivors:
        print(f"mutant survived (tests did not notice): {survivor}")
    print(f"alert contract: {len(problems)} problems; mutants: {tried} tried, "
          f"{tried - len(survivors)} killed, {len(survivors)} survived")
    sys.exit(1 if problems or survivors else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks manifests/logging/fluent-bit.yaml for the properties ANSWERS.md (Q4) relies on.

Fluent Bit itself cannot be installed from this project's package sources, so its own --dry-run cannot
run here; this check pins the settings that the PCI DSS mapping depends on, so that an edit which
quietly breaks one of them fails the build. The Lua filters are tested for real by app_logs_test.lua.

Usage: check_config.py REPO_ROOT
"""

import pathlib
import re
import sys

import yaml


def plugins(config, section):
    return config["pipeline"].get(section, [])


def find(items, name):
    return [item for item in items if item.get("name") == name]


def check(config, lua_source, alert_rules):
    problems = []

    def require(condition, message):
        if not condition:
            problems.append(message)

    service = config.get("service", {})
    require(service.get("storage.path"), "service.storage.path must be set (disk buffering)")

    inputs = plugins(config, "inputs")
    tails = find(inputs, "tail")
    containers = [t for t in tails if t.get("path") == "/var/log/containers/*.log"]
    require(len(containers) == 1, "exactly one tail input for container logs expected")
    for tail in containers:
        require("cri" in str(tail.get("multiline.parser", "")), "tail input must parse the CRI format")
    require(any("/var/log/kubernetes/audit/" in str(t.get("path")) for t in tails),
            "the API server audit log input is missing (PCI DSS 10.2.1)")
    require(any("SYSLOG_FACILITY=10" in map(str, i.get("systemd_filter", []))
                for i in find(inputs, "systemd")), "the node auth log input is missing (10.2.1)")
    for item in inputs:
        require(item.get("storage.type") == "filesystem", f"input {item.get('tag')} must buffer on disk")
        require(item.get("db"), f"input {item.get('tag')} needs an offset db to resume without loss")

    kube = find(plugins(config, "filters"), "kubernetes")
    require(len(kube) == 1, "exactly one kubernetes filter expected")
    for k in kube:
        require(k.get("merge_log") is True, "kubernetes filter must merge the JSON line")
        require(k.get("keep_log") is False, "keep_log must be off: the raw line would keep unmasked PANs")
        require(k.get("k8s-logging.exclude") is False, "pods must not be able to opt out of logging")

    lua_filters = find(plugins(config, "filters"), "lua")
    calls = [f.get("call") for f in lua_filters]
    require("mask_pan" in calls, "the PAN-masking Lua filter is missing")
    require(any(f.get("call") == "mask_pan" and f.get("match") == "*" for f in lua_filters),
            "mask_pan must see every input's records")
    for f in lua_filters:
        require(f.get("script") == "app-logs.lua", f"unexpected Lua script {f.get('script')}")
        require(re.search(rf"^{f.get('call')} = ", lua_source, re.M),
                f"Lua function {f.get('call')} is not exported as a global")
    filter_names = [f.get("name") for f in plugins(config, "filters")]
    require(filter_names.index("kubernetes") < filter_names.index("lua"),
            "the Lua filters must run after the kubernetes filter has merged the JSON")

    outputs = plugins(config, "outputs")
    require(len(find(outputs, "opensearch")) == 1, "hot store output (opensearch) missing")
    archives = find(outputs, "s3")
    require(len(archives) == 1, "archive output (s3) missing")
    for s3 in archives:
        require(s3.get("send_content_md5") is True, "Object Lock buckets reject uploads without Content-MD5")
        require(s3.get("compression") == "gzip", "archive should be compressed")
    for out in outputs:
        require(out.get("match") == "*", f"output {out.get('name')} must take every input's records")
        require(out.get("retry_limit") == "no_limits", f"output {out.get('name')} must not drop after retries")
    # The log pipeline alerts select outputs by alias; a renamed output would silence them.
    aliases = {out.get("alias") for out in outputs}
    for alias in sorted(set(re.findall(r'name="([\w-]+)"', alert_rules))):
        require(alias in aliases, f"logging.rules.yaml watches output {alias!r}, which fluent-bit.yaml lacks")
    return problems


def main():
    repo = pathlib.Path(sys.argv[1]).resolve()
    logging_dir = repo / "manifests/logging"
    config = yaml.safe_load((logging_dir / "fluent-bit.yaml").read_text())
    problems = check(config, (logging_dir / "app-logs.lua").read_text(),
                     (repo / "manifests/monitoring/logging.rules.yaml").read_text())
    for problem in problems:
        print(f"fluent-bit.yaml: {problem}")
    print(f"fluent-bit.yaml: {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

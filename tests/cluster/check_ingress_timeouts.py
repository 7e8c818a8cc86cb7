#!/usr/bin/env python3
"""Fails when the ingress would cut a request the apps' contract allows, or race their keep-alive.

Usage:
  check_ingress_timeouts.py REPO_ROOT < ARGS.json

ARGS.json is the Traefik container's argument list, as `kubectl get deployment traefik -o
jsonpath='{.spec.template.spec.containers[0].args}'` prints it. The contract comes from the apps'
sources (apps/README.md documents it): the longest stream and sleep, and the keep-alive timeout
after which an app closes an idle connection.

Each timeout must be set explicitly (a default can change between Traefik releases) and be
either 0 (none) or at least the longest request; the backend pool's idle timeout must stay below
the apps' keep-alive. Prints one line per finding; exits 0 when there are none, 1 otherwise, 2 on
bad input.
"""

import json
import pathlib
import re
import sys

# Traefik v3's defaults, in seconds, for a timeout left unset (`traefik --help`).
DEFAULTS = {
    "entryPoints.web.transport.respondingTimeouts.readTimeout": 60,
    "entryPoints.web.transport.respondingTimeouts.writeTimeout": 0,
    "serversTransport.forwardingTimeouts.responseHeaderTimeout": 0,
    "serversTransport.forwardingTimeouts.idleConnTimeout": 90,
}
REQUEST_TIMEOUTS = list(DEFAULTS)[:3]
POOL_IDLE = list(DEFAULTS)[3]

# (file, pattern, seconds per unit) for each contract figure, in both apps.
CONTRACT = {
    "longest stream": [
        ("apps/go-app/internal/server/app.go", r"maxStreamSeconds\s*=\s*(\d+)", 1),
        ("apps/node-app/src/app.js", r"MAX_STREAM_SECONDS\s*=\s*(\d+)", 1),
    ],
    "longest sleep": [
        ("apps/go-app/internal/config/config.go", r"MaxSleep\s*=\s*(\d+)\s*\*\s*time.Millisecond", 0.001),
        ("apps/node-app/src/config.js", r"MAX_SLEEP_MS\s*=\s*(\d+)", 0.001),
    ],
    "keep-alive": [
        ("apps/go-app/internal/server/drain.go", r"serverIdleTime\s*=\s*(\d+)\s*\*\s*time.Second", 1),
        ("apps/node-app/src/app.js", r"KEEP_ALIVE_TIMEOUT_MS\s*=\s*(\d+)", 0.001),
    ],
}


def seconds(text):
    """A Traefik duration: a bare number of seconds or a Go duration such as 2m5s."""
    if re.fullmatch(r"\d+", text):
        return int(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * unit[u] for n, u in parts)


def contract(root):
    figures = {}
    for name, sources in CONTRACT.items():
        values = []
        for path, pattern, scale in sources:
            match = re.search(pattern, (root / path).read_text())
            if not match:
                raise ValueError(f"{path}: no {name} ({pattern})")
            values.append(int(match.group(1)) * scale)
        figures[name] = values
    return figures


def findings(args, figures):
    given = {}
    for arg in args:
        key, _, value = arg.lstrip("-").partition("=")
        given[key.lower()] = value
    longest = max(figures["longest stream"] + figures["longest sleep"])
    out = []
    for key in DEFAULTS:
        if key.lower() not in given:
            out.append(f"--{key} is not set: Traefik's default ({DEFAULTS[key]} s) applies")
    value = {k: seconds(given[k.lower()]) if k.lower() in given else d for k, d in DEFAULTS.items()}
    for key in REQUEST_TIMEOUTS:
        if 0 < value[key] < longest:
            out.append(f"--{key}={value[key]:g}s cuts requests the contract allows (up to {longest:g} s)")
    keep_alive = min(figures["keep-alive"])
    if value[POOL_IDLE] == 0 or value[POOL_IDLE] >= keep_alive:
        out.append(f"--{POOL_IDLE}={value[POOL_IDLE]:g}s is not below the apps' keep-alive "
                   f"({keep_alive:g} s): Traefik may reuse a connection the app is closing")
    return out, longest


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        args = json.load(sys.stdin)
        figures = contract(pathlib.Path(sys.argv[1]))
        out, longest = findings(args, figures)
    except (OSError, ValueError) as error:
        print(f"check_ingress_timeouts: {error}", file=sys.stderr)
        return 2
    for line in out:
        print(line)
    if not out:
        print(f"ingress timeouts hold the contract's longest request ({longest:g} s) and stay "
              f"below the apps' keep-alive ({min(figures['keep-alive']):g} s)")
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Helpers for the zero-downtime e2e gate (scripts/test-e2e, scripts/bench-e2e) and its scenarios
# (tests/e2e/scenarios.sh). Source it after scripts/lib/common.sh; do not run it.
#
# Settings (environment):
#   E2E_OUT             reports and charts (default <repo>/out/e2e)
#   E2E_REGISTRY        registry the app images are pushed to (default 127.0.0.1:5000)
#   E2E_INGRESS_URL     the ingress controller from the host (default http://127.0.0.1:8088)
#   E2E_LONG_SLEEP      ?sleep= of the probe's long requests (default 15s)
#   E2E_STREAM_SECONDS  length of the probe's streams (default 20)
#   E2E_STEADY_SECONDS  load before a change and after the last old pod is gone (default 4)
#   E2E_PROBE_RATE      --rate of each scenario probe: short requests/s (default 0: 10 ms apart
#                       per worker, 800/s per probe)
#   E2E_TIMEOUT_SECONDS bound for one rollout, and for old pods to finish (default 180)
#   E2E_MIN_REQUESTS    --min-requests of the deploys that must not drop a request: fewer judged
#                       by deploy-apps' own probe prove too little (default 1000; the gate's
#                       go-app rollout judges about 40,000)
#   DEPLOY_APPS         the deployer command (default: the repository's ./deploy-apps wrapper)
#   E2E_IMAGES          prebuilt images to test instead of building them, one APP=REF@sha256:...
#                       per line (CI: the index digests the images job pushed to GHCR). Each index
#                       is copied into E2E_REGISTRY with skopeo --preserve-digests, so the gate runs
#                       exactly the bytes the deploy will promote.

[[ -n "${_DEPLOY_APPS_E2E_SH:-}" ]] && return 0
readonly _DEPLOY_APPS_E2E_SH=1

readonly E2E_OUT="${E2E_OUT:-${REPO_ROOT}/out/e2e}"
readonly E2E_REGISTRY="${E2E_REGISTRY:-127.0.0.1:5000}"
readonly E2E_INGRESS_URL="${E2E_INGRESS_URL:-http://127.0.0.1:8088}"
readonly E2E_LONG_SLEEP="${E2E_LONG_SLEEP:-15s}"
readonly E2E_STREAM_SECONDS="${E2E_STREAM_SECONDS:-20}"
readonly E2E_STEADY_SECONDS="${E2E_STEADY_SECONDS:-4}"
readonly E2E_PROBE_RATE="${E2E_PROBE_RATE:-0}"
readonly E2E_TIMEOUT_SECONDS="${E2E_TIMEOUT_SECONDS:-180}"
readonly E2E_MIN_REQUESTS="${E2E_MIN_REQUESTS:-1000}"
# The safeguards the control run removes: no drain pause (neither the kubelet's preStop sleep nor
# the app's delay), the app dies on SIGTERM without draining, and the Deployment may take a
# serving pod away before its replacement is ready. The short shutdown timeout only bounds how
# long a control pod lingers (its grace period becomes 0 + 0 + 5 + 5 s): an app that is PID 1 may
# outlive the SIGTERM it re-raises.
readonly E2E_UNSAFE_SETTINGS=(
  --set shutdown.preStopSleepSeconds=0
  --set shutdown.drainDelaySeconds=0
  --set shutdown.mode=immediate
  --set rollout.maxUnavailable=1
  --set shutdown.appShutdownTimeoutSeconds=5
)
# Every deploy routes each app both ways (routing.kind in manifests/values.yaml): the Ingress on
# <app>.localhost and a Gateway API HTTPRoute on Gateway traefik/traefik at <app>.gateway.localhost,
# so a scenario can probe the Gateway path beside the Ingress path (E2E_GATEWAY_PATH).
# shellcheck disable=SC2016 # ${app} is a placeholder for deploy-apps, not for the shell
readonly E2E_ROUTING_SETTINGS=(
  --set routing.kind=both
  --set 'gateway.host=${app}.gateway.localhost'
)
# More --set PATH=VALUE for every deploy, e.g. a benchmark's rollout.maxSurge=2 (scripts/bench-e2e
# --set); empty for the gate.
E2E_EXTRA_SETTINGS=()
# The ./deploy-apps wrapper builds the binary when needed; e2e_build_deployer runs that once.
readonly E2E_DEPLOY_APPS="${DEPLOY_APPS:-${REPO_ROOT}/deploy-apps}"

# The apps' FAULT seam (crash, unready) for the next deploys; empty for a healthy release.
E2E_FAULT=""
# An image digest the next deploys use instead of the version's tag (a missing image); or empty.
E2E_DIGEST=""
# Image tag suffix of this build of both apps (set by e2e_publish_images).
E2E_BUILD_ID=""
# PIDs of the background probes and pod watches of the scenario running now.
E2E_BACKGROUND_PIDS=()
# PIDs of the edge-of-budget requests of the scenario running now; they are waited for, not stopped.
E2E_EDGE_PIDS=()

# kubectl of the cluster in use (scripts/cluster picks the provider).
e2e_kubectl() {
  "${REPO_ROOT}/scripts/cluster" kubectl "$@"
}

# Builds deploy-apps when needed, so later calls (some in the background) start at once.
e2e_build_deployer() {
  "${E2E_DEPLOY_APPS}" --version >/dev/null
  "${E2E_DEPLOY_APPS}" probe --help >/dev/null 2>&1 \
    || die "this deploy-apps has no 'probe' subcommand; the e2e gate needs it"
}

# Builds both app images, pushes them, and publishes the versions the scenarios deploy: the same
# image under the tags v1-<id>, v2-<id>, v3-<id> (<id> from both digests), because the deployer
# uses its --tag as the image tag and as APP_VERSION. Tags never move: pods use IfNotPresent.
# Globals: E2E_BUILD_ID (set).
e2e_publish_images() {
  if [[ -n "${E2E_IMAGES:-}" ]]; then
    e2e_copy_images
    return
  fi
  local built build_log="${E2E_OUT}/build-app-images.log"
  mkdir -p "${E2E_OUT}"
  if ! built="$("${REPO_ROOT}/scripts/build-app-images" --push "${E2E_REGISTRY}" 2>"${build_log}")"; then
    tail -n 30 "${build_log}" >&2
    die "building the app images failed (log: ${build_log})"
  fi
  E2E_BUILD_ID="$(printf '%s\n' "${built}" | sha256sum | cut -c1-10)"
  local docker line app ref version
  docker="$(docker_cli)"
  while IFS= read -r line; do
    app="${line%%=*}"
    ref="${line#*=}"
    [[ "${ref}" == "${E2E_REGISTRY}/${app}@sha256:"* ]] || die "unexpected image line: ${line}"
    for version in v1 v2 v3; do
      "${docker}" tag "${ref}" "${E2E_REGISTRY}/${app}:$(e2e_version "${version}")"
      "${docker}" push --quiet "${E2E_REGISTRY}/${app}:$(e2e_version "${version}")" >/dev/null \
        || die "pushing ${app} $(e2e_version "${version}") failed"
    done
  done <<<"${built}"
  log "images published as v1/v2/v3-${E2E_BUILD_ID}"
}

# E2E_IMAGES: copies each given image index, digest unchanged, to E2E_REGISTRY under the v1/v2/v3
# tags. skopeo reads registry credentials from the docker config (CI logs in to GHCR first).
# Globals: E2E_BUILD_ID (set).
e2e_copy_images() {
  ensure_packages skopeo
  local apps=() listed
  read_apps apps
  for listed in "${apps[@]}"; do
    grep -q "^${listed}=" <<<"${E2E_IMAGES}" \
      || die "E2E_IMAGES has no ${listed}=REF@sha256:... line (every app of scripts/list-apps needs one)"
  done
  E2E_BUILD_ID="$(printf '%s\n' "${E2E_IMAGES}" | sha256sum | cut -c1-10)"
  local line app ref digest version copied
  while IFS= read -r line; do
    [[ -n "${line}" ]] || continue
    app="${line%%=*}"
    ref="${line#*=}"
    digest="${ref##*@}"
    [[ "${digest}" =~ ^sha256:[0-9a-f]{64}$ ]] || die "E2E_IMAGES: ${line}: want APP=REF@sha256:<64 hex>"
    for version in v1 v2 v3; do
      skopeo copy --quiet --all --preserve-digests --dest-tls-verify=false \
        "docker://${ref}" "docker://${E2E_REGISTRY}/${app}:$(e2e_version "${version}")" >&2 \
        || die "copying ${ref} to ${E2E_REGISTRY} failed"
    done
    copied="$(skopeo inspect --raw --tls-verify=false \
      "docker://${E2E_REGISTRY}/${app}:$(e2e_version v1)" | sha256sum | cut -d' ' -f1)"
    [[ "sha256:${copied}" == "${digest}" ]] \
      || die "${app}: the copy's digest is sha256:${copied}, not ${digest}"
    log "${app}: testing ${ref} (copied to ${E2E_REGISTRY}, same digest)"
  done <<<"${E2E_IMAGES}"
}

# Prints the full version (image tag and APP_VERSION) for v1, v2 or v3.
e2e_version() {
  [[ -n "${E2E_BUILD_ID}" ]] || die "internal: e2e_publish_images has not run"
  printf '%s-%s\n' "$1" "${E2E_BUILD_ID}"
}

# Deploys apps at a version with the deployer (never kubectl apply). The images were published by
# e2e_publish_images, so nothing is built. The deployer's own in-flight checks stay on unless a
# --no-verify is passed. Arguments: v1|v2|v3, safe|unsafe, then deploy-apps flags and the apps.
e2e_deploy() {
  local version="$1" safety="$2"
  shift 2
  local kubeconfig
  kubeconfig="$("${REPO_ROOT}/scripts/cluster" kubeconfig)" || die "no kubeconfig for the cluster"
  local args=(--kubeconfig "${kubeconfig}" --no-build --tag "$(e2e_version "${version}")"
    "${E2E_ROUTING_SETTINGS[@]}" "${E2E_EXTRA_SETTINGS[@]}")
  [[ "${safety}" == unsafe ]] && args+=("${E2E_UNSAFE_SETTINGS[@]}")
  [[ -n "${E2E_FAULT}" ]] && args+=(--set "fault=${E2E_FAULT}")
  [[ -n "${E2E_DIGEST}" ]] && args+=(--digest "${E2E_DIGEST}")
  "${E2E_DEPLOY_APPS}" "${args[@]}" "$@" >&2
}

# Waits until an app's Deployment has rolled out. Arguments: app.
e2e_wait_rollout() {
  e2e_kubectl -n "$1" rollout status "deployment/$1" --timeout "${E2E_TIMEOUT_SECONDS}s" >&2
}

# Waits until an app has no terminating pod: after a rollout, until the old pods have drained and
# exited. Arguments: app.
e2e_wait_settled() {
  local app="$1" deadline=$((SECONDS + E2E_TIMEOUT_SECONDS)) terminating
  while ((SECONDS < deadline)); do
    terminating="$(e2e_kubectl -n "${app}" get pods \
      -o 'jsonpath={.items[*].metadata.deletionTimestamp}')" || terminating="?"
    [[ -z "${terminating}" ]] && return 0
    sleep 0.5
  done
  die "${app}: pods still terminating after ${E2E_TIMEOUT_SECONDS}s"
}

# Prints the app Service's URL: its ClusterIP, which kube-proxy makes reachable from the host.
e2e_service_url() {
  local ip
  ip="$(e2e_kubectl -n "$1" get service "$1" -o 'jsonpath={.spec.clusterIP}')"
  [[ -n "${ip}" ]] || die "$1: Service has no ClusterIP"
  printf 'http://%s\n' "${ip}"
}

# Waits until a URL answers 200 (the Service through kube-proxy, a new Ingress through Traefik).
# Arguments: URL, Host header ("" for none).
e2e_wait_answers() {
  local url="$1" host="$2" deadline=$((SECONDS + 60))
  local args=(--silent --output /dev/null --max-time 2 --write-out '%{http_code}')
  [[ -n "${host}" ]] && args+=(--header "Host: ${host}")
  while ((SECONDS < deadline)); do
    [[ "$(curl "${args[@]}" "${url}/" 2>/dev/null)" == 200 ]] && return 0
    sleep 1
  done
  die "${url} (Host ${host:-default}) does not answer 200 from this machine"
}

# Fails when an Ingress in another namespace claims the app's host: Traefik would send part of the
# host's traffic there (e.g. another test's leftover app), and its 503s are not the rollout's.
# Arguments: app.
e2e_require_own_ingress_host() {
  local app="$1" claims others
  claims="$(e2e_kubectl get ingress --all-namespaces \
    -o 'jsonpath={range .items[*]}{.metadata.namespace}{" "}{.spec.rules[*].host}{"\n"}{end}')" \
    || die "cannot list Ingresses"
  others="$(awk -v app="${app}" -v host="${app}.localhost" \
    '$1 != app { for (i = 2; i <= NF; i++) if ($i == host) print $1 }' <<<"${claims}")"
  [[ -z "${others}" ]] || die "${app}.localhost is also routed by Ingresses in namespace(s): \
$(tr '\n' ' ' <<<"${others}")- remove them (or give them another host) before the e2e gate"
}

# Prints the host of an app's HTTPRoute (E2E_ROUTING_SETTINGS). Arguments: app.
e2e_gateway_host() {
  printf '%s.gateway.localhost\n' "$1"
}

# Fails when an HTTPRoute in another namespace claims the app's Gateway host, for the same reason
# as e2e_require_own_ingress_host. Arguments: app.
e2e_require_own_gateway_host() {
  local app="$1" claims others
  claims="$(e2e_kubectl get httproutes --all-namespaces \
    -o 'jsonpath={range .items[*]}{.metadata.namespace}{" "}{.spec.hostnames[*]}{"\n"}{end}')" \
    || die "cannot list HTTPRoutes (are the Gateway API CRDs installed? scripts/cluster up)"
  others="$(awk -v app="${app}" -v host="$(e2e_gateway_host "${app}")" \
    '$1 != app { for (i = 2; i <= NF; i++) if ($i == host) print $1 }' <<<"${claims}")"
  [[ -z "${others}" ]] || die "$(e2e_gateway_host "${app}") is also routed by HTTPRoutes in \
namespace(s): $(tr '\n' ' ' <<<"${others}")- remove them before the e2e gate"
}

# Records a moment of the scenario. Arguments: marks file, name.
e2e_mark() {
  printf '%s %s\n' "$2" "$(date +%s.%N)" >>"$1"
}

# Starts a probe in the background; the scenario stops it with e2e_stop_background.
# Arguments: output prefix (gets .json, .png, .txt), URL, Host header ("" for none).
e2e_start_probe() {
  local prefix="$1" url="$2" host="$3"
  local args=(probe "${url}" --duration 600s --json "${prefix}.json" --chart "${prefix}.png"
    --long-sleep "${E2E_LONG_SLEEP}" --stream-seconds "${E2E_STREAM_SECONDS}"
    --rate "${E2E_PROBE_RATE}")
  [[ -n "${host}" ]] && args+=(--host "${host}")
  "${E2E_DEPLOY_APPS}" "${args[@]}" >"${prefix}.txt" 2>&1 &
  E2E_BACKGROUND_PIDS+=("$!")
}

# Watches an app's pods in the background and snapshots them (before.json) into a directory.
# Arguments: app, directory.
e2e_start_pod_watch() {
  local app="$1" dir="$2"
  mkdir -p "${dir}"
  e2e_kubectl -n "${app}" get pods -o json >"${dir}/before.json"
  # setsid: its own process group, so stopping it also stops the kubectl that scripts/cluster runs.
  setsid "${REPO_ROOT}/scripts/cluster" kubectl -n "${app}" get pods --watch -o json \
    --output-watch-events >"${dir}/watch.json" 2>"${dir}/watch.err" &
  E2E_BACKGROUND_PIDS+=("-$!")
}

# Snapshots an app's pods after a scenario (after.json). Arguments: app, directory.
e2e_snapshot_pods() {
  e2e_kubectl -n "$1" get pods -o json >"$2/after.json"
}

# Stops the probes (SIGTERM: they stop starting requests and let those in flight finish) and the
# pod watches (their process groups), then waits for them. Returns non-zero when a probe could not
# run (exit 2, or a crash); a probe that saw failed requests is judged by verdict.py instead.
e2e_stop_background() {
  local pid rc=0 status
  for pid in "${E2E_BACKGROUND_PIDS[@]}"; do
    kill -TERM -- "${pid}" 2>/dev/null || true
  done
  for pid in "${E2E_BACKGROUND_PIDS[@]}"; do
    status=0
    wait "${pid#-}" 2>/dev/null || status=$?
    # Probe: 0 clean, 1 failed requests, 130 stopped early without failures. Watch: killed (143).
    if [[ "${pid}" != -* ]] && ((status != 0 && status != 1 && status != 130)); then
      err "probe (pid ${pid}) exited ${status}"
      rc=1
    fi
  done
  E2E_BACKGROUND_PIDS=()
  return "${rc}"
}

# The edge of the contract: the longest stream the shutdown budget allows (at most the contract's
# 120 s) and the longest sleep (60 s). Started just before a rollout, each must complete on the
# old version, through the Service and through the ingress.
e2e_edge_stream_seconds() {
  local budget margin
  budget="$(shared_value_number shutdown appShutdownTimeoutSeconds)"
  margin="$(shared_value_number shutdown marginSeconds)"
  printf '%s\n' "$(((budget - margin) < 120 ? budget - margin : 120))"
}

# Starts the edge requests for one app in the background, one curl each, with no retry.
# Arguments: directory, app, Service URL.
e2e_start_edge_requests() {
  local dir="$1" app="$2" service_url="$3" seconds via url host kind request
  seconds="$(e2e_edge_stream_seconds)"
  for via in service ingress; do
    url="${service_url}" host=""
    [[ "${via}" == ingress ]] && url="${E2E_INGRESS_URL}" host="${app}.localhost"
    for kind in stream sleep; do
      request="stream?seconds=${seconds}"
      [[ "${kind}" == sleep ]] && request="?sleep=60000"
      local out="${dir}/edge-${app}-${via}-${kind}"
      printf '%s %s %s\n' "${app}" "${via}" "/${request}" >"${out}.what"
      (
        args=(--silent --show-error --no-buffer --max-time 300 --output "${out}.body"
          --dump-header "${out}.headers" --write-out '%{http_code} %{time_total}')
        [[ -n "${host}" ]] && args+=(--header "Host: ${host}")
        rc=0
        curl "${args[@]}" "${url}/${request}" >"${out}.result" 2>"${out}.err" || rc=$?
        printf ' %s\n' "${rc}" >>"${out}.result"
      ) &
      E2E_EDGE_PIDS+=("$!")
    done
  done
}

# Waits for the edge requests and judges them: each must end with curl exit 0, status 200, the
# whole body, and the old version's header. Prints one row each. Arguments: directory, old version.
e2e_check_edge_requests() {
  local dir="$1" old="$2" pid what code secs rc version body want failed=0 row
  for pid in "${E2E_EDGE_PIDS[@]}"; do
    wait "${pid}" || true
  done
  E2E_EDGE_PIDS=()
  printf '%-9s %-8s %-20s %-6s %-8s %s\n' APP VIA REQUEST RESULT SECONDS VERSION
  for what in "${dir}"/edge-*.what; do
    [[ -e "${what}" ]] || continue
    local out="${what%.what}" app via request
    read -r app via request <"${what}"
    read -r code secs rc <"${out}.result" || true
    version="$(tr -d '\r' <"${out}.headers" 2>/dev/null | awk -F': ' 'tolower($1) == "x-app-version" {print $2}')"
    body="$(cat "${out}.body" 2>/dev/null || true)"
    if [[ "${request}" == /stream* ]]; then
      local n="${request##*=}"
      want="line ${n} of ${n}"
      [[ "${body}" == *"${want}" && "$(grep -c '^line ' <<<"${body}")" == "${n}" ]] || body=""
    else
      [[ "${body}" == "Hi!" ]] || body=""
    fi
    row="ok"
    if [[ "${rc:-}" != 0 || "${code:-}" != 200 || -z "${body}" || "${version}" != "${old}" ]]; then
      row="FAILED"
      failed=$((failed + 1))
    fi
    printf '%-9s %-8s %-20s %-6s %-8s %s\n' "${app}" "${via}" "${request}" "${row}" \
      "${secs:-?}" "${version:-none} (curl ${rc:-?}, HTTP ${code:-?}$([[ -s "${out}.err" ]] && printf ', %s' "$(head -c 120 "${out}.err")"))"
  done
  ((failed == 0)) || { err "${failed} edge-of-budget request(s) failed"; return 1; }
}

# The edge-request judge's own test, on made-up results: a whole stream on the old version passes;
# a truncated one, one from the new version and a 502 must each be a FAILED row.
e2e_edge_judge_self_test() {
  local dir rc=0 output
  dir="$(mktemp -d)"
  e2e_fake_edge() { # name, body, version, "code secs rc"
    printf 'app via /stream?seconds=3\n' >"${dir}/edge-$1.what"
    printf '%b' "$2" >"${dir}/edge-$1.body"
    printf 'HTTP/1.1 200 OK\r\nX-App-Version: %s\r\n\r\n' "$3" >"${dir}/edge-$1.headers"
    printf '%s\n' "$4" >"${dir}/edge-$1.result"
  }
  local whole='line 1 of 3\nline 2 of 3\nline 3 of 3\n'
  e2e_fake_edge a-whole "${whole}" v1 "200 3.0 0"
  e2e_fake_edge b-truncated 'line 1 of 3\n' v1 "200 1.0 18"
  e2e_fake_edge c-new-version "${whole}" v2 "200 3.0 0"
  e2e_fake_edge d-bad-gateway "" v1 "502 0.1 0"
  output="$(e2e_check_edge_requests "${dir}" v1 2>&1)" || rc=$?
  rm -rf "${dir}"
  [[ "${rc}" != 0 && "$(grep -c ' ok ' <<<"${output}")" == 1 \
    && "$(grep -c ' FAILED ' <<<"${output}")" == 3 ]] \
    || die "the edge-request judge misjudged made-up results (exit ${rc}):"$'\n'"${output}"
}

# Judges a scenario: tests/e2e/verdict.py with the scenario's reports. Arguments: its flags.
e2e_verdict() {
  python3 "${REPO_ROOT}/tests/e2e/verdict.py" "$@"
}

# The deployer's own zero-failure certificate of each app (issue 17 item 4) must agree with the
# gate: "passed" after a clean rollout; after a release rolled back, 0 failed requests and a failed
# result; after the control, "failed". A no-op writes none. Prints each certificate's line.
# Arguments: expectation (as verdict.py's), the deployer's report folder, then the apps.
e2e_check_certificates() {
  local expect="$1" dir="$2" app file rule rc=0
  shift 2
  case "${expect}" in
    zero-downtime) rule='.verdict == "passed" and .bound95 != null' ;;
    rolled-back) rule='.verdict == "failed" and .checks[0].status == "passed"
      and (.checks[] | select(.name | startswith("rollout")) | .status) == "failed"' ;;
    failures) rule='.verdict == "failed"' ;;
    *) return 0 ;;
  esac
  for app in "$@"; do
    file="${dir}/${app}/certificate.json"
    if [[ ! -s "${file}" ]]; then
      err "${app}: the deployer wrote no certificate (${file})"
      rc=1
      continue
    fi
    jq -r '"certificate \(.app) \(.oldVersion) -> \(.newVersion): \(.verdict); "
      + "\(.requests.judged // 0) judged, \(.requests.failed // 0) failed; "
      + ([.checks[] | "\(.status) \(.name)"] | join(", "))' "${file}" >&2
    if ! jq -e "${rule}" "${file}" >/dev/null; then
      err "${app}: its certificate does not show what '${expect}' expects (${rule//$'\n'/ })"
      rc=1
    fi
  done
  return "${rc}"
}

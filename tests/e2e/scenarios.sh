#!/usr/bin/env bash
# The zero-downtime scenarios (issue 6), run by scripts/test-e2e and scripts/bench-e2e on the
# local cluster, whichever provider. Source it after scripts/lib/common.sh and scripts/lib/e2e.sh.
#
# Every scenario is: bring the apps to a known state, put them under the probe's mixed load through
# their Service and through the ingress (and, in scenarios 1 and 5, through the Gateway API:
# Gateway traefik/traefik -> the app's HTTPRoute -> its Service), make one change with the deployer,
# observe it with kubectl, and let tests/e2e/verdict.py judge the reports. Each prints its summary
# and returns non-zero when its expectation does not hold.
#
#   scenario_rollout APP         1. v1 -> v2 under load on all three paths: 0 failures, long-lived
#                                   requests finish on v1, old pods exit 0, then v2 only
#   scenario_both_apps APP...    2. the apps (every app: scripts/test-e2e passes scripts/list-apps)
#                                   in one deploy-apps call, v2 -> v3, all under load,
#                                   plus a 120 s stream and a 60 s request per app and path
#                                   started just before it: each completes on v2
#   scenario_broken APP FAULT    3. a release that crashes, never gets ready, or has no image
#                                   (FAULT crash, unready, missing-image): the deployer exits 1 and
#                                   rolls back, 0 failures, only the old version ever answers
#   scenario_noop APP...         4. redeploying what runs: 0 failures, same pods, 0 restarts
#   scenario_control APP         5. v1 -> v2 without the safeguards: the probes (Service, Ingress
#                                   and Gateway) MUST see failures, and the deployer's in-flight
#                                   checks must roll back (exit 1)
# On a cluster of several nodes (scripts/test-nodes):
#   scenario_drain APP           6. kubectl drain of a node (not node 1, which holds the ingress)
#                                   that runs one of APP's pods, in steady state: 0 failures, the
#                                   evicted pod exits 0, the budget holds (verdict "drained")
#   scenario_drain_rollout APP   7. the same drain E2E_DRAIN_DELAY seconds into a v2 -> v3 rollout:
#                                   0 failures, and the deploy either succeeds (zero-downtime) or
#                                   rolls back cleanly (rolled-back); the log says which
#   scenario_drain_control APP   8. scenario 6 without the safeguards (E2E_UNSAFE_SETTINGS): the
#                                   probes MUST see failures
#   scenario_drain_budget APP N  9. three pods packed on one node (the others cordoned while they
#                                   start), that node drained with the budget's maxUnavailable N:
#                                   with 1 (the manifests' value) as scenario 6; with 3 (the
#                                   control) the verdict MUST find the budget broken

# 1 while a scenario also sends the edge-of-budget requests (scenario_both_apps).
E2E_EDGE_REQUESTS=0
# 1 while a scenario also probes each app through the Gateway (scenario_rollout, scenario_control).
E2E_GATEWAY_PATH=0

# What a scenario changes under load: "deploy" (deploy-apps) or "drain" (kubectl drain of
# E2E_DRAIN_NODE). A deploy with E2E_DRAIN_NODE set also drains that node, E2E_DRAIN_DELAY
# seconds into the rollout.
E2E_CHANGE=deploy
E2E_DRAIN_NODE=""
E2E_DRAIN_DELAY="${E2E_DRAIN_DELAY:-6}"

# What each app runs now, "<version> <safe|unsafe>", to skip preparations that are not needed.
declare -A E2E_DEPLOYED=()

# Brings apps to a version (and safety) and waits until only its pods are left. One deploy-apps call
# for all of them. Arguments: v1|v2|v3, safe|unsafe, then the apps.
e2e_prepare() {
  local version="$1" safety="$2"
  shift 2
  local app todo=()
  for app in "$@"; do
    [[ "${E2E_DEPLOYED[${app}]:-}" == "${version} ${safety}" ]] || todo+=("${app}")
  done
  ((${#todo[@]} > 0)) || return 0
  log "preparing ${todo[*]}: ${version} (${safety})"
  # Preparing is not under test: replacing an unsafe version is what the control shows to fail.
  e2e_deploy "${version}" "${safety}" --no-verify "${todo[@]}" || die "deploying ${version} failed"
  for app in "${todo[@]}"; do
    e2e_wait_rollout "${app}" || die "${app}: ${version} did not roll out"
    e2e_wait_settled "${app}"
    E2E_DEPLOYED[${app}]="${version} ${safety}"
  done
}

# Runs one change under load and judges it.
# Arguments: scenario name, expectation (see verdict.py), from version, to version, safety, apps.
e2e_change_under_load() {
  local name="$1" expect="$2" from="$3" to="$4" safety="$5"
  shift 5
  local apps=("$@") dir="${E2E_OUT}/${name}" app new_version="${to}"
  log "scenario ${name}: ${from} -> ${to} (${safety}) of ${apps[*]} under load"
  rm -rf "${dir}"
  mkdir -p "${dir}"
  local marks="${dir}/marks.txt" verdict_args=() service_url
  : >"${marks}"
  for app in "${apps[@]}"; do
    e2e_require_own_ingress_host "${app}"
    service_url="$(e2e_service_url "${app}")"
    e2e_wait_answers "${service_url}" ""
    e2e_wait_answers "${E2E_INGRESS_URL}" "${app}.localhost"
    e2e_start_pod_watch "${app}" "${dir}/pods-${app}"
    e2e_start_probe "${dir}/service-${app}" "${service_url}" ""
    e2e_start_probe "${dir}/ingress-${app}" "${E2E_INGRESS_URL}" "${app}.localhost"
    verdict_args+=(--probe "service-${app}=${dir}/service-${app}.json"
      --probe "ingress-${app}=${dir}/ingress-${app}.json" --pods "${app}=${dir}/pods-${app}")
    if ((E2E_GATEWAY_PATH)); then
      e2e_require_own_gateway_host "${app}"
      e2e_wait_answers "${E2E_INGRESS_URL}" "$(e2e_gateway_host "${app}")"
      e2e_start_probe "${dir}/gateway-${app}" "${E2E_INGRESS_URL}" "$(e2e_gateway_host "${app}")"
      verdict_args+=(--probe "gateway-${app}=${dir}/gateway-${app}.json")
    fi
  done
  sleep "${E2E_STEADY_SECONDS}"
  if ((E2E_EDGE_REQUESTS)); then
    for app in "${apps[@]}"; do
      e2e_start_edge_requests "${dir}" "${app}" "$(e2e_service_url "${app}")"
    done
    sleep 1 # each is in its handler before the first old pod is deleted
  fi

  local changed=0 evidence=() drainer=""
  # A change that must drop nothing must also prove it on enough requests (its certificate).
  [[ "${expect}" == zero-downtime ]] && evidence=(--min-requests "${E2E_MIN_REQUESTS}")
  e2e_mark "${marks}" rollout-start
  if [[ "${E2E_CHANGE}" == drain ]]; then
    e2e_drain "${E2E_DRAIN_NODE}" 0 "${dir}/drain.log" || changed=$?
  else
    if [[ -n "${E2E_DRAIN_NODE}" ]]; then
      e2e_drain "${E2E_DRAIN_NODE}" "${E2E_DRAIN_DELAY}" "${dir}/drain.log" &
      drainer=$!
    fi
    e2e_deploy "${to}" "${safety}" --report-dir "${dir}/deployer" "${evidence[@]}" "${apps[@]}" \
      || changed=$?
    if [[ -n "${drainer}" ]]; then
      local drained=0
      wait "${drainer}" || drained=$?
      # A drain in the middle may fail the rollout's checks: a clean rollback is also an answer.
      # (Judged on the deploy's exit alone: a failed drain must not pass for a rollback.)
      if ((changed == 1)) && [[ "${expect}" == zero-downtime ]]; then
        log "scenario ${name}: the deployer rolled back during the drain; judging it as rolled-back"
        expect=rolled-back
        changed=0
        to="${from}"
        new_version="${from}"
      elif ((changed == 0)); then
        log "scenario ${name}: the deploy succeeded during the drain"
      fi
      if ((drained != 0)); then
        err "scenario ${name}: the drain failed; see ${dir}/drain.log"
        changed=1
      fi
    fi
  fi
  if [[ "${E2E_CHANGE}" == deploy && ( "${expect}" == rolled-back || "${expect}" == failures ) ]]; then
    # A broken release, or one the in-flight checks catch dropping requests: the deployer must
    # refuse it (exit 1) and have rolled it back when it returns.
    if ((changed == 1)); then
      changed=0
    else
      err "scenario ${name}: deploy-apps exited ${changed}, expected 1 (failed and rolled back)"
      changed=1
    fi
    to="${from}"
  fi
  for app in "${apps[@]}"; do
    ((changed == 0)) && { e2e_wait_rollout "${app}" || changed=$?; }
  done
  e2e_mark "${marks}" rollout-end
  for app in "${apps[@]}"; do
    ((changed == 0)) && { e2e_wait_settled "${app}" || changed=$?; }
    E2E_DEPLOYED[${app}]="${to} ${safety}"
  done
  e2e_mark "${marks}" old-pods-gone
  sleep "${E2E_STEADY_SECONDS}"

  local stopped=0 edges=0
  e2e_stop_background || stopped=$?
  if ((E2E_EDGE_REQUESTS)); then
    log "scenario ${name}: edge-of-budget requests (started before the rollout)"
    # Not in a pipeline: only this shell can wait for the requests it started.
    e2e_check_edge_requests "${dir}" "$(e2e_version "${from}")" >"${dir}/edge.txt" || edges=1
    cat "${dir}/edge.txt" >&2
  fi
  for app in "${apps[@]}"; do
    e2e_snapshot_pods "${app}" "${dir}/pods-${app}"
  done
  if ((changed != 0 || stopped != 0)); then
    err "scenario ${name}: the deploy or a probe failed to run; see ${dir}"
    return 1
  fi
  local judged=0
  e2e_verdict --scenario "${name}" --expect "${expect}" --old "$(e2e_version "${from}")" \
    --new "$(e2e_version "${new_version}")" --marks "${marks}" --out "${dir}/verdict.json" \
    "${verdict_args[@]}" || judged=$?
  if [[ "${E2E_CHANGE}" == deploy && ( -z "${drainer}" || "${expect}" == zero-downtime ) ]]; then
    e2e_check_certificates "${expect}" "${dir}/deployer" "${apps[@]}" || judged=1
  fi
  ((judged == 0 && edges == 0))
}

# Also probes the Gateway path (Gateway -> HTTPRoute -> Service) beside the other two.
scenario_rollout() {
  local app="$1" rc=0
  e2e_prepare v1 safe "${app}"
  E2E_GATEWAY_PATH=1
  e2e_change_under_load "rollout-${app}" zero-downtime v1 v2 safe "${app}" || rc=$?
  E2E_GATEWAY_PATH=0
  return "${rc}"
}

# Also sends the edge-of-budget requests (the longest stream and sleep the contract allows),
# started just before the rollout, through both paths, alongside the probes' load.
scenario_both_apps() {
  e2e_prepare v2 safe "$@"
  local rc=0
  E2E_EDGE_REQUESTS=1
  e2e_change_under_load both-apps zero-downtime v2 v3 safe "$@" || rc=$?
  E2E_EDGE_REQUESTS=0
  return "${rc}"
}

scenario_noop() {
  e2e_prepare v2 safe "$@"
  e2e_change_under_load noop no-op v2 v2 safe "$@"
}

scenario_broken() {
  local app="$1" fault="$2" version=v3
  e2e_prepare v2 safe "${app}"
  # shellcheck disable=SC2034 # E2E_FAULT and E2E_DIGEST are read by e2e_deploy (scripts/lib/e2e.sh)
  case "${fault}" in
    crash | unready) E2E_FAULT="${fault}" ;;
    missing-image) E2E_DIGEST="sha256:$(printf '0%.0s' {1..64})" ;;  # no such image anywhere
    *) die "unknown fault: ${fault}" ;;
  esac
  local rc=0
  e2e_change_under_load "broken-${fault}-${app}" rolled-back v2 "${version}" safe "${app}" || rc=$?
  # shellcheck disable=SC2034 # read by e2e_deploy (scripts/lib/e2e.sh)
  E2E_FAULT="" E2E_DIGEST=""
  return "${rc}"
}

# Also probes the Gateway path: a control that the Gateway probe would pass proves nothing for it.
scenario_control() {
  local app="$1" rc=0
  e2e_prepare v1 unsafe "${app}"
  E2E_GATEWAY_PATH=1
  e2e_change_under_load "control-${app}" failures v1 v2 unsafe "${app}" || rc=$?
  E2E_GATEWAY_PATH=0
  return "${rc}"
}

# Drains a node (kubectl drain: evictions through the PodDisruptionBudget), after a delay.
# Arguments: node, delay (s), log file.
e2e_drain() {
  local node="$1" delay="$2" log_file="$3"
  sleep "${delay}"
  log "draining node ${node}"
  e2e_kubectl drain "${node}" --ignore-daemonsets --delete-emptydir-data \
    --timeout "${E2E_TIMEOUT_SECONDS}s" >"${log_file}" 2>&1
}

# Prints a node other than node 1 (the ingress's) that runs a pod of APP.
e2e_drainable_node_of() {
  e2e_kubectl -n "$1" get pods -o 'jsonpath={range .items[*]}{.spec.nodeName}{"\n"}{end}' \
    | grep -vx '127\.0\.0\.1' | head -n 1
}

# Runs one drain scenario on NODE (default: a node of APP's other than node 1), then makes the
# node schedulable again. Arguments: change (drain or deploy), scenario name, expectation, from,
# to, safety, app, node or "".
e2e_drain_scenario() {
  local change="$1" name="$2" expect="$3" from="$4" to="$5" safety="$6" app="$7" node="$8" rc=0
  [[ -n "${node}" ]] || node="$(e2e_drainable_node_of "${app}")"
  [[ -n "${node}" ]] || die "${app}: no pod on a node other than node 1 to drain"
  E2E_CHANGE="${change}"
  E2E_DRAIN_NODE="${node}"
  e2e_change_under_load "${name}" "${expect}" "${from}" "${to}" "${safety}" "${app}" || rc=$?
  E2E_CHANGE=deploy
  E2E_DRAIN_NODE=""
  e2e_kubectl uncordon "${node}" >/dev/null || rc=1
  return "${rc}"
}

scenario_drain() {
  e2e_prepare v2 safe "$1"
  e2e_drain_scenario drain "drain-$1" drained v2 v2 safe "$1" ""
}

scenario_drain_rollout() {
  e2e_prepare v2 safe "$1"
  e2e_drain_scenario deploy "drain-rollout-$1" zero-downtime v2 v3 safe "$1" ""
}

scenario_drain_control() {
  e2e_prepare v2 unsafe "$1"
  e2e_drain_scenario drain "drain-control-$1" failures v2 v2 unsafe "$1" ""
}

# shellcheck disable=SC2034 # E2E_EXTRA_SETTINGS is read by e2e_deploy (scripts/lib/e2e.sh)
scenario_drain_budget() {
  local app="$1" budget="$2" node name="drain-budget-$2-$1" rc=0 others
  e2e_prepare v2 safe "${app}"
  node="$(e2e_drainable_node_of "${app}")"
  [[ -n "${node}" ]] || die "${app}: no pod on a node other than node 1"
  others="$(e2e_kubectl get nodes -o name | grep -vx "node/${node}")"
  # shellcheck disable=SC2086 # node names, one word each
  e2e_kubectl cordon ${others} >/dev/null
  E2E_EXTRA_SETTINGS=(--set replicas=3 --set "podDisruptionBudget.maxUnavailable=${budget}")
  log "packing three ${app} pods onto ${node} (budget maxUnavailable ${budget})"
  e2e_deploy v3 safe --no-verify "${app}" || rc=$?
  ((rc == 0)) && { e2e_wait_rollout "${app}" || rc=$?; }
  ((rc == 0)) && e2e_wait_settled "${app}"
  # shellcheck disable=SC2086
  e2e_kubectl uncordon ${others} >/dev/null
  ((rc == 0)) || { E2E_EXTRA_SETTINGS=(); return "${rc}"; }
  E2E_DEPLOYED[${app}]="v3 packed"
  e2e_drain_scenario drain "${name}" drained v3 v3 safe "${app}" "${node}" || rc=$?
  E2E_EXTRA_SETTINGS=()
  if ((budget == 1)); then
    return "${rc}"
  fi
  # The control: the verdict must have failed, on the budget.
  if ((rc != 0)) && jq -e '.findings | any(test("healthy pods during the drain"))' \
    "${E2E_OUT}/${name}/verdict.json" >/dev/null 2>&1; then
    log "scenario ${name}: the verdict found the budget broken, as a control must"
    return 0
  fi
  err "scenario ${name}: maxUnavailable ${budget} did not break the budget's check; it proves nothing"
  return 1
}

#!/usr/bin/env bash
# Shared helpers for every script under scripts/. Source it; do not run it.
#
# Settings (environment):
#   DEPLOY_APPS_CACHE  where expensive, version-keyed build outputs live (default /var/cache/deploy-apps).
#                      Never inside the repository.
#   DEPLOY_APPS_STATE  where the local cluster keeps its runtime state (default /var/lib/deploy-apps).
#   DOCKER             the docker CLI to use (default: Debian's /usr/bin/docker, which has BuildKit built in).

[[ -n "${_DEPLOY_APPS_COMMON_SH:-}" ]] && return 0
readonly _DEPLOY_APPS_COMMON_SH=1

_common_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# A caller (e.g. the ./deploy-apps wrapper) may already hold the same REPO_ROOT, even read-only.
if [[ "${REPO_ROOT:-}" != "${_common_repo_root}" ]]; then
  REPO_ROOT="${_common_repo_root}"
  # shellcheck disable=SC2034 # used by the scripts that source this file
  readonly REPO_ROOT
fi
unset _common_repo_root
readonly DEPLOY_APPS_CACHE="${DEPLOY_APPS_CACHE:-/var/cache/deploy-apps}"
readonly DEPLOY_APPS_STATE="${DEPLOY_APPS_STATE:-/var/lib/deploy-apps}"

# Writes a timestamped message to stderr.
log() {
  printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

# Writes a timestamped error to stderr.
err() {
  printf '[%s] ERROR: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

# Prints an error and exits non-zero.
die() {
  err "$@"
  exit 1
}

# Runs a command, logging its name and how long it took.
# Arguments: a label, then the command and its arguments.
timed() {
  local label="$1"
  shift
  local start
  start="$(date +%s)"
  log "${label}..."
  "$@"
  local rc=$?
  log "${label}: done in $(($(date +%s) - start))s (exit ${rc})"
  return "${rc}"
}

# Deletes a namespace and waits until it is gone, its workloads first. Once the namespace
# controller finds pods it waits about their grace period (140 s for the apps) before it looks
# again, though they exit within their 10 s drain: measured, 81 s for go-app's namespace alone,
# 17 s with its Deployments deleted (in the foreground) first.
# Arguments: the namespace, a timeout (e.g. 180s), then the command that runs kubectl.
delete_namespace_and_wait() {
  local namespace="$1" timeout="$2"
  shift 2
  "$@" -n "${namespace}" delete deployments,replicasets,pods --all --cascade=foreground \
    --wait=true --timeout="${timeout}" >/dev/null 2>&1 || true
  "$@" delete namespace "${namespace}" --ignore-not-found --wait=true --timeout="${timeout}" >/dev/null
}

# Installs the Debian packages that are missing. Idempotent; apt-get runs only when needed.
# The names are Debian 12's. Every name the scripts install on the runner VM (ubuntu-24.04: curl,
# debootstrap, debian-archive-keyring, jq, python3, gnuplot-nox) exists there under the same name;
# the C++ and lint toolchains (Catch2 2.13, clang-format 14) do not, so those stages run in Debian 12.
# Not root: apt-get runs through passwordless sudo when there is one (a CI runner), else it stops.
# Arguments: package names.
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("${pkg}")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ " ${missing[*]} " == *" catch2 "* ]] && ! is_debian12; then
    # Ubuntu 24.04's catch2 is Catch2 3, which the tests (Catch2 2.13) cannot use.
    die "catch2 must be Debian 12's (Catch2 2.13); this is $(os_name). CI runs this in Debian 12."
  fi
  local as_root=()
  if [[ "$(id -u)" != 0 ]]; then
    sudo -n true 2>/dev/null || die "missing packages (${missing[*]}); run as root or install them"
    as_root=(sudo -n)
  fi
  log "installing $(os_name) packages: ${missing[*]}"
  local apt_opts=(-o DPkg::Lock::Timeout=600 -q -y --no-install-recommends)
  if [[ ! -f /var/lib/apt/periodic/deploy-apps-updated ]] \
    || [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit)" ]]; then
    "${as_root[@]}" apt-get -o DPkg::Lock::Timeout=600 -q update >&2
    "${as_root[@]}" mkdir -p /var/lib/apt/periodic
    "${as_root[@]}" touch /var/lib/apt/periodic/deploy-apps-updated
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${missing[@]}" >&2 \
    || die "apt-get install failed on $(os_name) for: ${missing[*]}"
}

# True on Debian 12, the system the package names and versions are checked on.
is_debian12() {
  # shellcheck disable=SC1091  # the system's file
  [[ "$(source /etc/os-release 2>/dev/null && printf '%s %s' "${ID:-}" "${VERSION_ID:-}")" == "debian 12" ]]
}

# Prints the distribution's name and version, e.g. "Debian GNU/Linux 12 (bookworm)".
os_name() {
  # shellcheck disable=SC1091  # the system's file
  (source /etc/os-release 2>/dev/null && printf '%s\n' "${PRETTY_NAME:-unknown Linux}") \
    || printf 'unknown Linux\n'
}

# Fails unless every named command is on PATH.
require_commands() {
  local cmd
  for cmd in "$@"; do
    command -v "${cmd}" >/dev/null 2>&1 || die "required command not found: ${cmd}"
  done
}

# Reads the apps (scripts/list-apps: apps/<app>/Dockerfile plus manifests/<app>/values.yaml) into
# the named array. A folder that is half an app stops the caller, with list-apps' reasons.
# Arguments: name of an array variable.
read_apps() {
  local -n _read_apps_out="$1"
  local names
  names="$("${REPO_ROOT}/scripts/list-apps")" || die "scripts/list-apps failed (see above)"
  mapfile -t _read_apps_out <<<"${names}"
}

# Fails unless a name is one of the apps. Arguments: the name, what gave it (for the message).
require_app() {
  local name="$1" what="$2" apps=() app
  read_apps apps
  for app in "${apps[@]}"; do
    [[ "${app}" == "${name}" ]] && return 0
  done
  die "${what}: '${name}' is not an app (apps: ${apps[*]})"
}

# Prints a whole number from the shared manifests/values.yaml: the shutdown budget the ingress's
# timeouts and the e2e gate's longest requests derive from. Arguments: top-level section, key.
shared_value_number() {
  local section="$1" key="$2" value
  value="$(awk -v section="${section}:" -v key="${key}:" '
    $1 == section && /^[^ ]/ {inside = 1; next}
    /^[^ #]/ {inside = 0}
    inside && $1 == key {print $2; exit}' "${REPO_ROOT}/manifests/values.yaml")"
  [[ "${value}" =~ ^[0-9]+$ ]] \
    || die "manifests/values.yaml: ${section}.${key} is not a whole number (got '${value}')"
  printf '%s\n' "${value}"
}

# Picks a docker CLI that can run BuildKit builds. The machine's /usr/local/bin/docker has no buildx
# plugin, so prefer Debian's /usr/bin/docker (BuildKit built in) unless DOCKER is set.
docker_cli() {
  if [[ -n "${DOCKER:-}" ]]; then
    printf '%s\n' "${DOCKER}"
  elif [[ -x /usr/bin/docker ]]; then
    printf '%s\n' /usr/bin/docker
  else
    command -v docker
  fi
}

# Starts Debian's dockerd when no Docker engine answers. Idempotent.
# The daemon's PID is kept in ${DEPLOY_APPS_STATE}/dockerd.pid so that only it is ever stopped.
ensure_docker() {
  local docker
  docker="$(docker_cli)"
  if "${docker}" info >/dev/null 2>&1; then
    return 0
  fi
  ensure_packages docker.io containerd runc iptables
  mkdir -p "${DEPLOY_APPS_STATE}/log"
  log "starting dockerd (log: ${DEPLOY_APPS_STATE}/log/dockerd.log)"
  # setsid: the daemon must outlive the calling script and its process group.
  setsid dockerd --pidfile "${DEPLOY_APPS_STATE}/dockerd.pid" \
    >>"${DEPLOY_APPS_STATE}/log/dockerd.log" 2>&1 < /dev/null &
  local _
  for _ in $(seq 1 60); do
    "${docker}" info >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "dockerd did not answer within 60s; see ${DEPLOY_APPS_STATE}/log/dockerd.log"
}

#!/usr/bin/env bash
# Helpers to build the C++ deployer (deploy-apps). Source it after scripts/lib/common.sh.
#
# Settings (environment):
#   CCACHE_DIR  compiler cache (default: ${DEPLOY_APPS_CACHE}/ccache, outside the repository)
#   DEPLOY_APPS_JOBS  parallel compile jobs (default 2: the machines are shared)
#   DEPLOY_APPS_WARNINGS_AS_ERRORS  ON: every build through deployer_build (the test stages, the
#                     ./deploy-apps wrapper, the cluster tests) gets -Werror. CI sets it for all jobs.

[[ -n "${_DEPLOY_APPS_DEPLOYER_SH:-}" ]] && return 0
readonly _DEPLOY_APPS_DEPLOYER_SH=1

# Debian bookworm packages. The ./deploy-apps wrapper installs the build and run sets only;
# scripts/test adds the test and lint tools.
# shellcheck disable=SC2034  # used by the scripts that source this file
readonly DEPLOYER_BUILD_PACKAGES=(
  cmake ninja-build g++ git ccache
  libboost-dev libssl-dev libcli11-dev nlohmann-json3-dev libyaml-cpp-dev libspdlog-dev
)
# What a deploy runs besides the binary: gnuplot draws the in-flight probe's chart.
# shellcheck disable=SC2034
readonly DEPLOYER_RUN_PACKAGES=(gnuplot-nox)
# shellcheck disable=SC2034
readonly DEPLOYER_PACKAGES=(
  "${DEPLOYER_BUILD_PACKAGES[@]}" "${DEPLOYER_RUN_PACKAGES[@]}"
  catch2 clang-format clang-tidy cppcheck
)

# Configures (when needed) and builds targets in a build directory.
# Arguments: build directory, then extra cmake -D arguments, then "--", then targets.
deployer_build() {
  local build_dir="$1"
  shift
  local cmake_args=() targets=()
  while (($# > 0)) && [[ "$1" != "--" ]]; do
    cmake_args+=("$1")
    shift
  done
  (($# > 0)) && shift
  targets=("$@")

  export CCACHE_DIR="${CCACHE_DIR:-${DEPLOY_APPS_CACHE}/ccache}"
  mkdir -p "${CCACHE_DIR}"
  # Paths relative to the checkout, so a fresh clone elsewhere (CI) still hits the cache.
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-${REPO_ROOT}}"
  local launcher=()
  command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  # Before the caller's arguments, so an explicit -D...=OFF still wins.
  local werror_args=()
  case "${DEPLOY_APPS_WARNINGS_AS_ERRORS:-}" in
    ON | on | 1 | true) werror_args=(-DDEPLOY_APPS_WARNINGS_AS_ERRORS=ON) ;;
  esac
  cmake -S "${REPO_ROOT}" -B "${build_dir}" -G Ninja "${launcher[@]}" "${werror_args[@]}" "${cmake_args[@]}" >&2
  local target_args=()
  local target
  for target in "${targets[@]}"; do
    target_args+=(--target "${target}")
  done
  cmake --build "${build_dir}" --parallel "${DEPLOY_APPS_JOBS:-2}" "${target_args[@]}" >&2
}

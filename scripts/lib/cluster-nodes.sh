#!/usr/bin/env bash
# Extra nodes of the native cluster ("scripts/cluster up --nodes N"). Source it after
# cluster-native.sh. Node 1 is the host itself (cluster-native.sh); node K (2..3) is a kubelet,
# a kube-proxy and a containerd of its own, run as plain processes inside a network namespace:
#
#   host: bridge da-nodes 10.87.0.1/24, route 10.89.K.0/24 via 10.87.0.K, registry-nodes on
#         10.87.0.1:5000 (a read-only second server of the same registry storage)
#   netns deploy-apps-node-K: eth0 10.87.0.K (veth da-node-K on da-nodes), its own cni0 with
#         pods 10.89.K.0/24, its own iptables (kube-proxy), kubelet on 10.87.0.K:10250
#   node name 10.87.0.K (an address, as node 1's 127.0.0.1: the apiserver reaches a kubelet by it)
#   client certificate system:node:10.87.0.K, so the Node authorizer and NodeRestriction apply
#   CLUSTER_DIR/nodes/K/   containerd root/state/socket, kubelet root, pod logs, CNI state
#   cgroups: /<controller>/deploy-apps-node-K (a parent under the existing hierarchy, no mounts)
#
# Only the network is separate: the kubelet and its containerd share the host's mounts, which
# pod volumes need. "down" removes every node's processes, pods, namespace, links, routes,
# cgroups and the host's FORWARD rules for the bridge.

[[ -n "${_DEPLOY_APPS_CLUSTER_NODES_SH:-}" ]] && return 0
readonly _DEPLOY_APPS_CLUSTER_NODES_SH=1

# Two cores hold at most three kubelets with the apps' pods; more would only measure contention.
readonly MAX_NODES=3
readonly NODES_DIR="${CLUSTER_DIR}/nodes"
readonly NODES_BRIDGE="da-nodes"
readonly NODES_HOST_IP="10.87.0.1"
readonly NODES_REGISTRY_ADDRESS="${NODES_HOST_IP}:5000"
# Tags the host's FORWARD rules for the bridge, so that "down" deletes exactly those.
readonly NODES_RULE_COMMENT="deploy-apps-nodes"

node_ip() { printf '10.87.0.%s\n' "$1"; }
node_netns() { printf 'deploy-apps-node-%s\n' "$1"; }
node_pod_cidr() { printf '10.89.%s.0/24\n' "$1"; }
node_dir() { printf '%s/%s\n' "${NODES_DIR}" "$1"; }
node_cgroup() { printf 'deploy-apps-node-%s\n' "$1"; }

# The extra nodes "up" created (2 3 ...), from their state folders.
extra_nodes() {
  local dir
  for dir in "${NODES_DIR}"/[0-9]*; do
    [[ -d "${dir}" ]] && printf '%s\n' "${dir##*/}"
  done
  return 0
}

# The daemons of every extra node, for status and the stale-state check.
extra_node_daemons() {
  local k
  for k in $(extra_nodes); do
    printf '%s\n' "containerd-node-${k}" "kubelet-node-${k}" "kube-proxy-node-${k}"
  done
}

# The daemons "status" lists beyond node 1's.
nodes_status_daemons() {
  [[ -n "$(extra_nodes)" ]] || return 0
  printf '%s\n' registry-nodes
  extra_node_daemons
}

# Fails unless N is a node count this machine can hold.
require_node_count() {
  [[ "$1" =~ ^[1-9][0-9]*$ ]] || die "--nodes needs a whole number from 1 to ${MAX_NODES}, not '$1'"
  (($1 <= MAX_NODES)) || die "--nodes $1: at most ${MAX_NODES} nodes on this machine (2 cores)"
}

# ---------------------------------------------------------------------------------------------
# Network

nodes_bridge_up() {
  if ! ip link show "${NODES_BRIDGE}" >/dev/null 2>&1; then
    ip link add "${NODES_BRIDGE}" type bridge
    ip addr add "${NODES_HOST_IP}/24" dev "${NODES_BRIDGE}"
  fi
  ip link set "${NODES_BRIDGE}" up
  # docker sets the FORWARD policy to DROP: let node traffic through (pods and kubelets of the
  # extra nodes reach node 1's pods, the registry and each other).
  local dir
  for dir in -i -o; do
    iptables -w -C FORWARD "${dir}" "${NODES_BRIDGE}" -m comment --comment "${NODES_RULE_COMMENT}" \
      -j ACCEPT 2>/dev/null \
      || iptables -w -I FORWARD 1 "${dir}" "${NODES_BRIDGE}" -m comment \
        --comment "${NODES_RULE_COMMENT}" -j ACCEPT
  done
}

# Creates node K's namespace, its link to the bridge and the host's route to its pods.
node_network_up() {
  local k="$1" ns ip host_link
  ns="$(node_netns "${k}")"
  ip="$(node_ip "${k}")"
  host_link="da-node-${k}"
  ip netns list | grep -qx "${ns}\( (id: [0-9]*)\)\{0,1\}" || ip netns add "${ns}"
  if ! ip link show "${host_link}" >/dev/null 2>&1; then
    ip link add "${host_link}" type veth peer name eth0 netns "${ns}"
  fi
  ip link set "${host_link}" master "${NODES_BRIDGE}" up
  ip -n "${ns}" addr replace "${ip}/24" dev eth0
  ip -n "${ns}" link set lo up
  ip -n "${ns}" link set eth0 up
  ip -n "${ns}" route replace default via "${NODES_HOST_IP}"
  ip route replace "$(node_pod_cidr "${k}")" via "${ip}"
  # Per-namespace settings: forwarding for pods, Services through the bridge (kube-proxy).
  ip netns exec "${ns}" sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
}

# ---------------------------------------------------------------------------------------------
# cgroups: a parent per node under each v1 controller, so that two kubelets never manage (or
# garbage-collect) each other's pods. Only directories are made; mounts are left alone.

node_cgroup_up() {
  local name controller_dir
  name="$(node_cgroup "$1")"
  for controller_dir in /sys/fs/cgroup/*/; do
    [[ -f "${controller_dir}cgroup.procs" && ! -f "${controller_dir}cgroup.controllers" ]] || continue
    mkdir -p "${controller_dir}${name}"
    # A new cpuset is empty, and no task may join an empty one: inherit the parent's.
    if [[ -f "${controller_dir}cpuset.cpus" ]]; then
      [[ -n "$(<"${controller_dir}${name}/cpuset.cpus")" ]] \
        || cat "${controller_dir}cpuset.cpus" >"${controller_dir}${name}/cpuset.cpus"
      [[ -n "$(<"${controller_dir}${name}/cpuset.mems")" ]] \
        || cat "${controller_dir}cpuset.mems" >"${controller_dir}${name}/cpuset.mems"
    fi
  done
}

node_cgroup_down() {
  local name controller_dir
  name="$(node_cgroup "$1")"
  for controller_dir in /sys/fs/cgroup/*/; do
    [[ -d "${controller_dir}${name}" ]] || continue
    find "${controller_dir}${name}" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

# ---------------------------------------------------------------------------------------------
# Node processes

node_configs() {
  local k="$1" ip dir server
  ip="$(node_ip "${k}")"
  dir="$(node_dir "${k}")"
  # The apiserver's certificate already names the host's address (host_ip).
  server="https://$(host_ip):${APISERVER_PORT}"
  mkdir -p "${dir}/pod-logs"
  pki_cert "${PKI_DIR}" "kubelet-node-${k}" "/O=system:nodes/CN=system:node:${ip}" client
  pki_cert "${PKI_DIR}" "kubelet-serving-node-${k}" "/CN=${ip}" server "IP:${ip}"
  pki_kubeconfig "${dir}/kubelet.kubeconfig" "${PKI_DIR}" "kubelet-node-${k}" "${server}" \
    "${CLUSTER_CONTEXT}"
  pki_kubeconfig "${dir}/kube-proxy.kubeconfig" "${PKI_DIR}" kube-proxy "${server}" \
    "${CLUSTER_CONTEXT}"
  write_containerd_config "${dir}/containerd.toml" "${dir}/containerd" "${dir}/cni/net.d"
  write_registry_hosts "${dir}/containerd" "http://${NODES_REGISTRY_ADDRESS}"
  write_cni_config "${dir}/cni/net.d/10-deploy-apps.conflist" "$(node_pod_cidr "${k}")" \
    "${dir}/cni/ipam"
  write_kubelet_config "${dir}/kubelet.yaml" "${ip}" "${dir}/containerd/containerd.sock" \
    "kubelet-serving-node-${k}" "${dir}/pod-logs" "/$(node_cgroup "${k}")"
  write_kube_proxy_config "${dir}/kube-proxy.yaml" "${dir}/kube-proxy.kubeconfig" "${ip}"
}

# start_daemon inside a node's network namespace. Arguments: namespace, then start_daemon's.
start_daemon_in() {
  # shellcheck disable=SC2034 # read by start_daemon
  local DAEMON_NETNS="$1"
  shift
  start_daemon "$@"
}

# Starts node K (idempotent) and waits until it is Ready.
node_up() {
  local k="$1" ip dir
  ip="$(node_ip "${k}")"
  dir="$(node_dir "${k}")"
  node_network_up "${k}"
  node_cgroup_up "${k}"
  node_configs "${k}"
  local ns
  ns="$(node_netns "${k}")"
  start_daemon_in "${ns}" "containerd-node-${k}" "$(command -v containerd)" \
    --config "${dir}/containerd.toml"
  wait_for "node ${ip}: containerd" 30 "containerd-node-${k}" test -S "${dir}/containerd/containerd.sock"
  # Only the pause image: every other image comes from the registry.
  import_scratch_image "${PAUSE_IMAGE}" "$(build_pause_binary)" "${dir}/containerd/containerd.sock"
  start_daemon_in "${ns}" "kubelet-node-${k}" "${KUBE_BIN_DIR}/kubelet" \
    --config="${dir}/kubelet.yaml" --kubeconfig="${dir}/kubelet.kubeconfig" \
    --hostname-override="${ip}" --node-ip="${ip}" --root-dir="${dir}/kubelet"
  start_daemon_in "${ns}" "kube-proxy-node-${k}" "${KUBE_BIN_DIR}/kube-proxy" \
    --config="${dir}/kube-proxy.yaml"
  wait_for "node ${ip} Ready" 180 "kubelet-node-${k}" node_ready "${ip}"
}

# Brings the cluster to COUNT nodes (node 1 is already up). Fewer than exist is refused: a node
# holds pods, and taking it away is an experiment (drain, node loss), not a setting.
nodes_up() {
  local count="$1" existing k
  existing="$(($(extra_nodes | wc -l) + 1))"
  if ((count < existing)); then
    die "the cluster has ${existing} nodes; --nodes ${count} would remove some: run 'scripts/cluster down' first"
  fi
  ((count > 1)) || return 0
  nodes_bridge_up
  write_nodes_registry_config
  start_daemon registry-nodes "${REGISTRY_BIN}" serve "${CONFIG_DIR}/registry-nodes.yaml"
  for ((k = 2; k <= count; k++)); do
    mkdir -p "$(node_dir "${k}")"
    timed "node $(node_ip "${k}")" node_up "${k}"
  done
  wait_for "registry on ${NODES_REGISTRY_ADDRESS}" 30 registry-nodes \
    curl -fsS --max-time 2 "http://${NODES_REGISTRY_ADDRESS}/v2/"
}

# A second server of the registry's storage on the bridge, for the extra nodes' pulls (node 1
# and the deployer's pushes keep using loopback).
write_nodes_registry_config() {
  write_registry_config "${CONFIG_DIR}/registry-nodes.yaml" "${NODES_REGISTRY_ADDRESS}" read-only
}

# ---------------------------------------------------------------------------------------------
# Teardown

# Removes node K: its pods through the CRI (CNI DEL), its processes, namespace, cgroups and state.
node_down() {
  local k="$1" dir ns socket
  dir="$(node_dir "${k}")"
  ns="$(node_netns "${k}")"
  socket="${dir}/containerd/containerd.sock"
  stop_daemon "kubelet-node-${k}" 20
  if [[ -f "${dir}/containerd.toml" && -d "${dir}/containerd/root" ]] \
    && ip netns list | grep -q "^${ns}\b"; then
    if ! daemon_pid "containerd-node-${k}" >/dev/null; then
      rm -f "${socket}"
      start_daemon_in "${ns}" "containerd-node-${k}" "$(command -v containerd)" \
        --config "${dir}/containerd.toml"
      wait_for "node ${k}: containerd (for teardown)" 30 "containerd-node-${k}" test -S "${socket}"
    fi
    "${KUBE_BIN_DIR}/kube" cri-reset "unix://${socket}" >/dev/null \
      || err "node ${k}: some pod sandboxes could not be removed; continuing"
  fi
  stop_daemon "kube-proxy-node-${k}" 20
  stop_daemon "containerd-node-${k}" 20
  stop_shims_of "${socket}"
  ip netns delete "${ns}" 2>/dev/null || true
  ip link delete "da-node-${k}" 2>/dev/null || true
  unmount_under "${dir}"
  node_cgroup_down "${k}"
  rm -rf "${dir}"
}

nodes_down() {
  local k
  for k in $(extra_nodes); do
    node_down "${k}"
  done
  stop_daemon registry-nodes 20
  local dir
  for dir in -i -o; do
    while iptables -w -D FORWARD "${dir}" "${NODES_BRIDGE}" -m comment \
      --comment "${NODES_RULE_COMMENT}" -j ACCEPT 2>/dev/null; do :; done
  done
  ip link delete "${NODES_BRIDGE}" 2>/dev/null || true
  rm -rf "${NODES_DIR}"
}

#!/usr/bin/env bash
# The "kind" provider of scripts/cluster, for machines that can pull images (laptops, GitHub
# Actions). Same interface and conventions as the native provider: kubeconfig at
# ${DEPLOY_APPS_STATE}/cluster/kubeconfig with context deploy-apps-local, a registry on
# 127.0.0.1:5000, Traefik (IngressClass "traefik") on http://127.0.0.1:8088 (its metrics and API on
# 127.0.0.1:8089), and Service ClusterIPs reachable from the host (the e2e probes use them): "up"
# routes the Service subnet via the node container. That route needs root (or CAP_NET_ADMIN) and a
# Linux host whose containers are routable; Docker Desktop's are not, so there "up" warns and only
# the ingress path works.
# Source it.
#
# Settings (environment):
#   KIND_NODE_IMAGE   node image for kind (default: kind's own default for its version)
#   KIND              kind binary (default: kind)

[[ -n "${_DEPLOY_APPS_CLUSTER_KIND_SH:-}" ]] && return 0
readonly _DEPLOY_APPS_CLUSTER_KIND_SH=1

# shellcheck source=scripts/lib/cluster-versions.sh
source "${REPO_ROOT}/scripts/lib/cluster-versions.sh"

readonly KIND="${KIND:-kind}"
readonly KIND_CLUSTER_NAME="deploy-apps"
readonly KIND_NODE="${KIND_CLUSTER_NAME}-control-plane"
readonly KIND_REGISTRY_CONTAINER="deploy-apps-registry"
readonly KIND_STATE_DIR="${DEPLOY_APPS_STATE}/cluster"
readonly KIND_KUBECONFIG="${KIND_STATE_DIR}/kubeconfig"
readonly KIND_CONTEXT="deploy-apps-local"
# kind's default, written out because the host route below must match it.
readonly KIND_SERVICE_SUBNET="10.96.0.0/16"
# The node address the host route goes through, so that "down" removes exactly that route.
readonly KIND_ROUTE_FILE="${KIND_STATE_DIR}/service-route"

# kubectl with the cluster's kubeconfig (also "scripts/cluster kubectl").
kind_kubectl() {
  kubectl --kubeconfig "${KIND_KUBECONFIG}" "$@"
}

# Arguments: the number of nodes ("" or 1; more are native-only for now).
kind_up() {
  [[ "${1:-1}" == 1 ]] || die "--nodes $1: extra nodes are made by the native provider only"
  require_commands "${KIND}" docker kubectl curl
  mkdir -p "${KIND_STATE_DIR}" || die "cannot create ${KIND_STATE_DIR}; set DEPLOY_APPS_STATE"
  if [[ -z "$(docker ps -q --filter "name=^${KIND_REGISTRY_CONTAINER}$")" ]]; then
    docker rm -f "${KIND_REGISTRY_CONTAINER}" >/dev/null 2>&1 || true
    docker run -d --restart=always -p 127.0.0.1:5000:5000 --name "${KIND_REGISTRY_CONTAINER}" \
      registry:3 >/dev/null
  fi
  if ! "${KIND}" get clusters 2>/dev/null | grep -qx "${KIND_CLUSTER_NAME}"; then
    local node_image=()
    [[ -z "${KIND_NODE_IMAGE:-}" ]] || node_image=(--image "${KIND_NODE_IMAGE}")
    # Traefik listens on the node's port 8088; kind maps it to the host's loopback.
    "${KIND}" create cluster --name "${KIND_CLUSTER_NAME}" "${node_image[@]}" --wait 2m \
      --config - <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  serviceSubnet: "${KIND_SERVICE_SUBNET}"
containerdConfigPatches:
  - |-
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
nodes:
  - role: control-plane
    extraPortMappings:
      - containerPort: 8088
        hostPort: 8088
        listenAddress: 127.0.0.1
      # Traefik's metrics and read-only API (the real-traffic and drain-race checks), as natively.
      - containerPort: 8089
        hostPort: 8089
        listenAddress: 127.0.0.1
EOF
  fi
  # Inside the node, 127.0.0.1:5000 means the registry container on kind's network.
  docker network connect kind "${KIND_REGISTRY_CONTAINER}" 2>/dev/null || true
  docker exec "${KIND_NODE}" mkdir -p /etc/containerd/certs.d/127.0.0.1:5000
  docker exec -i "${KIND_NODE}" tee /etc/containerd/certs.d/127.0.0.1:5000/hosts.toml >/dev/null <<EOF
[host."http://${KIND_REGISTRY_CONTAINER}:5000"]
  capabilities = ["pull", "resolve"]
EOF
  "${KIND}" get kubeconfig --name "${KIND_CLUSTER_NAME}" >"${KIND_KUBECONFIG}"
  kind_kubectl config rename-context "kind-${KIND_CLUSTER_NAME}" "${KIND_CONTEXT}" >/dev/null
  chmod 600 "${KIND_KUBECONFIG}"
  install_gateway_api kind_kubectl
  ensure_ingress_default_certificate kind_kubectl
  # The same manifest as natively, with the public image and all-interface binds (kind forwards
  # to the node's own address, not its loopback).
  ingress_manifest "traefik:${TRAEFIK_VERSION}" "${KIND_NODE}" | sed -e 's|=127\.0\.0\.1:80|=:80|' \
    | kind_kubectl apply -f - >/dev/null
  kind_kubectl -n traefik rollout status deployment/traefik --timeout=180s
  local deadline=$((SECONDS + 60))
  until gateway_programmed kind_kubectl; do
    ((SECONDS < deadline)) || die "Traefik did not program the Gateway traefik/traefik in 60s"
    sleep 1
  done
  kind_kubectl -n default wait --for=create serviceaccount/default --timeout=60s >/dev/null
  kind_route_services
  log "kind cluster up; kubeconfig: ${KIND_KUBECONFIG} (context ${KIND_CONTEXT})"
}

# Makes Service ClusterIPs answer from the host, as they do with the native provider: a route for
# the Service subnet via the node container. kube-proxy in the node DNATs ClusterIP traffic that
# arrives on the node's interface (its PREROUTING rules) and masquerades it, since the host is
# outside the pod network, so replies come back the same way. Warns instead of failing when the
# route cannot be added: only the e2e gate's Service probes need it, and they fail clearly.
kind_route_services() {
  local node_ip
  node_ip="$(docker inspect --format '{{with index .NetworkSettings.Networks "kind"}}{{.IPAddress}}{{end}}' \
    "${KIND_NODE}")" || die "cannot inspect the kind node container ${KIND_NODE}"
  [[ -n "${node_ip}" ]] || die "the kind node ${KIND_NODE} has no address on Docker's \"kind\" network"
  if ! command -v ip >/dev/null 2>&1 \
    || ! ip route replace "${KIND_SERVICE_SUBNET}" via "${node_ip}" 2>/dev/null; then
    err "could not route ${KIND_SERVICE_SUBNET} (Service ClusterIPs) via the kind node ${node_ip};"
    err "the e2e gate's Service probes need it. As root (iproute2): ip route replace ${KIND_SERVICE_SUBNET} via ${node_ip}"
    return 0
  fi
  printf '%s\n' "${node_ip}" >"${KIND_ROUTE_FILE}"
  # The apiserver's own Service is the first address of the subnet; any HTTP answer will do.
  local first_ip="${KIND_SERVICE_SUBNET%.*/*}.1"
  if curl --silent --insecure --max-time 5 --output /dev/null "https://${first_ip}/"; then
    log "Service ClusterIPs (${KIND_SERVICE_SUBNET}) answer from this host via ${node_ip}"
  else
    err "routed ${KIND_SERVICE_SUBNET} via ${node_ip}, but https://${first_ip}/ does not answer from this host"
  fi
}

# Removes the host route that kind_route_services added, if it is still there.
kind_unroute_services() {
  [[ -f "${KIND_ROUTE_FILE}" ]] || return 0
  local node_ip
  node_ip="$(<"${KIND_ROUTE_FILE}")"
  if [[ -n "$(ip route show "${KIND_SERVICE_SUBNET}" via "${node_ip}" 2>/dev/null)" ]]; then
    ip route del "${KIND_SERVICE_SUBNET}" via "${node_ip}" \
      || err "could not remove the route ${KIND_SERVICE_SUBNET} via ${node_ip}; remove it as root"
  fi
  rm -f "${KIND_ROUTE_FILE}"
}

kind_down() {
  require_commands "${KIND}" docker
  kind_unroute_services
  "${KIND}" delete cluster --name "${KIND_CLUSTER_NAME}"
  docker rm -f "${KIND_REGISTRY_CONTAINER}" >/dev/null 2>&1 || true
  rm -f "${KIND_KUBECONFIG}"
}

kind_status() {
  require_commands "${KIND}" kubectl
  "${KIND}" get clusters 2>/dev/null | grep -qx "${KIND_CLUSTER_NAME}" || {
    log "kind cluster ${KIND_CLUSTER_NAME}: not created"
    return 1
  }
  kind_kubectl get nodes -o wide || return 1
  kind_kubectl -n traefik get pods -o wide || return 1
  gateway_programmed kind_kubectl || {
    log "gateway: traefik/traefik is NOT programmed"
    return 1
  }
  if [[ -f "${KIND_ROUTE_FILE}" ]]; then
    log "Service ClusterIPs: routed via the node ($(ip route show "${KIND_SERVICE_SUBNET}" 2>/dev/null))"
  else
    log "Service ClusterIPs: not routed from this host (see 'scripts/cluster up' output)"
  fi
}

kind_logs() {
  local name="${1:-}"
  case "${name}" in
    "") printf 'components: traefik kubelet containerd (docker exec into %s for more)\n' "${KIND_NODE}" ;;
    traefik) kind_kubectl -n traefik logs deployment/traefik --tail=200 ;;
    kubelet | containerd) docker exec "${KIND_NODE}" journalctl -u "${name}" --no-pager -n 200 ;;
    *) die "unknown component ${name} (kind: traefik kubelet containerd)" ;;
  esac
}

kind_kubeconfig() {
  [[ -f "${KIND_KUBECONFIG}" ]] || die "no kubeconfig yet; run: scripts/cluster up"
  printf '%s\n' "${KIND_KUBECONFIG}"
}

# Runs a command where ClusterIPs are reachable: inside the kind node.
kind_exec() {
  docker exec "${KIND_NODE}" "$@"
}


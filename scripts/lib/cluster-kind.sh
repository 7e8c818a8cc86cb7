#!/usr/bin/env bash
# The "kind" provider of scripts/cluster, for machines that can pull images (laptops, GitHub
# Actions). Same interface and conventions as the native provider: kubeconfig at
# ${DEPLOY_APPS_STATE}/cluster/kubeconfig with context deploy-apps-local, a registry on
# 127.0.0.1:5000, Traefik (IngressClass "traefik") on http://127.0.0.1:8088. Source it.
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

# kubectl with the cluster's kubeconfig (also "scripts/cluster kubectl").
kind_kubectl() {
  kubectl --kubeconfig "${KIND_KUBECONFIG}" "$@"
}

kind_up() {
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
  # The same manifest as natively, with the public image and all-interface binds (kind forwards
  # to the node's own address, not its loopback).
  sed -e "s|TRAEFIK_IMAGE|traefik:${TRAEFIK_VERSION}|" -e 's|=127\.0\.0\.1:80|=:80|' \
    "${REPO_ROOT}/manifests/cluster/traefik.yaml" | kind_kubectl apply -f - >/dev/null
  kind_kubectl -n traefik rollout status deployment/traefik --timeout=180s
  kind_kubectl -n default wait --for=create serviceaccount/default --timeout=60s >/dev/null
  log "kind cluster up; kubeconfig: ${KIND_KUBECONFIG} (context ${KIND_CONTEXT})"
}

kind_down() {
  require_commands "${KIND}" docker
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
  kind_kubectl get nodes -o wide && kind_kubectl -n traefik get pods -o wide
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


#!/usr/bin/env bash
# Pinned versions of everything the local cluster builds from the Go module proxy. Source it.
# Changing a version here makes scripts/build-kubernetes build into a new cache directory.

[[ -n "${_DEPLOY_APPS_CLUSTER_VERSIONS_SH:-}" ]] && return 0
readonly _DEPLOY_APPS_CLUSTER_VERSIONS_SH=1

# Kubernetes and its staging modules (k8s.io/api etc. are published as v0.<minor>.<patch>).
readonly KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.35.4}"
readonly ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
readonly REGISTRY_VERSION="${REGISTRY_VERSION:-v3.1.2}"
readonly TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.6.12}"
# The Gateway API CRDs (standard channel) from the sigs.k8s.io/gateway-api module: the version
# Traefik v3.6 implements.
readonly GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.4.0}"

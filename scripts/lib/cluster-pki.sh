#!/usr/bin/env bash
# PKI for the native local cluster, made with openssl: one CA, serving and client certificates,
# the service-account key pair, and kubeconfigs with embedded client certificates. Source it.
#
# Every function is idempotent: an existing file is kept unless its inputs changed (the
# apiserver certificate is remade when the host IP it must name changes).

[[ -n "${_DEPLOY_APPS_CLUSTER_PKI_SH:-}" ]] && return 0
readonly _DEPLOY_APPS_CLUSTER_PKI_SH=1

readonly PKI_DAYS=3650

# Creates a CA in DIR unless it exists.
# Arguments: pki dir, common name (default deploy-apps-local-ca).
pki_ca() {
  local dir="$1" cn="${2:-deploy-apps-local-ca}"
  [[ -f "${dir}/ca.crt" && -f "${dir}/ca.key" ]] && return 0
  mkdir -p "${dir}"
  chmod 700 "${dir}"
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "${dir}/ca.key" -out "${dir}/ca.crt" -days "${PKI_DAYS}" \
    -subj "/CN=${cn}" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# Issues NAME.crt/NAME.key signed by the CA.
# Arguments: pki dir, name, subject (e.g. "/O=system:nodes/CN=system:node:x"), kind
#            (client|server|peer), subjectAltName list for server and peer certs (e.g. "DNS:localhost,IP:127.0.0.1").
pki_cert() {
  local dir="$1" name="$2" subject="$3" kind="$4" sans="${5:-}"
  local crt="${dir}/${name}.crt" key="${dir}/${name}.key" want="${subject}|${kind}|${sans}"
  if [[ -f "${crt}" && -f "${key}" && "$(cat "${dir}/${name}.inputs" 2>/dev/null)" == "${want}" ]]; then
    return 0
  fi
  local ext
  ext="basicConstraints=critical,CA:FALSE"$'\n'"keyUsage=critical,digitalSignature,keyEncipherment"
  case "${kind}" in
    client) ext+=$'\n'"extendedKeyUsage=clientAuth" ;;
    server) ext+=$'\n'"extendedKeyUsage=serverAuth"$'\n'"subjectAltName=${sans}" ;;
    peer) ext+=$'\n'"extendedKeyUsage=serverAuth,clientAuth"$'\n'"subjectAltName=${sans}" ;;
    *) die "pki_cert: unknown kind ${kind}" ;;
  esac
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "${key}" -out "${dir}/${name}.csr" -subj "${subject}" 2>/dev/null
  openssl x509 -req -in "${dir}/${name}.csr" -CA "${dir}/ca.crt" -CAkey "${dir}/ca.key" \
    -CAcreateserial -days "${PKI_DAYS}" -out "${crt}" -extfile <(printf '%s\n' "${ext}") 2>/dev/null
  rm -f "${dir}/${name}.csr"
  chmod 600 "${key}"
  printf '%s' "${want}" >"${dir}/${name}.inputs"
}

# Creates the RSA key pair that signs and verifies service-account tokens.
# Arguments: pki dir.
pki_service_account_keys() {
  local dir="$1"
  [[ -f "${dir}/sa.key" && -f "${dir}/sa.pub" ]] && return 0
  openssl genrsa -out "${dir}/sa.key" 2048 2>/dev/null
  openssl rsa -in "${dir}/sa.key" -pubout -out "${dir}/sa.pub" 2>/dev/null
  chmod 600 "${dir}/sa.key"
}

# Writes a kubeconfig that authenticates with a client certificate (embedded, so the file can be
# copied elsewhere). The format is small and fixed, so it is written directly rather than through
# a dozen kubectl invocations.
# Arguments: output file, pki dir, cert name, server URL, context name.
pki_kubeconfig() {
  local file="$1" dir="$2" name="$3" server="$4" context="$5"
  local tmp="${file}.tmp"
  cat >"${tmp}" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ${context}
  cluster:
    server: ${server}
    certificate-authority-data: $(base64 -w0 "${dir}/ca.crt")
users:
- name: ${context}-${name}
  user:
    client-certificate-data: $(base64 -w0 "${dir}/${name}.crt")
    client-key-data: $(base64 -w0 "${dir}/${name}.key")
contexts:
- name: ${context}
  context:
    cluster: ${context}
    user: ${context}-${name}
current-context: ${context}
EOF
  chmod 600 "${tmp}"
  mv "${tmp}" "${file}"
}

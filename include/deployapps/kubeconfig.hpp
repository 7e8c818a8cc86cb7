// kubeconfig loading and context resolution with kubectl's rules (client-go tools/clientcmd):
// KUBECONFIG holds several files, the first file to define a named cluster, user or context wins
// the whole entry, the first non-empty current-context wins, and relative paths resolve against
// the directory of the file that defines them.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace deployapps {

class CredentialSource;  // credentials.hpp

// users[].user.exec: a client.authentication.k8s.io credential plugin.
struct ExecConfig {
  std::string command;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::string api_version;       // client.authentication.k8s.io/v1 or /v1beta1
  std::string interactive_mode;  // Never, IfAvailable or Always
  bool provide_cluster_info = false;
  std::string install_hint;
};

struct KubeconfigCluster {
  std::string server;
  std::string tls_server_name;
  bool insecure_skip_tls_verify = false;
  std::string certificate_authority;       // a path, already resolved
  std::string certificate_authority_data;  // PEM, already decoded
  std::string proxy_url;
  // extensions[name=client.authentication.k8s.io/exec].extension, handed to exec plugins.
  nlohmann::json exec_extension;
  std::filesystem::path defined_in;
};

struct KubeconfigUser {
  std::string client_certificate;
  std::string client_certificate_data;
  std::string client_key;
  std::string client_key_data;
  std::string token;
  std::string token_file;
  std::string username;
  std::string password;
  std::string impersonate;
  std::string impersonate_uid;
  std::vector<std::string> impersonate_groups;
  std::optional<ExecConfig> exec;
  std::string auth_provider;  // only detected, to reject it clearly
  std::filesystem::path defined_in;
};

struct KubeconfigContext {
  std::string cluster;
  std::string user;
  std::string namespace_name;
  std::filesystem::path defined_in;
};

struct Kubeconfig {
  std::map<std::string, KubeconfigCluster> clusters;
  std::map<std::string, KubeconfigUser> users;
  std::map<std::string, KubeconfigContext> contexts;
  std::string current_context;
  std::vector<std::filesystem::path> files;  // the files that were read, in order

  [[nodiscard]] bool empty() const noexcept {
    return clusters.empty() && users.empty() && contexts.empty() && current_context.empty();
  }
};

// The KUBECONFIG list: split on ':', empty entries and duplicates dropped.
[[nodiscard]] std::vector<std::filesystem::path> split_kubeconfig_list(std::string_view value);

// Reads and merges the files; missing files are skipped (as kubectl does), unreadable or invalid
// ones throw ConfigError naming the file.
[[nodiscard]] Kubeconfig load_kubeconfig(const std::vector<std::filesystem::path>& files);

// Everything needed to talk to one API server as one user.
struct RestConfig {
  std::string server;  // https://host:port[/prefix]
  std::string host;    // from the server URL, brackets removed for IPv6
  std::string port;
  std::string base_path;        // a path prefix of the server URL, without trailing '/'
  std::string tls_server_name;  // verified name and SNI; empty = host
  bool insecure_skip_tls_verify = false;
  std::optional<std::string> ca_pem;
  std::string ca_source;  // file or "certificate-authority-data", for messages
  std::optional<std::string> client_certificate_pem;
  std::optional<std::string> client_key_pem;
  std::optional<std::string> token;
  std::optional<std::filesystem::path> token_file;
  std::optional<std::pair<std::string, std::string>> basic_auth;
  std::optional<ExecConfig> exec;
  // What an exec plugin with provideClusterInfo gets in KUBERNETES_EXEC_INFO.spec.cluster.
  nlohmann::json exec_cluster_info;
  std::string impersonate;
  std::string impersonate_uid;
  std::vector<std::string> impersonate_groups;
  std::string namespace_name = "default";
  std::string context_name;  // empty when in-cluster
  std::string description;   // e.g. `context "kind" (/root/.kube/config)`
  // Shared by every client made from this config, so that an exec plugin runs once per command
  // and a refreshed credential serves all of them. Null: each client makes its own.
  std::shared_ptr<CredentialSource> credentials;
};

// Resolves a context (the override, else current-context) to a usable RestConfig, applying
// client-go's validation. Throws UsageError for an unknown context, ConfigError otherwise.
[[nodiscard]] RestConfig resolve_context(const Kubeconfig& config,
                                         const std::optional<std::string>& context_override);

// Splits an https URL into host, port and path prefix. Throws ConfigError.
void parse_server_url(RestConfig& config, const std::string& server);

// In-cluster config from the pod's service account (client-go rest.InClusterConfig).
struct InClusterEnvironment {
  std::string service_host;   // $KUBERNETES_SERVICE_HOST
  std::string service_port;   // $KUBERNETES_SERVICE_PORT
  std::string pod_namespace;  // $POD_NAMESPACE
  std::filesystem::path service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";

  [[nodiscard]] bool available() const noexcept {
    return !service_host.empty() && !service_port.empty();
  }
};

[[nodiscard]] RestConfig in_cluster_config(const InClusterEnvironment& environment);

// Where the cluster comes from when the user names nothing: the inputs to resolve_target.
struct TargetOptions {
  std::optional<std::filesystem::path> kubeconfig_flag;  // --kubeconfig
  std::optional<std::string> kubeconfig_env;             // $KUBECONFIG
  std::optional<std::filesystem::path> home;             // $HOME
  std::optional<std::string> context;                    // --context
  InClusterEnvironment in_cluster;
  std::filesystem::path local_cluster_kubeconfig;  // the project's local cluster
};

enum class TargetSource { kKubeconfig, kInCluster, kLocalCluster };

struct ResolvedTarget {
  RestConfig config;
  TargetSource source = TargetSource::kKubeconfig;
};

// kubectl's precedence (--kubeconfig, $KUBECONFIG, ~/.kube/config, then in-cluster), and as the
// last resort the project's local cluster. Throws UsageError/ConfigError before any request.
[[nodiscard]] ResolvedTarget resolve_target(const TargetOptions& options);

}  // namespace deployapps

#include "deployapps/kubeconfig.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <algorithm>
#include <fstream>
#include <sstream>

#include "deployapps/encoding.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/yaml_json.hpp"

namespace deployapps {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::string_view kExecExtensionName = "client.authentication.k8s.io/exec";
constexpr std::string_view kExecV1 = "client.authentication.k8s.io/v1";
constexpr std::string_view kExecV1beta1 = "client.authentication.k8s.io/v1beta1";

std::string read_text_file(const fs::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw ConfigError(fmt::format("cannot read {} {}", what, path.string()));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Reads a field of a kubeconfig entry, checking its type.
class Fields {
 public:
  Fields(const json& object, std::string where) : object_(object), where_(std::move(where)) {
    if (!object_.is_object() && !object_.is_null()) {
      throw ConfigError(fmt::format("{}: expected a map", where_));
    }
  }

  [[nodiscard]] std::string string(const char* key) const {
    const auto* value = find(key);
    if (value == nullptr || value->is_null()) {
      return {};
    }
    if (!value->is_string()) {
      throw ConfigError(fmt::format("{}: {} must be a string", where_, key));
    }
    return value->get<std::string>();
  }

  [[nodiscard]] bool boolean(const char* key) const {
    const auto* value = find(key);
    if (value == nullptr || value->is_null()) {
      return false;
    }
    if (!value->is_boolean()) {
      throw ConfigError(fmt::format("{}: {} must be true or false", where_, key));
    }
    return value->get<bool>();
  }

  [[nodiscard]] std::vector<std::string> strings(const char* key) const {
    std::vector<std::string> out;
    const auto* value = find(key);
    if (value == nullptr || value->is_null()) {
      return out;
    }
    if (!value->is_array()) {
      throw ConfigError(fmt::format("{}: {} must be a list", where_, key));
    }
    for (const auto& item : *value) {
      if (!item.is_string()) {
        throw ConfigError(fmt::format("{}: {} must be a list of strings", where_, key));
      }
      out.push_back(item.get<std::string>());
    }
    return out;
  }

  // The *-data fields are base64 of PEM.
  [[nodiscard]] std::string base64(const char* key) const {
    const auto encoded = string(key);
    if (encoded.empty()) {
      return {};
    }
    auto decoded = base64_decode(encoded);
    if (!decoded) {
      throw ConfigError(fmt::format("{}: {} is not valid base64", where_, key));
    }
    return *std::move(decoded);
  }

  [[nodiscard]] const json* find(const char* key) const {
    if (!object_.is_object()) {
      return nullptr;
    }
    const auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  [[nodiscard]] const std::string& where() const { return where_; }

 private:
  const json& object_;
  std::string where_;
};

std::string resolve_path(const std::string& path, const fs::path& file) {
  if (path.empty() || fs::path(path).is_absolute()) {
    return path;
  }
  return (file.parent_path() / path).lexically_normal().string();
}

KubeconfigCluster parse_cluster(const json& entry, const fs::path& file, const std::string& name) {
  const Fields fields(entry, fmt::format("{}: cluster \"{}\"", file.string(), name));
  KubeconfigCluster cluster;
  cluster.server = fields.string("server");
  cluster.tls_server_name = fields.string("tls-server-name");
  cluster.insecure_skip_tls_verify = fields.boolean("insecure-skip-tls-verify");
  cluster.certificate_authority = resolve_path(fields.string("certificate-authority"), file);
  cluster.certificate_authority_data = fields.base64("certificate-authority-data");
  cluster.proxy_url = fields.string("proxy-url");
  if (const auto* extensions = fields.find("extensions"); extensions && extensions->is_array()) {
    for (const auto& extension : *extensions) {
      if (extension.is_object() && extension.value("name", "") == kExecExtensionName) {
        cluster.exec_extension = extension.value("extension", json());
      }
    }
  }
  cluster.defined_in = file;
  return cluster;
}

ExecConfig parse_exec(const json& entry, const fs::path& file, const std::string& where) {
  const Fields fields(entry, where + ": exec");
  ExecConfig exec;
  exec.command = fields.string("command");
  // A command with a '/' is a path and resolves like the other paths; a bare name uses $PATH.
  if (exec.command.find('/') != std::string::npos) {
    exec.command = resolve_path(exec.command, file);
  }
  exec.args = fields.strings("args");
  if (const auto* env = fields.find("env"); env != nullptr && !env->is_null()) {
    if (!env->is_array()) {
      throw ConfigError(fields.where() + ": env must be a list of {name, value}");
    }
    for (const auto& item : *env) {
      const Fields variable(item, fields.where() + ": env");
      exec.env.emplace_back(variable.string("name"), variable.string("value"));
    }
  }
  exec.api_version = fields.string("apiVersion");
  exec.interactive_mode = fields.string("interactiveMode");
  exec.provide_cluster_info = fields.boolean("provideClusterInfo");
  exec.install_hint = fields.string("installHint");
  return exec;
}

KubeconfigUser parse_user(const json& entry, const fs::path& file, const std::string& name) {
  const auto where = fmt::format("{}: user \"{}\"", file.string(), name);
  const Fields fields(entry, where);
  KubeconfigUser user;
  user.client_certificate = resolve_path(fields.string("client-certificate"), file);
  user.client_certificate_data = fields.base64("client-certificate-data");
  user.client_key = resolve_path(fields.string("client-key"), file);
  user.client_key_data = fields.base64("client-key-data");
  user.token = fields.string("token");
  user.token_file = resolve_path(fields.string("tokenFile"), file);
  user.username = fields.string("username");
  user.password = fields.string("password");
  user.impersonate = fields.string("as");
  user.impersonate_uid = fields.string("as-uid");
  user.impersonate_groups = fields.strings("as-groups");
  if (const auto* exec = fields.find("exec"); exec != nullptr && !exec->is_null()) {
    user.exec = parse_exec(*exec, file, where);
  }
  if (const auto* provider = fields.find("auth-provider");
      provider != nullptr && !provider->is_null()) {
    user.auth_provider = Fields(*provider, where + ": auth-provider").string("name");
    if (user.auth_provider.empty()) {
      user.auth_provider = "(unnamed)";
    }
  }
  user.defined_in = file;
  return user;
}

KubeconfigContext parse_context(const json& entry, const fs::path& file, const std::string& name) {
  const Fields fields(entry, fmt::format("{}: context \"{}\"", file.string(), name));
  return KubeconfigContext{fields.string("cluster"), fields.string("user"),
                           fields.string("namespace"), file};
}

// Adds the named entries of one list (clusters, users, contexts); the first file to define a
// name keeps it, whole (no field merging).
template <class Entry, class Parse>
void merge_named(std::map<std::string, Entry>& into, const json& document, const char* list_key,
                 const char* item_key, const fs::path& file, Parse parse) {
  const auto it = document.find(list_key);
  if (it == document.end() || it->is_null()) {
    return;
  }
  if (!it->is_array()) {
    throw ConfigError(fmt::format("{}: {} must be a list", file.string(), list_key));
  }
  for (const auto& item : *it) {
    const Fields fields(item, fmt::format("{}: {}", file.string(), list_key));
    const auto name = fields.string("name");
    if (name.empty()) {
      throw ConfigError(fmt::format("{}: an entry of {} has no name", file.string(), list_key));
    }
    if (into.contains(name)) {
      continue;
    }
    const auto* body = fields.find(item_key);
    into.emplace(name, parse(body != nullptr ? *body : json(), file, name));
  }
}

std::string join_names(const auto& entries) {
  std::vector<std::string> names;
  names.reserve(entries.size());
  for (const auto& [name, entry] : entries) {
    names.push_back(name);
  }
  return names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "));
}

std::string describe_files(const Kubeconfig& config) {
  std::vector<std::string> files;
  for (const auto& file : config.files) {
    files.push_back(file.string());
  }
  return files.empty() ? std::string("no kubeconfig file")
                       : fmt::format("{}", fmt::join(files, ":"));
}

void apply_cluster(RestConfig& rest, const KubeconfigCluster& cluster, const std::string& name) {
  if (cluster.server.empty()) {
    throw ConfigError(fmt::format("cluster \"{}\" has no server", name));
  }
  parse_server_url(rest, cluster.server);
  if (!cluster.proxy_url.empty()) {
    throw ConfigError(
        fmt::format("cluster \"{}\" sets proxy-url, which deploy-apps does not "
                    "support; connect directly or through a tunnel",
                    name));
  }
  const bool has_ca_file = !cluster.certificate_authority.empty();
  const bool has_ca_data = !cluster.certificate_authority_data.empty();
  if (has_ca_file && has_ca_data) {
    throw ConfigError(fmt::format(
        "cluster \"{}\" sets both certificate-authority and certificate-authority-data; keep one",
        name));
  }
  if (cluster.insecure_skip_tls_verify && (has_ca_file || has_ca_data)) {
    throw ConfigError(fmt::format(
        "cluster \"{}\" sets insecure-skip-tls-verify together with a certificate authority; "
        "keep one",
        name));
  }
  if (has_ca_data) {
    rest.ca_pem = cluster.certificate_authority_data;
    rest.ca_source = fmt::format("certificate-authority-data of cluster \"{}\"", name);
  } else if (has_ca_file) {
    rest.ca_pem = read_text_file(cluster.certificate_authority, "certificate-authority");
    rest.ca_source = cluster.certificate_authority;
  }
  rest.insecure_skip_tls_verify = cluster.insecure_skip_tls_verify;
  rest.tls_server_name = cluster.tls_server_name;

  json info = {{"server", cluster.server}};
  if (!cluster.tls_server_name.empty()) {
    info["tls-server-name"] = cluster.tls_server_name;
  }
  if (cluster.insecure_skip_tls_verify) {
    info["insecure-skip-tls-verify"] = true;
  }
  if (rest.ca_pem) {
    info["certificate-authority-data"] = base64_encode(*rest.ca_pem);
  }
  if (!cluster.exec_extension.is_null()) {
    info["config"] = cluster.exec_extension;
  }
  rest.exec_cluster_info = std::move(info);
}

std::string pem_from(const std::string& data, const std::string& file, const char* what) {
  return data.empty() ? read_text_file(file, what) : data;
}

void validate_exec(ExecConfig& exec, const std::string& user_name) {
  if (exec.command.empty()) {
    throw ConfigError(fmt::format("user \"{}\": exec needs a command", user_name));
  }
  if (exec.api_version != kExecV1 && exec.api_version != kExecV1beta1) {
    throw ConfigError(
        fmt::format(R"(user "{}": exec apiVersion "{}" is not supported (use {} or {}))", user_name,
                    exec.api_version, kExecV1, kExecV1beta1));
  }
  if (exec.interactive_mode.empty()) {
    if (exec.api_version == kExecV1) {
      throw ConfigError(fmt::format(
          "user \"{}\": exec interactiveMode is required for {} (Never, IfAvailable or Always)",
          user_name, kExecV1));
    }
    exec.interactive_mode = "IfAvailable";  // the v1beta1 default
  }
  if (exec.interactive_mode != "Never" && exec.interactive_mode != "IfAvailable" &&
      exec.interactive_mode != "Always") {
    throw ConfigError(fmt::format(
        R"(user "{}": exec interactiveMode "{}" is invalid (Never, IfAvailable or Always))",
        user_name, exec.interactive_mode));
  }
}

void apply_user(RestConfig& rest, const KubeconfigUser& user, const std::string& name) {
  if (!user.auth_provider.empty()) {
    throw ConfigError(fmt::format(
        "user \"{}\" uses auth-provider \"{}\", which kubectl removed; use an exec credential "
        "plugin instead",
        name, user.auth_provider));
  }
  const auto both = [&](bool a, bool b, const char* file_key, const char* data_key) {
    if (a && b) {
      throw ConfigError(
          fmt::format("user \"{}\" sets both {} and {}; keep one", name, file_key, data_key));
    }
  };
  const bool cert_file = !user.client_certificate.empty();
  const bool cert_data = !user.client_certificate_data.empty();
  const bool key_file = !user.client_key.empty();
  const bool key_data = !user.client_key_data.empty();
  both(cert_file, cert_data, "client-certificate", "client-certificate-data");
  both(key_file, key_data, "client-key", "client-key-data");
  const bool has_cert = cert_file || cert_data;
  const bool has_key = key_file || key_data;
  if (has_cert != has_key) {
    throw ConfigError(fmt::format(
        "user \"{}\" needs both a client certificate and a client key (it has only the {})", name,
        has_cert ? "certificate" : "key"));
  }
  if (has_cert) {
    rest.client_certificate_pem =
        pem_from(user.client_certificate_data, user.client_certificate, "client-certificate");
    rest.client_key_pem = pem_from(user.client_key_data, user.client_key, "client-key");
  }
  const bool has_token = !user.token.empty() || !user.token_file.empty();
  const bool has_basic = !user.username.empty() || !user.password.empty();
  if (has_token && has_basic) {
    throw ConfigError(fmt::format(
        "user \"{}\" has more than one authentication method (token and basic auth); only one "
        "is allowed",
        name));
  }
  if (!user.token.empty()) {
    rest.token = user.token;
  }
  if (!user.token_file.empty()) {
    rest.token_file = user.token_file;
  }
  if (has_basic) {
    rest.basic_auth = std::make_pair(user.username, user.password);
  }
  if (user.exec) {
    if (has_token || has_basic || has_cert) {
      // client-go: a static credential makes the exec plugin unused.
      spdlog::debug("user \"{}\": exec plugin ignored, a static credential is set", name);
    } else {
      auto exec = *user.exec;
      validate_exec(exec, name);
      rest.exec = std::move(exec);
    }
  }
  rest.impersonate = user.impersonate;
  rest.impersonate_uid = user.impersonate_uid;
  rest.impersonate_groups = user.impersonate_groups;
}

}  // namespace

std::vector<fs::path> split_kubeconfig_list(std::string_view value) {
  std::vector<fs::path> files;
  std::size_t start = 0;
  while (start <= value.size()) {
    const auto colon = value.find(':', start);
    const auto entry = value.substr(
        start, colon == std::string_view::npos ? std::string_view::npos : colon - start);
    if (!entry.empty()) {
      fs::path path{std::string(entry)};
      if (std::find(files.begin(), files.end(), path) == files.end()) {
        files.push_back(std::move(path));
      }
    }
    if (colon == std::string_view::npos) {
      break;
    }
    start = colon + 1;
  }
  return files;
}

Kubeconfig load_kubeconfig(const std::vector<fs::path>& files) {
  Kubeconfig config;
  for (const auto& file : files) {
    std::error_code error;
    if (!fs::exists(file, error)) {
      spdlog::debug("kubeconfig {} does not exist; skipped", file.string());
      continue;
    }
    const auto text = read_text_file(file, "kubeconfig");
    std::vector<json> documents;
    try {
      documents = parse_yaml_documents(text, file.string());
    } catch (const UsageError& parse_error) {
      throw ConfigError(parse_error.what());
    }
    config.files.push_back(file);
    if (documents.empty()) {
      continue;
    }
    const auto& document = documents.front();
    if (!document.is_object()) {
      throw ConfigError(fmt::format("{}: a kubeconfig must be a YAML map", file.string()));
    }
    merge_named(config.clusters, document, "clusters", "cluster", file, parse_cluster);
    merge_named(config.users, document, "users", "user", file, parse_user);
    merge_named(config.contexts, document, "contexts", "context", file, parse_context);
    if (config.current_context.empty()) {
      config.current_context = Fields(document, file.string()).string("current-context");
    }
  }
  return config;
}

void parse_server_url(RestConfig& config, const std::string& server) {
  constexpr std::string_view kHttps = "https://";
  if (!server.starts_with(kHttps)) {
    throw ConfigError(fmt::format(
        "server \"{}\" is not an https:// URL; deploy-apps only talks TLS to the API server",
        server));
  }
  std::string_view rest = std::string_view(server).substr(kHttps.size());
  const auto slash = rest.find('/');
  const auto authority = rest.substr(0, slash);
  std::string base_path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  while (!base_path.empty() && base_path.back() == '/') {
    base_path.pop_back();
  }
  std::string host;
  std::string port = "443";
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      throw ConfigError(fmt::format("server \"{}\": unterminated IPv6 address", server));
    }
    host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        throw ConfigError(fmt::format("server \"{}\": malformed host", server));
      }
      port = std::string(authority.substr(close + 2));
    }
  } else {
    const auto colon = authority.rfind(':');
    host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = std::string(authority.substr(colon + 1));
    }
  }
  if (host.empty() || port.empty() || port.find_first_not_of("0123456789") != std::string::npos ||
      port.size() > 5) {
    throw ConfigError(fmt::format("server \"{}\": malformed host or port", server));
  }
  config.server = server;
  config.host = std::move(host);
  config.port = std::move(port);
  config.base_path = std::move(base_path);
}

RestConfig resolve_context(const Kubeconfig& config,
                           const std::optional<std::string>& context_override) {
  const std::string name = context_override.value_or(config.current_context);
  if (name.empty()) {
    throw ConfigError(fmt::format(
        "no current-context is set in {}; choose one with --context (known contexts: {})",
        describe_files(config), join_names(config.contexts)));
  }
  const auto context = config.contexts.find(name);
  if (context == config.contexts.end()) {
    throw UsageError(fmt::format("context \"{}\" not found in {}; known contexts: {}", name,
                                 describe_files(config), join_names(config.contexts)));
  }
  const auto& ctx = context->second;
  const auto cluster = config.clusters.find(ctx.cluster);
  if (cluster == config.clusters.end()) {
    throw ConfigError(
        fmt::format(R"(context "{}" refers to cluster "{}", which {} does not define)", name,
                    ctx.cluster, describe_files(config)));
  }
  RestConfig rest;
  rest.context_name = name;
  rest.description = fmt::format("context \"{}\" ({})", name, ctx.defined_in.string());
  apply_cluster(rest, cluster->second, ctx.cluster);
  if (!ctx.user.empty()) {
    const auto user = config.users.find(ctx.user);
    if (user == config.users.end()) {
      throw ConfigError(fmt::format(R"(context "{}" refers to user "{}", which {} does not define)",
                                    name, ctx.user, describe_files(config)));
    }
    apply_user(rest, user->second, ctx.user);
  }
  if (!ctx.namespace_name.empty()) {
    rest.namespace_name = ctx.namespace_name;
  }
  return rest;
}

RestConfig in_cluster_config(const InClusterEnvironment& environment) {
  if (!environment.available()) {
    throw ConfigError(
        "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be "
        "set");
  }
  RestConfig rest;
  const bool ipv6 = environment.service_host.find(':') != std::string::npos;
  const auto server = fmt::format("https://{}{}{}:{}", ipv6 ? "[" : "", environment.service_host,
                                  ipv6 ? "]" : "", environment.service_port);
  parse_server_url(rest, server);
  const auto token_path = environment.service_account_dir / "token";
  if (trim(read_text_file(token_path, "service account token")).empty()) {
    throw ConfigError(fmt::format("service account token {} is empty", token_path.string()));
  }
  rest.token_file = token_path;  // re-read: projected tokens rotate
  const auto ca_path = environment.service_account_dir / "ca.crt";
  rest.ca_pem = read_text_file(ca_path, "service account CA");
  rest.ca_source = ca_path.string();
  if (!environment.pod_namespace.empty()) {
    rest.namespace_name = environment.pod_namespace;
  } else if (std::ifstream in(environment.service_account_dir / "namespace"); in) {
    std::ostringstream text;
    text << in.rdbuf();
    const auto content = text.str();  // trim() returns a view into it
    const auto name = trim(content);
    if (!name.empty()) {
      rest.namespace_name = std::string(name);
    }
  }
  rest.description = "in-cluster service account";
  return rest;
}

ResolvedTarget resolve_target(const TargetOptions& options) {
  std::vector<fs::path> files;
  if (options.kubeconfig_flag) {
    if (!fs::exists(*options.kubeconfig_flag)) {
      throw ConfigError(
          fmt::format("--kubeconfig {} does not exist", options.kubeconfig_flag->string()));
    }
    files.push_back(*options.kubeconfig_flag);
  } else if (options.kubeconfig_env && !options.kubeconfig_env->empty()) {
    files = split_kubeconfig_list(*options.kubeconfig_env);
  } else if (options.home) {
    files.push_back(*options.home / ".kube" / "config");
  }
  const auto config = load_kubeconfig(files);
  if (!config.empty()) {
    return ResolvedTarget{resolve_context(config, options.context), TargetSource::kKubeconfig};
  }
  if (options.in_cluster.available() && !options.context) {
    return ResolvedTarget{in_cluster_config(options.in_cluster), TargetSource::kInCluster};
  }
  if (!options.local_cluster_kubeconfig.empty() && fs::exists(options.local_cluster_kubeconfig)) {
    const auto local = load_kubeconfig({options.local_cluster_kubeconfig});
    auto rest = resolve_context(local, options.context);
    rest.description += ", the project's local cluster";
    return ResolvedTarget{std::move(rest), TargetSource::kLocalCluster};
  }
  if (options.context) {
    throw UsageError(fmt::format(
        "context \"{}\" not found: no kubeconfig found ($KUBECONFIG, ~/.kube/config) and the "
        "project's local cluster is not running",
        *options.context));
  }
  throw ConfigError(fmt::format(
      "no cluster configured: no kubeconfig ($KUBECONFIG, ~/.kube/config), not running in a "
      "cluster, and the project's local cluster is not running ({} is missing); start it with "
      "scripts/cluster up",
      options.local_cluster_kubeconfig.string()));
}

}  // namespace deployapps

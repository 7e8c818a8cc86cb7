#include <catch2/catch.hpp>

#include "deployapps/encoding.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/kubeconfig.hpp"
#include "support/temp_dir.hpp"

using deployapps::ConfigError;
using deployapps::load_kubeconfig;
using deployapps::resolve_context;
using deployapps::UsageError;
using deployapps::testing::TempDir;

namespace {

constexpr const char* kFirst = R"(apiVersion: v1
kind: Config
current-context: ""
clusters:
- name: shared
  cluster:
    server: https://first.example:6443
    certificate-authority: ca/first.crt
- name: only-first
  cluster:
    server: https://10.0.0.1
users:
- name: shared-user
  user:
    token: first-token
contexts:
- name: dev
  context: {cluster: shared, user: shared-user, namespace: team-a}
)";

constexpr const char* kSecond = R"(apiVersion: v1
kind: Config
current-context: second-current
clusters:
- name: shared
  cluster:
    server: https://second.example:6443
    insecure-skip-tls-verify: true
users:
- name: shared-user
  user:
    token: second-token
- name: cert-user
  user:
    client-certificate: certs/client.crt
    client-key: certs/client.key
contexts:
- name: dev
  context: {cluster: only-first, user: cert-user}
- name: second-current
  context: {cluster: only-first, user: cert-user}
)";

}  // namespace

TEST_CASE("KUBECONFIG lists split on ':' without empties or duplicates", "[kubeconfig]") {
  const auto files = deployapps::split_kubeconfig_list("/a:/b::/a:/c:");
  REQUIRE(files.size() == 3);
  CHECK(files[0] == "/a");
  CHECK(files[1] == "/b");
  CHECK(files[2] == "/c");
}

TEST_CASE("merging: first file wins whole entries, first non-empty current-context",
          "[kubeconfig]") {
  TempDir dir;
  const auto first = dir.write("one/config", kFirst);
  const auto second = dir.write("two/config", kSecond);
  dir.write("one/ca/first.crt", "PEM");
  const auto config = load_kubeconfig({dir.path() / "missing", first, second});
  CHECK(config.files.size() == 2);                    // the missing file is skipped
  CHECK(config.current_context == "second-current");  // first file's is empty
  // "shared" comes whole from the first file: no insecure flag merged in from the second.
  CHECK(config.clusters.at("shared").server == "https://first.example:6443");
  CHECK_FALSE(config.clusters.at("shared").insecure_skip_tls_verify);
  CHECK(config.users.at("shared-user").token == "first-token");
  CHECK(config.contexts.at("dev").cluster == "shared");
  CHECK(config.contexts.count("second-current") == 1);
  // Relative paths resolve against the directory of the file that defines them.
  CHECK(config.clusters.at("shared").certificate_authority ==
        (dir.path() / "one/ca/first.crt").string());
  CHECK(config.users.at("cert-user").client_certificate ==
        (dir.path() / "two/certs/client.crt").string());
}

TEST_CASE("the file order decides", "[kubeconfig]") {
  TempDir dir;
  const auto first = dir.write("one/config", kFirst);
  const auto second = dir.write("two/config", kSecond);
  const auto config = load_kubeconfig({second, first});
  CHECK(config.clusters.at("shared").server == "https://second.example:6443");
  CHECK(config.users.at("shared-user").token == "second-token");
}

TEST_CASE("context selection", "[kubeconfig]") {
  TempDir dir;
  dir.write("one/ca/first.crt", "CA PEM");
  const auto config = load_kubeconfig({dir.write("one/config", kFirst)});
  SECTION("--context picks one; namespace and token come along") {
    const auto rest = resolve_context(config, std::string("dev"));
    CHECK(rest.server == "https://first.example:6443");
    CHECK(rest.host == "first.example");
    CHECK(rest.port == "6443");
    CHECK(rest.namespace_name == "team-a");
    CHECK(rest.token == std::string("first-token"));
    CHECK(rest.ca_pem == std::string("CA PEM"));
    CHECK(rest.context_name == "dev");
  }
  SECTION("an unknown context is a usage error listing the known ones") {
    CHECK_THROWS_AS(resolve_context(config, std::string("prod")), UsageError);
    CHECK_THROWS_WITH(resolve_context(config, std::string("prod")),
                      Catch::Contains("context \"prod\" not found") && Catch::Contains("dev"));
  }
  SECTION("no current-context and no --context") {
    CHECK_THROWS_WITH(resolve_context(config, std::nullopt),
                      Catch::Contains("no current-context") && Catch::Contains("--context"));
  }
}

TEST_CASE("server URLs", "[kubeconfig]") {
  deployapps::RestConfig rest;
  deployapps::parse_server_url(rest, "https://[::1]:6443/prefix/");
  CHECK(rest.host == "::1");
  CHECK(rest.port == "6443");
  CHECK(rest.base_path == "/prefix");
  deployapps::parse_server_url(rest, "https://api.example");
  CHECK(rest.port == "443");
  CHECK(rest.base_path.empty());
  CHECK_THROWS_AS(deployapps::parse_server_url(rest, "http://api.example"), ConfigError);
  CHECK_THROWS_AS(deployapps::parse_server_url(rest, "https://api.example:port"), ConfigError);
}

namespace {

deployapps::RestConfig resolve_single(const TempDir& dir, const std::string& cluster,
                                      const std::string& user) {
  const std::string text = "clusters:\n- name: c\n  cluster:\n" + cluster +
                           "users:\n- name: u\n  user:\n" + user +
                           "contexts:\n- name: x\n  context: {cluster: c, user: u}\n"
                           "current-context: x\n";
  return resolve_context(load_kubeconfig({dir.write("config", text)}), std::nullopt);
}

constexpr const char* kServer = "    server: https://127.0.0.1:6443\n";

}  // namespace

TEST_CASE("every auth mode", "[kubeconfig][auth]") {
  TempDir dir;
  const auto b64 = [](const std::string& text) { return deployapps::base64_encode(text); };
  dir.write("pki/ca.crt", "CA FROM FILE");
  dir.write("pki/client.crt", "CERT FROM FILE");
  dir.write("pki/client.key", "KEY FROM FILE");

  SECTION("CA and client certificate from data") {
    const auto rest = resolve_single(
        dir, std::string(kServer) + "    certificate-authority-data: " + b64("CA DATA") + "\n",
        "    client-certificate-data: " + b64("CERT DATA") +
            "\n    client-key-data: " + b64("KEY DATA") + "\n");
    CHECK(rest.ca_pem == std::string("CA DATA"));
    CHECK(rest.client_certificate_pem == std::string("CERT DATA"));
    CHECK(rest.client_key_pem == std::string("KEY DATA"));
    CHECK_FALSE(rest.token.has_value());
  }
  SECTION("CA and client certificate from files, relative to the kubeconfig") {
    const auto rest =
        resolve_single(dir, std::string(kServer) + "    certificate-authority: pki/ca.crt\n",
                       "    client-certificate: pki/client.crt\n    client-key: pki/client.key\n");
    CHECK(rest.ca_pem == std::string("CA FROM FILE"));
    CHECK(rest.client_certificate_pem == std::string("CERT FROM FILE"));
    CHECK(rest.client_key_pem == std::string("KEY FROM FILE"));
  }
  SECTION("a bearer token plus tls-server-name") {
    const auto rest =
        resolve_single(dir, std::string(kServer) + "    tls-server-name: kubernetes.default.svc\n",
                       "    token: abc\n");
    CHECK(rest.token == std::string("abc"));
    CHECK(rest.tls_server_name == "kubernetes.default.svc");
  }
  SECTION("tokenFile") {
    const auto rest = resolve_single(dir, kServer, "    tokenFile: pki/token\n");
    CHECK(rest.token_file == (dir.path() / "pki/token"));
  }
  SECTION("basic auth") {
    const auto rest = resolve_single(dir, kServer, "    username: admin\n    password: secret\n");
    REQUIRE(rest.basic_auth.has_value());
    CHECK(rest.basic_auth->first == "admin");
  }
  SECTION("insecure-skip-tls-verify") {
    const auto rest = resolve_single(
        dir, std::string(kServer) + "    insecure-skip-tls-verify: true\n", "    token: abc\n");
    CHECK(rest.insecure_skip_tls_verify);
    CHECK_FALSE(rest.ca_pem.has_value());
  }
  SECTION("impersonation") {
    const auto rest =
        resolve_single(dir, kServer, "    token: abc\n    as: jane\n    as-groups: [devs, ops]\n");
    CHECK(rest.impersonate == "jane");
    CHECK(rest.impersonate_groups == std::vector<std::string>{"devs", "ops"});
  }
  SECTION("exec plugin, v1beta1 defaults interactiveMode; a relative command path resolves") {
    const auto rest =
        resolve_single(dir,
                       std::string(kServer) + "    certificate-authority-data: " + b64("CA DATA") +
                           "\n    extensions:\n    - name: client.authentication.k8s.io/exec\n"
                           "      extension: {audience: x}\n",
                       "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n"
                       "      command: ./bin/plugin\n      args: [get-token]\n"
                       "      env: [{name: REGION, value: eu}]\n      provideClusterInfo: true\n");
    REQUIRE(rest.exec.has_value());
    CHECK(rest.exec->interactive_mode == "IfAvailable");
    CHECK(rest.exec->command == (dir.path() / "bin/plugin").string());
    CHECK(rest.exec->args == std::vector<std::string>{"get-token"});
    CHECK(rest.exec->env.at(0).second == "eu");
    CHECK(rest.exec_cluster_info["server"] == "https://127.0.0.1:6443");
    CHECK(rest.exec_cluster_info["certificate-authority-data"] == b64("CA DATA"));
    CHECK(rest.exec_cluster_info["config"]["audience"] == "x");
  }
  SECTION("a bare exec command stays a $PATH lookup") {
    const auto rest =
        resolve_single(dir, kServer,
                       "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
                       "      command: aws\n      interactiveMode: Never\n");
    CHECK(rest.exec->command == "aws");
  }
  SECTION("a static credential makes the exec plugin unused (client-go)") {
    const auto rest = resolve_single(
        dir, kServer,
        "    token: static\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
        "      command: aws\n      interactiveMode: Never\n");
    CHECK_FALSE(rest.exec.has_value());
    CHECK(rest.token == std::string("static"));
  }
}

TEST_CASE("invalid kubeconfig combinations are rejected like client-go does",
          "[kubeconfig][auth]") {
  TempDir dir;
  dir.write("ca.crt", "CA");
  const auto [cluster, user, message] = GENERATE(table<std::string, std::string, std::string>({
      {"    certificate-authority: ca.crt\n    certificate-authority-data: Q0E=\n",
       "    token: a\n", "both certificate-authority and certificate-authority-data"},
      {"    insecure-skip-tls-verify: true\n    certificate-authority: ca.crt\n", "    token: a\n",
       "insecure-skip-tls-verify together with a certificate authority"},
      {"", "    token: a\n    username: u\n    password: p\n",
       "more than one authentication method"},
      {"", "    client-certificate-data: Q0E=\n",
       "needs both a client certificate and a client key"},
      {"", "    exec:\n      command: x\n      apiVersion: client.authentication.k8s.io/v1alpha1\n",
       "is not supported"},
      {"", "    exec:\n      command: x\n      apiVersion: client.authentication.k8s.io/v1\n",
       "interactiveMode is required"},
      {"", "    auth-provider:\n      name: gcp\n", "use an exec credential plugin"},
      {"    proxy-url: http://proxy:3128\n", "    token: a\n", "proxy-url"},
      {"    certificate-authority: missing.crt\n", "    token: a\n",
       "cannot read certificate-authority"},
  }));
  CAPTURE(message);
  CHECK_THROWS_AS(resolve_single(dir, std::string(kServer) + cluster, user), ConfigError);
  CHECK_THROWS_WITH(resolve_single(dir, std::string(kServer) + cluster, user),
                    Catch::Contains(message));
}

TEST_CASE("in-cluster config from the service account", "[kubeconfig][auth]") {
  TempDir dir;
  dir.write("sa/token", "  sa-token\n");
  dir.write("sa/ca.crt", "CLUSTER CA");
  dir.write("sa/namespace", "ci-jobs\n");
  deployapps::InClusterEnvironment environment;
  environment.service_host = "10.96.0.1";
  environment.service_port = "443";
  environment.service_account_dir = dir.path() / "sa";
  auto rest = deployapps::in_cluster_config(environment);
  CHECK(rest.server == "https://10.96.0.1:443");
  CHECK(rest.ca_pem == std::string("CLUSTER CA"));
  CHECK(rest.token_file == dir.path() / "sa/token");
  CHECK(rest.namespace_name == "ci-jobs");
  environment.pod_namespace = "from-env";
  CHECK(deployapps::in_cluster_config(environment).namespace_name == "from-env");
  environment.service_host = "fd00::1";
  CHECK(deployapps::in_cluster_config(environment).server == "https://[fd00::1]:443");
  dir.write("sa/token", "\n");
  CHECK_THROWS_WITH(deployapps::in_cluster_config(environment), Catch::Contains("empty"));
}

TEST_CASE("target precedence: flag, KUBECONFIG, home, in-cluster, local cluster", "[kubeconfig]") {
  TempDir dir;
  const std::string config_text =
      "clusters:\n- name: c\n  cluster: {server: 'https://NAME:6443', insecure-skip-tls-verify: "
      "true}\ncontexts:\n- name: NAME\n  context: {cluster: c}\ncurrent-context: NAME\n";
  // Each file points at a server named after where it lives.
  const auto make = [&](const std::string& name, const std::string& folder) {
    auto text = config_text;
    for (auto pos = text.find("NAME"); pos != std::string::npos; pos = text.find("NAME")) {
      text.replace(pos, 4, name);
    }
    return dir.write(folder + "/config", text);
  };
  const auto flag = make("flag", "flag");
  const auto env = make("env", "env");
  make("home", "home/.kube");
  const auto local = make("local", "local");
  dir.write("sa/token", "t");
  dir.write("sa/ca.crt", "CA");

  deployapps::TargetOptions options;
  options.kubeconfig_flag = flag;
  options.kubeconfig_env = env.string();
  options.home = dir.path() / "home";
  options.local_cluster_kubeconfig = local;
  options.in_cluster.service_host = "10.96.0.1";
  options.in_cluster.service_port = "443";
  options.in_cluster.service_account_dir = dir.path() / "sa";

  CHECK(deployapps::resolve_target(options).config.host == "flag");
  options.kubeconfig_flag.reset();
  CHECK(deployapps::resolve_target(options).config.host == "env");
  options.kubeconfig_env.reset();
  CHECK(deployapps::resolve_target(options).config.host == "home");
  options.home = dir.path() / "nowhere";
  const auto in_cluster = deployapps::resolve_target(options);
  CHECK(in_cluster.source == deployapps::TargetSource::kInCluster);
  options.in_cluster = {};
  const auto fallback = deployapps::resolve_target(options);
  CHECK(fallback.source == deployapps::TargetSource::kLocalCluster);
  CHECK(fallback.config.host == "local");
  options.context = "other";
  CHECK_THROWS_AS(deployapps::resolve_target(options), UsageError);
  options.context.reset();
  options.local_cluster_kubeconfig = dir.path() / "no-cluster";
  CHECK_THROWS_WITH(deployapps::resolve_target(options), Catch::Contains("scripts/cluster up"));
  options.kubeconfig_flag = dir.path() / "absent";
  CHECK_THROWS_WITH(deployapps::resolve_target(options), Catch::Contains("does not exist"));
}

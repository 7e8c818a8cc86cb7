#include <catch2/catch.hpp>

#include "deployapps/credentials.hpp"
#include "deployapps/errors.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using deployapps::Credential;
using deployapps::Deadline;
using deployapps::ExecConfig;
using deployapps::ExecCredentialSource;
using deployapps::testing::read_file;
using deployapps::testing::TempDir;
using nlohmann::json;

namespace {

// A real plugin: a shell script that records each run and its KUBERNETES_EXEC_INFO, then prints
// the ExecCredential given in $REPLY_FILE.
constexpr const char* kPlugin = R"SH(#!/bin/sh
set -eu
dir="$(dirname "$0")"
echo run >> "$dir/runs"
printf '%s' "$KUBERNETES_EXEC_INFO" > "$dir/exec-info.json"
printf '%s' "${REGION:-}" > "$dir/region"
echo "plugin says hello on stderr" >&2
if [ -n "${FAIL:-}" ]; then exit 7; fi
cat "$dir/reply.json"
)SH";

struct PluginFixture {
  TempDir dir;
  ExecConfig exec;

  explicit PluginFixture(const std::string& api_version = "client.authentication.k8s.io/v1") {
    exec.command = dir.write("plugin", kPlugin, true).string();
    exec.api_version = api_version;
    exec.interactive_mode = "Never";
    exec.env = {{"REGION", "eu-west-1"}};
  }

  void reply(const json& status, const std::string& api_version = "") const {
    dir.write("reply.json",
              json{{"kind", "ExecCredential"},
                   {"apiVersion", api_version.empty() ? exec.api_version : api_version},
                   {"status", status}}
                  .dump());
  }

  [[nodiscard]] int runs() const {
    const auto text = read_file(dir.path() / "runs");
    return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  }

  [[nodiscard]] json exec_info() const {
    return json::parse(read_file(dir.path() / "exec-info.json"));
  }
};

std::string iso(std::chrono::system_clock::time_point when) {
  const auto seconds = std::chrono::system_clock::to_time_t(when);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

}  // namespace

TEST_CASE("exec plugin: a token, cached until it expires", "[exec]") {
  PluginFixture plugin;
  auto now = std::chrono::system_clock::now();
  const auto clock = [&] { return now; };
  plugin.reply({{"token", "tok-1"}, {"expirationTimestamp", iso(now + 10min)}});
  ExecCredentialSource source(plugin.exec, json{{"server", "https://x"}}, clock, false);

  const auto first = source.get(Deadline::after(30s));
  CHECK(first.authorization == std::string("Bearer tok-1"));
  CHECK(plugin.runs() == 1);
  CHECK(plugin.exec_info() == json{{"kind", "ExecCredential"},
                                   {"apiVersion", "client.authentication.k8s.io/v1"},
                                   {"spec", {{"interactive", false}}}});
  CHECK(read_file(plugin.dir.path() / "region") == "eu-west-1");

  plugin.reply({{"token", "tok-2"}});
  now += 5min;
  CHECK(source.get(Deadline::after(30s)).authorization == std::string("Bearer tok-1"));
  CHECK(plugin.runs() == 1);  // still valid: cached

  now += 6min;  // past expirationTimestamp
  CHECK(source.get(Deadline::after(30s)).authorization == std::string("Bearer tok-2"));
  CHECK(plugin.runs() == 2);
  // No expirationTimestamp: kept until a 401 invalidates it.
  now += 24h;
  CHECK(source.get(Deadline::after(30s)).authorization == std::string("Bearer tok-2"));
  CHECK(plugin.runs() == 2);
  source.invalidate();
  (void)source.get(Deadline::after(30s));
  CHECK(plugin.runs() == 3);
}

TEST_CASE("exec plugin: v1beta1 with cluster info, like EKS and GKE", "[exec]") {
  PluginFixture plugin("client.authentication.k8s.io/v1beta1");
  plugin.exec.provide_cluster_info = true;
  plugin.exec.interactive_mode = "IfAvailable";
  plugin.reply({{"token", "k8s-aws-v1.abc"}});
  const json cluster = {{"server", "https://api.example:443"},
                        {"certificate-authority-data", "Q0E="},
                        {"config", {{"audience", "x"}}}};
  ExecCredentialSource source(plugin.exec, cluster, std::chrono::system_clock::now, false);
  CHECK(source.get(Deadline::after(30s)).authorization == std::string("Bearer k8s-aws-v1.abc"));
  const auto info = plugin.exec_info();
  CHECK(info["apiVersion"] == "client.authentication.k8s.io/v1beta1");
  CHECK(info["spec"]["interactive"] == false);  // stdin is not a terminal
  CHECK(info["spec"]["cluster"] == cluster);
}

TEST_CASE("exec plugin: a client certificate", "[exec]") {
  PluginFixture plugin;
  plugin.reply({{"clientCertificateData", "CERT PEM"}, {"clientKeyData", "KEY PEM"}});
  ExecCredentialSource source(plugin.exec, json::object(), std::chrono::system_clock::now, false);
  const auto credential = source.get(Deadline::after(30s));
  REQUIRE(credential.client_certificate.has_value());
  CHECK(credential.client_certificate->certificate_pem == "CERT PEM");
  CHECK_FALSE(credential.authorization.has_value());
}

TEST_CASE("exec plugin failures are clear", "[exec]") {
  PluginFixture plugin;
  SECTION("a different apiVersion in the answer") {
    plugin.reply({{"token", "t"}}, "client.authentication.k8s.io/v1beta1");
    ExecCredentialSource source(plugin.exec, json::object(), std::chrono::system_clock::now, false);
    CHECK_THROWS_WITH(source.get(Deadline::after(30s)),
                      Catch::Contains("configured to use API version "
                                      "client.authentication.k8s.io/v1, plugin returned version "
                                      "client.authentication.k8s.io/v1beta1"));
  }
  SECTION("no token nor certificate") {
    plugin.reply(json::object());
    ExecCredentialSource source(plugin.exec, json::object(), std::chrono::system_clock::now, false);
    CHECK_THROWS_WITH(source.get(Deadline::after(30s)), Catch::Contains("neither a token"));
  }
  SECTION("half a certificate") {
    plugin.reply({{"clientCertificateData", "CERT"}});
    ExecCredentialSource source(plugin.exec, json::object(), std::chrono::system_clock::now, false);
    CHECK_THROWS_WITH(source.get(Deadline::after(30s)),
                      Catch::Contains("both clientCertificateData"));
  }
  SECTION("a non-zero exit") {
    plugin.reply({{"token", "t"}});
    plugin.exec.env.emplace_back("FAIL", "1");
    ExecCredentialSource source(plugin.exec, json::object(), std::chrono::system_clock::now, false);
    CHECK_THROWS_AS(source.get(Deadline::after(30s)), deployapps::CredentialError);
    CHECK_THROWS_WITH(source.get(Deadline::after(30s)), Catch::Contains("exit code 7"));
  }
  SECTION("output that is not JSON") {
    plugin.dir.write("reply.json", "oops");
    ExecCredentialSource source(plugin.exec, json::object(), std::chrono::system_clock::now, false);
    CHECK_THROWS_WITH(source.get(Deadline::after(30s)), Catch::Contains("ExecCredential JSON"));
  }
  SECTION("a missing command shows the install hint") {
    plugin.exec.command = "deploy-apps-missing-plugin";
    plugin.exec.install_hint = "Install it with: apt-get install the-plugin";
    ExecCredentialSource source(plugin.exec, json::object(), std::chrono::system_clock::now, false);
    CHECK_THROWS_AS(source.get(Deadline::after(30s)), deployapps::ConfigError);
    CHECK_THROWS_WITH(source.get(Deadline::after(30s)),
                      Catch::Contains("apt-get install the-plugin"));
  }
  SECTION("interactiveMode Always without a terminal") {
    plugin.reply({{"token", "t"}});
    plugin.exec.interactive_mode = "Always";
    ExecCredentialSource source(plugin.exec, json::object(), std::chrono::system_clock::now, false);
    CHECK_THROWS_WITH(source.get(Deadline::after(30s)), Catch::Contains("interactive terminal"));
    CHECK(source.runs() == 0);
  }
}

TEST_CASE("token files are re-read after a minute", "[auth]") {
  TempDir dir;
  const auto path = dir.write("token", "first\n");
  auto now = std::chrono::system_clock::now();
  deployapps::TokenFileSource source(path, std::nullopt, std::nullopt, [&] { return now; });
  CHECK(source.get(Deadline::never()).authorization == std::string("Bearer first"));
  dir.write("token", "second");
  now += 30s;
  CHECK(source.get(Deadline::never()).authorization == std::string("Bearer first"));
  now += 31s;
  CHECK(source.get(Deadline::never()).authorization == std::string("Bearer second"));
}

TEST_CASE("an unreadable token file falls back to the token field", "[auth]") {
  TempDir dir;
  deployapps::TokenFileSource with_fallback(dir.path() / "absent", std::string("inline"),
                                            std::nullopt, std::chrono::system_clock::now);
  CHECK(with_fallback.get(Deadline::never()).authorization == std::string("Bearer inline"));
  deployapps::TokenFileSource without(dir.path() / "absent", std::nullopt, std::nullopt,
                                      std::chrono::system_clock::now);
  CHECK_THROWS_AS(without.get(Deadline::never()), deployapps::ConfigError);
}

TEST_CASE("static credentials: bearer, basic and certificates", "[auth]") {
  deployapps::RestConfig config;
  config.token = "abc";
  config.client_certificate_pem = "CERT";
  config.client_key_pem = "KEY";
  auto credential = deployapps::make_credential_source(config)->get(Deadline::never());
  CHECK(credential.authorization == std::string("Bearer abc"));
  REQUIRE(credential.client_certificate.has_value());
  CHECK(credential.client_certificate->key_pem == "KEY");
  deployapps::RestConfig basic;
  basic.basic_auth = std::make_pair(std::string("admin"), std::string("secret"));
  CHECK(deployapps::make_credential_source(basic)->get(Deadline::never()).authorization ==
        std::string("Basic YWRtaW46c2VjcmV0"));
}

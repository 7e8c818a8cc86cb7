#include "deployapps/credentials.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "deployapps/budget.hpp"
#include "deployapps/encoding.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/subprocess.hpp"

namespace deployapps {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string bearer(std::string_view token) {
  return fmt::format("Bearer {}", token);
}

class StaticCredentialSource : public CredentialSource {
 public:
  explicit StaticCredentialSource(Credential credential) : credential_(std::move(credential)) {}
  [[nodiscard]] Credential get(Deadline /*deadline*/) override { return credential_; }

 private:
  Credential credential_;
};

std::optional<std::string> read_token(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  const auto content = text.str();  // trim() returns a view into it
  const auto token = trim(content);
  if (token.empty()) {
    return std::nullopt;
  }
  return std::string(token);
}

std::optional<ClientCertificate> static_certificate(const RestConfig& config) {
  if (config.client_certificate_pem && config.client_key_pem) {
    return ClientCertificate{*config.client_certificate_pem, *config.client_key_pem};
  }
  return std::nullopt;
}

}  // namespace

std::unique_ptr<CredentialSource> make_credential_source(const RestConfig& config, WallClock now) {
  if (config.exec) {
    return std::make_unique<ExecCredentialSource>(*config.exec, config.exec_cluster_info,
                                                  std::move(now), ::isatty(STDIN_FILENO) == 1);
  }
  if (config.token_file) {
    return std::make_unique<TokenFileSource>(*config.token_file, config.token,
                                             static_certificate(config), std::move(now));
  }
  Credential credential;
  credential.client_certificate = static_certificate(config);
  if (config.token) {
    credential.authorization = bearer(*config.token);
  } else if (config.basic_auth) {
    credential.authorization = fmt::format(
        "Basic {}", base64_encode(config.basic_auth->first + ":" + config.basic_auth->second));
  }
  return std::make_unique<StaticCredentialSource>(std::move(credential));
}

TokenFileSource::TokenFileSource(fs::path path, std::optional<std::string> fallback_token,
                                 std::optional<ClientCertificate> certificate, WallClock now)
    : path_(std::move(path)),
      fallback_token_(std::move(fallback_token)),
      certificate_(std::move(certificate)),
      now_(std::move(now)) {}

Credential TokenFileSource::get(Deadline /*deadline*/) {
  const std::lock_guard lock(mutex_);
  const auto now = now_();
  if (token_.empty() || now - read_at_ >= kTokenFileCacheDuration) {
    if (auto token = read_token(path_)) {
      token_ = *std::move(token);
      read_at_ = now;
    } else if (fallback_token_) {
      spdlog::debug("tokenFile {} unreadable; using the token field", path_.string());
      token_ = *fallback_token_;
      read_at_ = now;
    } else if (token_.empty()) {
      throw ConfigError(fmt::format("cannot read a token from tokenFile {}", path_.string()));
    }
  }
  return Credential{bearer(token_), certificate_};
}

void TokenFileSource::invalidate() {
  const std::lock_guard lock(mutex_);
  read_at_ = {};
}

ExecCredentialSource::ExecCredentialSource(ExecConfig exec, json cluster_info, WallClock now,
                                           bool stdin_is_terminal)
    : exec_(std::move(exec)),
      cluster_info_(std::move(cluster_info)),
      now_(std::move(now)),
      stdin_is_terminal_(stdin_is_terminal) {}

Credential ExecCredentialSource::get(Deadline deadline) {
  const std::lock_guard lock(mutex_);
  // client-go reuses the credential until now > expirationTimestamp, with no skew.
  if (cached_ && (!expires_at_ || now_() <= *expires_at_)) {
    return *cached_;
  }
  cached_ = run_plugin(deadline);
  return *cached_;
}

void ExecCredentialSource::invalidate() {
  const std::lock_guard lock(mutex_);
  cached_.reset();
  expires_at_.reset();
}

int ExecCredentialSource::runs() const {
  const std::lock_guard lock(mutex_);
  return runs_;
}

Credential ExecCredentialSource::run_plugin(Deadline deadline) {
  const auto& mode = exec_.interactive_mode;
  if (mode == "Always" && !stdin_is_terminal_) {
    throw CredentialError(fmt::format(
        "exec plugin {} needs an interactive terminal (interactiveMode: Always), but stdin is "
        "not a terminal",
        exec_.command));
  }
  const bool interactive = mode != "Never" && stdin_is_terminal_;
  json info = {{"kind", "ExecCredential"},
               {"apiVersion", exec_.api_version},
               {"spec", {{"interactive", interactive}}}};
  if (exec_.provide_cluster_info) {
    info["spec"]["cluster"] = cluster_info_;
  }
  ProcessOptions options;
  options.argv.push_back(exec_.command);
  options.argv.insert(options.argv.end(), exec_.args.begin(), exec_.args.end());
  options.environment = exec_.env;
  options.environment.emplace_back("KUBERNETES_EXEC_INFO", info.dump());
  options.inherit_stdin = interactive;
  options.inherit_stderr = true;  // plugins talk to the user on stderr
  options.deadline = deadline.at_most(kExecPluginTimeout);

  ProcessResult result;
  try {
    ++runs_;
    spdlog::debug("running exec credential plugin {}", exec_.command);
    result = run_process(options);
  } catch (const SpawnError& error) {
    std::string message = fmt::format("exec credential plugin: {}", error.what());
    if (!exec_.install_hint.empty()) {
      message += "\n" + exec_.install_hint;
    }
    if (error.error_number() == ENOENT) {
      throw ConfigError(message);
    }
    throw CredentialError(message);
  }
  if (result.timed_out) {
    throw TimeoutError(fmt::format("exec credential plugin {} did not finish within {}",
                                   exec_.command, format_duration(kExecPluginTimeout)));
  }
  if (result.exit_code != 0) {
    throw CredentialError(fmt::format("exec credential plugin {} failed with exit code {}",
                                      exec_.command, result.exit_code));
  }
  json output;
  try {
    output = json::parse(result.stdout_text);
  } catch (const json::parse_error&) {
    throw CredentialError(fmt::format(
        "exec credential plugin {} did not print an ExecCredential JSON object", exec_.command));
  }
  const auto fail = [&](std::string_view why) {
    return CredentialError(fmt::format("exec credential plugin {}: {}", exec_.command, why));
  };
  if (!output.is_object() || output.value("kind", "") != "ExecCredential") {
    throw fail("output is not an ExecCredential");
  }
  const auto returned_version = output.value("apiVersion", "");
  if (returned_version != exec_.api_version) {
    throw fail(
        fmt::format("exec plugin is configured to use API version {}, plugin returned "
                    "version {}",
                    exec_.api_version, returned_version));
  }
  const auto status = output.find("status");
  if (status == output.end() || !status->is_object()) {
    throw fail("the ExecCredential has no status");
  }
  Credential credential;
  const auto token = status->value("token", "");
  const auto cert = status->value("clientCertificateData", "");
  const auto key = status->value("clientKeyData", "");
  if (!token.empty()) {
    credential.authorization = bearer(token);
  }
  if (!cert.empty() || !key.empty()) {
    if (cert.empty() || key.empty()) {
      throw fail("status needs both clientCertificateData and clientKeyData");
    }
    credential.client_certificate = ClientCertificate{cert, key};
  }
  if (!credential.authorization && !credential.client_certificate) {
    throw fail("status has neither a token nor a client certificate");
  }
  expires_at_.reset();
  if (const auto expiry = status->value("expirationTimestamp", ""); !expiry.empty()) {
    try {
      expires_at_ = parse_rfc3339(expiry);
    } catch (const ConfigError&) {
      throw fail(fmt::format("invalid expirationTimestamp \"{}\"", expiry));
    }
  }
  return credential;
}

}  // namespace deployapps

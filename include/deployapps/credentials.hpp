// Credentials for API requests: static tokens and certificates, token files that rotate, and
// client.authentication.k8s.io exec plugins (EKS, GKE...) with caching until expiry.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "deployapps/kubeconfig.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

using WallClock = std::function<std::chrono::system_clock::time_point()>;

struct ClientCertificate {
  std::string certificate_pem;
  std::string key_pem;
  bool operator==(const ClientCertificate&) const = default;
};

struct Credential {
  std::optional<std::string> authorization;  // the whole Authorization header value
  std::optional<ClientCertificate> client_certificate;
};

class CredentialSource {
 public:
  CredentialSource() = default;
  CredentialSource(const CredentialSource&) = delete;
  CredentialSource& operator=(const CredentialSource&) = delete;
  CredentialSource(CredentialSource&&) = delete;
  CredentialSource& operator=(CredentialSource&&) = delete;
  virtual ~CredentialSource() = default;

  // The credential for the next request; may run a plugin. Thread-safe.
  [[nodiscard]] virtual Credential get(Deadline deadline) = 0;
  // Called after a 401: the next get() must not reuse a cached credential.
  virtual void invalidate() {}
};

// Credentials for one RestConfig. `now` is the wall clock (tests replace it).
[[nodiscard]] std::unique_ptr<CredentialSource> make_credential_source(
    const RestConfig& config, WallClock now = std::chrono::system_clock::now);

// A bearer token read from a file, re-read at most once a minute (projected service-account
// tokens rotate). When the file cannot be read, `fallback_token` is used if set. A client
// certificate may come along (kubeconfig allows token plus certificate).
class TokenFileSource : public CredentialSource {
 public:
  TokenFileSource(std::filesystem::path path, std::optional<std::string> fallback_token,
                  std::optional<ClientCertificate> certificate, WallClock now);
  [[nodiscard]] Credential get(Deadline deadline) override;
  void invalidate() override;

 private:
  std::filesystem::path path_;
  std::optional<std::string> fallback_token_;
  std::optional<ClientCertificate> certificate_;
  WallClock now_;
  std::mutex mutex_;
  std::string token_;
  std::chrono::system_clock::time_point read_at_{};
};

// Runs an exec credential plugin and caches its answer until its expirationTimestamp (forever
// when it gives none), as client-go does.
class ExecCredentialSource : public CredentialSource {
 public:
  ExecCredentialSource(ExecConfig exec, nlohmann::json cluster_info, WallClock now,
                       bool stdin_is_terminal);
  [[nodiscard]] Credential get(Deadline deadline) override;
  void invalidate() override;
  // How many times the plugin ran (for tests and request accounting).
  [[nodiscard]] int runs() const;

 private:
  Credential run_plugin(Deadline deadline);

  ExecConfig exec_;
  nlohmann::json cluster_info_;
  WallClock now_;
  bool stdin_is_terminal_;
  mutable std::mutex mutex_;
  std::optional<Credential> cached_;
  std::optional<std::chrono::system_clock::time_point> expires_at_;
  int runs_ = 0;
};

// How long a token file's content is reused before it is read again (client-go's value).
inline constexpr auto kTokenFileCacheDuration = std::chrono::minutes(1);

}  // namespace deployapps

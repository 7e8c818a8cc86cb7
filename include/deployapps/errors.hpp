// The one exception hierarchy of deploy-apps. Every failure that ends a command is one of these;
// run() catches them once and maps the type to an exit code (exit_code_for).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace deployapps {

// Process exit codes, shared by every subcommand.
enum class ExitCode : int {
  kOk = 0,
  kFailed = 1,  // the deploy (or a cluster operation) failed
  kUsage = 2,   // bad input: nothing was built or applied
  kInterrupted = 130,
};

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad command line, unknown app, unusable kubeconfig or context: detected before touching anything.
class UsageError : public Error {
 public:
  using Error::Error;
};

// A template or values file that does not render.
class RenderError : public UsageError {
 public:
  using UsageError::UsageError;
};

// kubeconfig, in-cluster or credential plugin problems.
class ConfigError : public UsageError {
 public:
  using UsageError::UsageError;
};

// A credential plugin failed when it ran (it may work on the next try, so not a usage error).
class CredentialError : public Error {
 public:
  using Error::Error;
};

// Network-level failure: DNS, connect, TLS, reset.
class NetworkError : public Error {
 public:
  using Error::Error;
};

class TlsError : public NetworkError {
 public:
  using NetworkError::NetworkError;
};

// An operation ran past its deadline.
class TimeoutError : public NetworkError {
 public:
  using NetworkError::NetworkError;
};

// One or more apps did not roll out (each was rolled back where possible); the report says which.
class DeployFailed : public Error {
 public:
  using Error::Error;
};

// Ctrl-C ended the command; the message says what state each app was left in.
class InterruptedError : public Error {
 public:
  using Error::Error;
};

// One `causes[]` entry of a Kubernetes Status.
struct StatusCause {
  std::string reason;
  std::string message;
  std::string field;
};

// A non-2xx answer from the Kubernetes API, with the Status fields it carried.
class ApiError : public Error {
 public:
  ApiError(const std::string& message, unsigned http_status, std::string reason,
           std::vector<StatusCause> causes = {})
      : Error(message),
        http_status_(http_status),
        reason_(std::move(reason)),
        causes_(std::move(causes)) {}

  [[nodiscard]] unsigned http_status() const noexcept { return http_status_; }
  // Status.reason, e.g. "Forbidden", "Invalid", "Conflict", "NotFound", "Expired".
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }
  [[nodiscard]] const std::vector<StatusCause>& causes() const noexcept { return causes_; }

 private:
  unsigned http_status_;
  std::string reason_;
  std::vector<StatusCause> causes_;
};

// Maps an exception thrown out of a command to the process exit code.
[[nodiscard]] ExitCode exit_code_for(const std::exception& error) noexcept;

}  // namespace deployapps

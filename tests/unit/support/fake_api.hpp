// A small fake Kubernetes API server on the TLS test server: discovery for the kinds our
// templates use, and server-side apply that stores objects and bumps resourceVersion only when an
// object changes. Enough to test the deployer's request flow without a cluster.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "deployapps/kubeconfig.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"
#include "support/tls_server.hpp"

namespace deployapps::testing {

class FakeApiServer {
 public:
  FakeApiServer();

  // Answers requests to `path` (exact, without query) with this reply instead.
  void override_path(const std::string& method, const std::string& path,
                     std::function<ServerReply(const ReceivedRequest&)> reply);
  // Leaves requests that match unanswered (checked before the overrides), as a stalled API does.
  void stall_when(std::function<bool(const ReceivedRequest&)> matches);
  // Called with every request before it is answered (e.g. to break something when one arrives).
  void on_request(std::function<void(const ReceivedRequest&)> observer);
  // Answers the next `count` updates (PUT) of `path` with 409 Conflict, as when a controller
  // wrote the object (its status) between a read and the update.
  void conflict_next_updates(const std::string& path, int count);
  // Rejects pod creation (including dry runs) with this Status, as Pod Security admission does.
  void reject_pods(const nlohmann::json& status);

  [[nodiscard]] std::optional<nlohmann::json> stored(const std::string& path) const;
  [[nodiscard]] std::vector<ReceivedRequest> requests() const { return server_->requests(); }
  [[nodiscard]] std::size_t request_count() const { return server_->request_count(); }

  [[nodiscard]] RestConfig rest_config() const;
  // Writes a kubeconfig for this server (context "fake") into `dir` and returns its path.
  std::filesystem::path write_kubeconfig(const TempDir& dir) const;

 private:
  ServerReply handle(const ReceivedRequest& request);

  TestCa ca_{"fake apiserver CA"};
  mutable std::mutex mutex_;
  std::map<std::string, nlohmann::json> objects_;
  std::map<std::string, std::function<ServerReply(const ReceivedRequest&)>> overrides_;
  std::vector<std::function<bool(const ReceivedRequest&)>> stalls_;
  std::vector<std::function<void(const ReceivedRequest&)>> observers_;
  std::map<std::string, int> conflicts_;
  std::optional<nlohmann::json> pod_rejection_;
  long next_version_ = 100;
  std::unique_ptr<TlsTestServer> server_;
};

}  // namespace deployapps::testing

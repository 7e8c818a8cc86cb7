// An app's objects other than its Deployment (Service, Ingress, HTTPRoute, PDB, NetworkPolicy,
// ServiceAccount) as they were before this run's apply, for those the apply changes: what a
// rollback puts back besides the pod template.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "deployapps/kube_client.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

struct RolloutObject {
  std::string display;  // kubectl's notation, e.g. "service/go-app"
  std::string path;     // the object's API path
  nlohmann::json object;
};

struct RestoreOutcome {
  bool ok = true;
  std::vector<std::string> lines;  // one per object, for people
};

class ObjectSnapshot {
 public:
  // Asks the API which of `objects` the apply will change (a server-side dry run compared with
  // the live object), and records the live state of those (nullopt: the apply creates it).
  static ObjectSnapshot take(KubeClient& client, const std::vector<RolloutObject>& objects,
                             Deadline deadline);

  [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }
  [[nodiscard]] std::string describe()
      const;  // e.g. "service/go-app, ingress.networking.k8s.io/go-app"
  // Puts every recorded object back as it was: the recorded object replaces the live one (PUT,
  // its field managers included), and one this run created is deleted. Never throws.
  RestoreOutcome restore(KubeClient& client, Deadline deadline) const;

 private:
  struct Entry {
    std::string display;
    std::string path;
    std::optional<nlohmann::json> before;
  };
  static void put_back(KubeClient& client, const Entry& entry, Deadline deadline);
  std::vector<Entry> entries_;
};

// Whether two copies of an object say the same, ignoring what the server keeps for itself:
// status, and metadata other than labels and annotations.
[[nodiscard]] bool same_object_ignoring_server_fields(const nlohmann::json& a,
                                                      const nlohmann::json& b);

}  // namespace deployapps

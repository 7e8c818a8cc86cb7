// API discovery: maps apiVersion + kind to the REST resource (plural name, namespaced or not),
// from GET /api/v1 and /apis/<group>/<version>, cached per group version.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "deployapps/kube_client.hpp"

namespace deployapps {

struct ResourceInfo {
  std::string api_version;  // "v1", "apps/v1"
  std::string kind;
  std::string plural;  // "deployments"
  bool namespaced = false;
};

class Discovery {
 public:
  explicit Discovery(KubeClient& client) : client_(client) {}

  // Throws UsageError when the server does not serve the kind (a template that cannot apply).
  [[nodiscard]] ResourceInfo resolve(const std::string& api_version, const std::string& kind,
                                     Deadline deadline);

  // How many discovery documents were fetched (each group version once).
  [[nodiscard]] std::size_t documents_fetched() const noexcept { return cache_.size(); }

 private:
  KubeClient& client_;
  // apiVersion -> kind -> resource
  std::map<std::string, std::map<std::string, ResourceInfo>> cache_;
};

// /api/v1 or /apis/<group>/<version>
[[nodiscard]] std::string api_root(std::string_view api_version);

// The collection path: <root>[/namespaces/<ns>]/<plural>
[[nodiscard]] std::string collection_path(const ResourceInfo& resource,
                                          std::string_view namespace_name);
// The object path: <collection>/<name>
[[nodiscard]] std::string object_path(const ResourceInfo& resource, std::string_view namespace_name,
                                      std::string_view name);

}  // namespace deployapps

#include "deployapps/discovery.hpp"

#include <fmt/format.h>

#include "deployapps/errors.hpp"

namespace deployapps {

std::string api_root(std::string_view api_version) {
  // The core group has no name: its apiVersion is just "v1".
  if (api_version.find('/') == std::string_view::npos) {
    return fmt::format("/api/{}", api_version);
  }
  return fmt::format("/apis/{}", api_version);
}

std::string collection_path(const ResourceInfo& resource, std::string_view namespace_name) {
  if (resource.namespaced) {
    return fmt::format("{}/namespaces/{}/{}", api_root(resource.api_version), namespace_name,
                       resource.plural);
  }
  return fmt::format("{}/{}", api_root(resource.api_version), resource.plural);
}

std::string object_path(const ResourceInfo& resource, std::string_view namespace_name,
                        std::string_view name) {
  return fmt::format("{}/{}", collection_path(resource, namespace_name), name);
}

ResourceInfo Discovery::resolve(const std::string& api_version, const std::string& kind,
                                Deadline deadline) {
  auto group = cache_.find(api_version);
  if (group == cache_.end()) {
    std::map<std::string, ResourceInfo> kinds;
    const auto document = client_.get_if_exists(api_root(api_version), deadline);
    if (document && document->contains("resources") && (*document)["resources"].is_array()) {
      for (const auto& resource : (*document)["resources"]) {
        const auto name = resource.value("name", "");
        // "deployments/status" and the like are subresources.
        if (name.empty() || name.find('/') != std::string::npos) {
          continue;
        }
        kinds.emplace(resource.value("kind", ""),
                      ResourceInfo{api_version, resource.value("kind", ""), name,
                                   resource.value("namespaced", false)});
      }
    }
    group = cache_.emplace(api_version, std::move(kinds)).first;
  }
  if (group->second.empty()) {
    throw UsageError(fmt::format("the cluster does not serve apiVersion {} (needed for kind {})",
                                 api_version, kind));
  }
  const auto resource = group->second.find(kind);
  if (resource == group->second.end()) {
    throw UsageError(fmt::format("the cluster has no kind {} in apiVersion {}", kind, api_version));
  }
  return resource->second;
}

}  // namespace deployapps

// Server-side apply of an app's rendered objects, in dependency order.
//
// Every object is first applied with dryRun=All, and each workload's pod template is dry-run
// created as a Pod so that admission (Pod Security) judges it; only when all of that passes are
// the objects applied for real. Namespaces go first, so that the server can validate what goes
// into a namespace this deploy creates.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "deployapps/discovery.hpp"
#include "deployapps/kube_client.hpp"
#include "deployapps/manifests.hpp"

namespace deployapps {

inline constexpr std::string_view kFieldManager = "deploy-apps";

enum class DryRun { kNone, kServer };

// The server-side apply PATCH of `object` at `path`: every apply and dry run of the deployer is
// this one request. `force` takes fields another manager owns (kubectl's --force-conflicts).
[[nodiscard]] ApiRequest apply_request(const std::string& path, const nlohmann::json& object,
                                       std::string_view field_manager, bool dry_run, bool force);

// A 409 Conflict from a non-forced apply whose only conflicting field is .spec.replicas: the
// manager that owns it (an autoscaler, `kubectl scale`), else "".
[[nodiscard]] std::string replicas_owner_in_conflict(const ApiError& error);

struct PlannedObject {
  nlohmann::json object;
  std::string source;  // the template it came from
  ResourceInfo resource;
  std::string namespace_name;  // empty for cluster-scoped kinds
  std::string name;
  std::string path;

  // kubectl's notation, e.g. "deployment.apps/go-app", "namespace/go-app".
  [[nodiscard]] std::string display() const;
};

// Resolves every object against discovery, so that a kind the cluster lacks fails before
// anything is sent. Throws UsageError.
[[nodiscard]] std::vector<PlannedObject> plan_objects(Discovery& discovery,
                                                      const std::vector<RenderedObject>& objects,
                                                      Deadline deadline);

enum class ApplyOperation { kCreated, kConfigured, kUnchanged, kSkipped };

[[nodiscard]] std::string_view operation_name(ApplyOperation operation) noexcept;

struct ObjectResult {
  std::string display;
  std::string api_version;
  std::string kind;
  std::string namespace_name;
  std::string name;
  ApplyOperation operation = ApplyOperation::kSkipped;
  std::string resource_version;
  std::vector<std::string> warnings;
  std::string note;
};

struct ApplyResult {
  std::vector<ObjectResult> objects;
  std::vector<std::string> notes;  // e.g. checks that could not run
};

struct ApplyOptions {
  DryRun dry_run = DryRun::kNone;
  std::string field_manager{kFieldManager};
};

class Applier {
 public:
  Applier(KubeClient& client, ApplyOptions options)
      : client_(client), options_(std::move(options)) {}

  // Throws ApiError (e.g. 403 from Pod Security, 422 from validation) at the first rejection; in
  // that case nothing beyond the namespaces has been changed.
  ApplyResult apply(const std::vector<PlannedObject>& plan, Deadline deadline);

 private:
  ApiResponse apply_one(const PlannedObject& object, bool dry_run, bool force, Deadline deadline);
  // The dry run of one object, not forced first: a .spec.replicas owned by another manager (an
  // HPA) is then dropped from `object`, so the real apply leaves it to its owner. Other
  // conflicts are forced, as kubectl --force-conflicts would.
  ApiResponse dry_run_respecting_replicas(PlannedObject& object, ApplyResult& result,
                                          Deadline deadline);
  // Dry-run creates a Pod from a workload's template; throws ApiError when admission rejects it.
  void check_pod_admission(const PlannedObject& workload, Deadline deadline);

  KubeClient& client_;
  ApplyOptions options_;
};

}  // namespace deployapps

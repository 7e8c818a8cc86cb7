// Judging a rollout from recorded API objects, exactly as kubectl does: the rollout status of a
// Deployment (kubectl rollout status), the template `kubectl rollout undo` restores, and the
// ReplicaSet a Deployment's current template belongs to. Pure functions over JSON, so that they
// can be tested on objects recorded from a real cluster.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "deployapps/errors.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

enum class RolloutPhase {
  kWaiting,  // still progressing (or the controller has not seen the new spec yet)
  kDone,     // successfully rolled out
  kFailed,   // the controller gave up: ProgressDeadlineExceeded
};

struct RolloutStatus {
  RolloutPhase phase = RolloutPhase::kWaiting;
  // kubectl's message, without the trailing newline, e.g.
  // `Waiting for deployment "go-app" rollout to finish: 1 of 2 updated replicas are available...`
  std::string message;
};

// kubectl rollout status for a Deployment object (pkg/polymorphichelpers/rollout_status.go).
// `revision` > 0 demands that exact revision and throws Error when the Deployment runs another.
[[nodiscard]] RolloutStatus deployment_rollout_status(const nlohmann::json& deployment,
                                                      long revision = 0);

// The integer in deployment.kubernetes.io/revision; 0 when missing, nullopt when unparsable.
[[nodiscard]] std::optional<long> revision_of(const nlohmann::json& object);

// ReplicaSets of `list_items` controlled by the Deployment (ownerReference controller=true with
// its uid).
[[nodiscard]] std::vector<nlohmann::json> owned_replica_sets(
    const nlohmann::json& deployment, const std::vector<nlohmann::json>& replica_sets);

// Pod templates equal but for the pod-template-hash label (kubectl's EqualIgnoreHash, with null
// and empty maps and lists counting as the same).
[[nodiscard]] bool templates_equal_ignoring_hash(const nlohmann::json& a, const nlohmann::json& b);

// The ReplicaSet running the Deployment's current template (the oldest if several), if any.
[[nodiscard]] std::optional<nlohmann::json> new_replica_set(
    const nlohmann::json& deployment, const std::vector<nlohmann::json>& owned);

// A label selector (spec.selector) as the labelSelector query parameter: matchLabels as k=v,
// matchExpressions as `k in (a,b)`, `k notin (a)`, `k`, `!k`.
[[nodiscard]] std::string selector_query(const nlohmann::json& selector);

// When the drain check stops waiting for old pods to exit, judged on each pod's own grace
// period (not the new template's): a deleted pod's deletionTimestamp (the API sets it to the
// deletion time plus that pod's grace period) plus `margin`; a pod not deleted yet, `now` plus
// its spec.terminationGracePeriodSeconds (30 when unset) plus `margin`. The latest of these;
// `now` when there are none. Times are the API server's: `margin` covers a small clock skew.
[[nodiscard]] std::chrono::system_clock::time_point drain_until(
    const std::vector<nlohmann::json>& old_pods, std::chrono::system_clock::time_point now,
    Duration margin);

// Thrown when a rollback cannot be planned; the message is kubectl's.
class RollbackError : public Error {
 public:
  using Error::Error;
};

struct UndoPlan {
  long revision = 0;     // the revision restored
  bool skipped = false;  // the Deployment already runs that template
  std::string message;   // kubectl's: "skipped rollback (...)" or "deployment.apps/N rolled back"
  nlohmann::json patch;  // the JSON patch to send (application/json-patch+json)
  nlohmann::json template_;  // the restored pod template (without pod-template-hash)
};

// kubectl rollout undo [--to-revision]: picks the revision (0 = the previous one), refuses a
// paused Deployment, and builds the patch. Throws RollbackError.
[[nodiscard]] UndoPlan plan_undo(const nlohmann::json& deployment,
                                 const std::vector<nlohmann::json>& replica_sets,
                                 long to_revision = 0);

}  // namespace deployapps

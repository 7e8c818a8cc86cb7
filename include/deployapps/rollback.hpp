// Putting back what one run changed: the exact pod template found before its apply (never
// kubectl's "previous revision", which is older than the live one when the template was not
// changed or the controller had not yet acted), and every other object the apply changed.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "deployapps/console.hpp"
#include "deployapps/kube_client.hpp"
#include "deployapps/object_snapshot.hpp"
#include "deployapps/rollout.hpp"
#include "deployapps/rollout_follow.hpp"

namespace deployapps {

// What the cluster held before this run's apply, for what the apply changes.
struct PreApplyState {
  std::optional<nlohmann::json> pod_template;  // nullopt: the Deployment did not exist
  bool template_changed = false;               // the apply replaces pods
  ObjectSnapshot objects;                      // the other objects it changes
};

struct RollbackResult {
  bool rolled_back = false;  // something was put back
  bool complete = false;     // all of it, and the restored pods are available
  std::string state_left;    // what the cluster is left doing, for people
};

// Restores `before` by `deadline`: the pod template first (a JSON patch replacing spec.template,
// judged from the object the PATCH returned), then the other objects, then follows the restored
// ReplicaSet until it is available. Never throws; says what it did on the console.
[[nodiscard]] RollbackResult roll_back(const PreApplyState& before, const RolloutTarget& target,
                                       const std::string& old_version, KubeClient& client,
                                       RolloutFollower& follower, Deadline deadline,
                                       Console& console);

}  // namespace deployapps

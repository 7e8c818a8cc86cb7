// What one rollout knows of the cluster: its Deployment, ReplicaSets and Pods as the list and the
// watch events left them, which ReplicaSet is new and which are old, and how old pods ended.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "deployapps/console.hpp"
#include "deployapps/rollout.hpp"
#include "deployapps/rollout_status.hpp"
#include "deployapps/rollout_watch.hpp"

namespace deployapps {

class RolloutView {
 public:
  RolloutView(std::string app, Console& console) : app_(std::move(app)), console_(console) {}

  // The lists' items, before the watches start.
  void load(nlohmann::json deployment, const nlohmann::json& replica_sets,
            const nlohmann::json& pods);
  // Folds watch events in; returns a watch error that ends the rollout, if any.
  std::optional<std::string> absorb(std::vector<WatchEvent> events);
  // Re-finds the new and old ReplicaSets when events came since the last call. Returns whether
  // a rollout is under way (a new ReplicaSet still scaling, or `status` not done).
  bool analyse(const RolloutStatus& status);
  // From here on old pods are the restored version's: their exits are not recorded.
  void stop_recording_old_pods() { recording_old_pods_ = false; }
  // Replaces the Deployment with a fresher copy (a PATCH's response).
  void set_deployment(nlohmann::json deployment) { deployment_ = std::move(deployment); }

  [[nodiscard]] const nlohmann::json& deployment() const noexcept { return deployment_; }
  [[nodiscard]] const std::optional<nlohmann::json>& new_replica_set() const noexcept {
    return current_replica_set_;
  }
  // Pods of the new ReplicaSet that are not terminating.
  [[nodiscard]] std::vector<nlohmann::json> new_pods() const;
  // Pods of old ReplicaSets that still exist (draining or about to).
  [[nodiscard]] std::vector<nlohmann::json> old_pods() const;
  [[nodiscard]] std::size_t terminating_old_pods() const;
  [[nodiscard]] const std::string& drain_failure() const noexcept { return drain_failure_; }
  [[nodiscard]] std::vector<OldPodExit> old_pod_exits() const;
  [[nodiscard]] Clock::time_point last_event() const noexcept { return last_event_; }

 private:
  void note_old_pod(const nlohmann::json& pod, bool deleted);
  static void absorb_into(std::map<std::string, nlohmann::json>& objects, WatchEvent& event);

  std::string app_;
  Console& console_;
  nlohmann::json deployment_;
  std::map<std::string, nlohmann::json> replica_sets_;
  std::map<std::string, nlohmann::json> pods_;
  std::optional<nlohmann::json> current_replica_set_;
  std::string new_hash_;
  std::set<std::string> old_hashes_;
  std::map<std::string, OldPodExit> old_pods_;
  std::string drain_failure_;
  bool recording_old_pods_ = true;
  bool changed_ = true;  // events arrived since the ReplicaSets were last analysed
  Clock::time_point last_event_ = Clock::now();
};

// The integer at `pointer`, 0 when absent or not an integer.
[[nodiscard]] long integer_at(const nlohmann::json& object, const char* pointer);
// The pod-template-hash label of a ReplicaSet or Pod.
[[nodiscard]] std::string template_hash_of(const nlohmann::json& object);

}  // namespace deployapps

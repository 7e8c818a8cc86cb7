#include "deployapps/rollout_view.hpp"

#include <fmt/format.h>

namespace deployapps {
using nlohmann::json;

long integer_at(const json& object, const char* pointer) {
  const json::json_pointer path(pointer);
  return object.contains(path) && object.at(path).is_number_integer() ? object.at(path).get<long>()
                                                                      : 0;
}

std::string template_hash_of(const json& object) {
  return object.value(json::json_pointer("/metadata/labels/pod-template-hash"), std::string());
}

namespace {
bool terminating(const json& pod) {
  return pod.contains(json::json_pointer("/metadata/deletionTimestamp"));
}
}  // namespace

void RolloutView::load(json deployment, const json& replica_sets, const json& pods) {
  deployment_ = std::move(deployment);
  replica_sets_.clear();
  pods_.clear();
  for (const auto& item : replica_sets) {
    replica_sets_[name_of(item)] = item;
  }
  for (const auto& item : pods) {
    pods_[name_of(item)] = item;
  }
  changed_ = true;
}

std::optional<std::string> RolloutView::absorb(std::vector<WatchEvent> events) {
  for (auto& event : events) {
    if (event.type == "ERROR") {
      return event.error;
    }
    last_event_ = event.received;
    changed_ = true;
    switch (event.source) {
      case WatchSource::kDeployment:
        if (event.type == "DELETED") {
          return fmt::format("deployment.apps/{}: object has been deleted", app_);
        }
        if (event.type == "RELIST") {
          if (event.object.empty()) {
            return fmt::format("deployment.apps/{}: object has been deleted", app_);
          }
          deployment_ = event.object[0];
        } else {
          deployment_ = event.object;
        }
        break;
      case WatchSource::kReplicaSet:
        absorb_into(replica_sets_, event);
        break;
      case WatchSource::kPod:
        for (const auto& pod :
             event.type == "RELIST" ? event.object : json::array({event.object})) {
          note_old_pod(pod, event.type == "DELETED");
        }
        absorb_into(pods_, event);
        break;
      case WatchSource::kEndpointSlice:  // not watched here (drain_timeline.hpp)
        break;
    }
  }
  return std::nullopt;
}

void RolloutView::absorb_into(std::map<std::string, json>& objects, WatchEvent& event) {
  if (event.type == "RELIST") {
    objects.clear();
    for (auto& item : event.object) {
      // Named first: json's operator= takes its argument by value, and since C++17 that
      // argument is built (moved from `item`) before the left side is evaluated.
      auto name = name_of(item);
      objects[std::move(name)] = std::move(item);
    }
  } else if (event.type == "DELETED") {
    objects.erase(name_of(event.object));
  } else {
    auto name = name_of(event.object);
    objects[std::move(name)] = std::move(event.object);
  }
}

// Records how pods of old ReplicaSets end: their container's exit code once terminated.
void RolloutView::note_old_pod(const json& pod, bool deleted) {
  const auto hash = template_hash_of(pod);
  if (!recording_old_pods_ || new_hash_.empty() || hash == new_hash_ ||
      !old_hashes_.contains(hash) || (!terminating(pod) && !deleted)) {
    return;
  }
  const auto name = name_of(pod);
  auto& exit = old_pods_[name];
  exit.pod = name;
  const json::json_pointer statuses("/status/containerStatuses");
  if (pod.contains(statuses) && pod.at(statuses).is_array()) {
    for (const auto& status : pod.at(statuses)) {
      const json::json_pointer terminated("/state/terminated");
      if (status.contains(terminated) && !exit.exit_code) {
        exit.exit_code = status.at(terminated).value("exitCode", -1);
        exit.reason = status.at(terminated).value("reason", "");
        console_.line(app_, fmt::format("old pod {} exited {}{}", name, *exit.exit_code,
                                        exit.reason.empty() ? "" : " (" + exit.reason + ")"));
        if (*exit.exit_code != 0 && drain_failure_.empty()) {
          drain_failure_ = fmt::format("in-flight check: old pod {} exited {} while draining ({})",
                                       name, *exit.exit_code,
                                       *exit.exit_code == 137 ? "killed at the grace deadline"
                                                              : "its shutdown timeout cut work");
        }
      }
    }
  }
  if (deleted && exit.reason.empty()) {
    exit.reason = "deleted before its exit code was seen";
  }
}

bool RolloutView::analyse(const RolloutStatus& status) {
  if (changed_) {
    changed_ = false;
    std::vector<json> replica_sets;
    replica_sets.reserve(replica_sets_.size());
    for (const auto& [name, item] : replica_sets_) {
      replica_sets.push_back(item);
    }
    const auto owned = owned_replica_sets(deployment_, replica_sets);
    current_replica_set_ = deployapps::new_replica_set(deployment_, owned);
    if (current_replica_set_ && new_hash_ != template_hash_of(*current_replica_set_)) {
      new_hash_ = template_hash_of(*current_replica_set_);
      old_hashes_.clear();
      for (const auto& replica_set : owned) {
        if (template_hash_of(replica_set) != new_hash_) {
          old_hashes_.insert(template_hash_of(replica_set));
        }
      }
    }
  }
  // A new revision was created or is still scaling: a rollout is happening.
  return status.phase != RolloutPhase::kDone ||
         (current_replica_set_ && integer_at(*current_replica_set_, "/status/replicas") <
                                      integer_at(deployment_, "/spec/replicas"));
}

std::vector<json> RolloutView::new_pods() const {
  std::vector<json> pods;
  for (const auto& [name, pod] : pods_) {
    if (!new_hash_.empty() && template_hash_of(pod) == new_hash_ && !terminating(pod)) {
      pods.push_back(pod);
    }
  }
  return pods;
}

std::vector<json> RolloutView::old_pods() const {
  std::vector<json> pods;
  for (const auto& [name, pod] : pods_) {
    if (old_hashes_.contains(template_hash_of(pod))) {
      pods.push_back(pod);
    }
  }
  return pods;
}

std::size_t RolloutView::terminating_old_pods() const {
  std::size_t count = 0;
  for (const auto& [name, pod] : pods_) {
    count += template_hash_of(pod) != new_hash_ && terminating(pod) ? 1U : 0U;
  }
  return count;
}

std::vector<OldPodExit> RolloutView::old_pod_exits() const {
  std::vector<OldPodExit> exits;
  exits.reserve(old_pods_.size());
  for (const auto& [name, exit] : old_pods_) {
    exits.push_back(exit);
  }
  return exits;
}

}  // namespace deployapps

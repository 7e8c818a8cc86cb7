// Why a rollout is not progressing, from the new ReplicaSet's Pods, their Events and the
// ReplicaSet's conditions (kubernetes-api notes §8), and whether the cause is certain enough to
// stop waiting before the progress deadline.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "deployapps/time.hpp"

namespace deployapps {

enum class FailureKind {
  kProgressDeadline,  // the Deployment's Progressing condition says ProgressDeadlineExceeded
  kFailedCreate,      // the ReplicaSet cannot create Pods (Pod Security, quota, ...)
  kImagePull,         // ErrImagePull, ImagePullBackOff, InvalidImageName, ErrImageNeverPull
  kCrashLoop,         // the container keeps exiting: CrashLoopBackOff
  kContainerConfig,   // CreateContainerConfigError, CreateContainerError, RunContainerError
  kNeverReady,        // running, but the readiness probe does not pass
  kUnschedulable,     // PodScheduled=False/Unschedulable
  kClusterInactive,   // nothing acts on the change: no controller-manager, scheduler or Ready node
};

[[nodiscard]] std::string_view failure_kind_name(FailureKind kind) noexcept;

struct Diagnosis {
  FailureKind kind = FailureKind::kProgressDeadline;
  // Certain: waiting longer will not help (e.g. an image that does not exist). Uncertain causes
  // are shown as progress and reported if the deadline passes.
  bool certain = false;
  std::string object;     // "pod/NAME", "replicaset/NAME" or "deployment/NAME"
  std::string container;  // for Pod causes
  std::string reason;     // the API's reason, e.g. CrashLoopBackOff
  std::string message;    // the API's message (for kNeverReady: the probe's, from the Events)
  std::optional<int> exit_code;  // the last exit code of a crashing container

  // One line for people, e.g. `pod/go-app-x: CrashLoopBackOff (exit 1): back-off 10s ...`.
  [[nodiscard]] std::string describe() const;
};

// A container that runs but is not ready for this long, with failed readiness probes, is judged
// never ready (its startup probe passed, so the process is up).
inline constexpr Duration kNeverReadyAfter = std::chrono::seconds(30);

// How long a cluster may leave a change unacted on before the cause is named: a working
// controller-manager observes a new generation, and a scheduler binds a pod, within seconds; a
// kubelet reports a bound pod within its 10 s sync (kubernetes-api notes §8). Under 2-core load
// these took at most 3 s on the local cluster, so 30 s leaves a 10x margin.
inline constexpr Duration kClusterInactiveAfter = std::chrono::seconds(30);

struct DiagnosisInput {
  nlohmann::json deployment;
  std::optional<nlohmann::json> new_replica_set;
  std::vector<nlohmann::json> new_pods;  // the Pods of the new ReplicaSet
  std::vector<nlohmann::json> events;    // Events of those Pods (others are ignored)
  std::chrono::system_clock::time_point now = std::chrono::system_clock::now();
  Duration never_ready_after = kNeverReadyAfter;
  // When this run's apply was accepted: a Deployment generation not observed this long after it
  // means no controller-manager acts on it. Unset: that check is off.
  std::optional<std::chrono::system_clock::time_point> applied_at;
  Duration cluster_inactive_after = kClusterInactiveAfter;
};

// The most telling cause, certain ones first; nullopt when nothing looks wrong.
[[nodiscard]] std::optional<Diagnosis> diagnose(const DiagnosisInput& input);

// How long a cause that looks certain must be seen in a row before it fails a rollout. Some clear
// up on the next retry: an ErrImagePull or ImagePullBackOff from a registry hiccup (the kubelet
// pulls again 10 s later), a FailedCreate from a webhook timeout or a quota race (the ReplicaSet
// controller retries within seconds), a CreateContainerConfigError for a ConfigMap created a
// moment later. A crash loop, the progress deadline, never ready and an inactive cluster have
// waited already: 0.
inline constexpr Duration kImagePullPersistence = std::chrono::seconds(20);
inline constexpr Duration kFailedCreatePersistence = std::chrono::seconds(15);
inline constexpr Duration kContainerConfigPersistence = std::chrono::seconds(15);
[[nodiscard]] Duration persistence_needed(FailureKind kind) noexcept;

// Passes a certain cause on as certain only once the same cause (kind and object) was seen for
// persistence_needed(kind) in a row; until then it is shown, not acted on.
class PersistenceFilter {
 public:
  [[nodiscard]] std::optional<Diagnosis> apply(std::optional<Diagnosis> diagnosis,
                                               Clock::time_point now);

 private:
  std::string key_;  // the cause seen at the last call, "" for none
  Clock::time_point since_{};
};

}  // namespace deployapps

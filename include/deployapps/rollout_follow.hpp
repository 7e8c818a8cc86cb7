// Following one app's rollout: list its Deployment, ReplicaSets and Pods, watch them, and ask
// the judge at every tick what the observations mean, until it is done, failed, interrupted or
// out of time; then the old pods' drain. No decisions about rolling back are made here.
#pragma once

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "deployapps/console.hpp"
#include "deployapps/diagnosis.hpp"
#include "deployapps/inflight_checks.hpp"
#include "deployapps/kube_client.hpp"
#include "deployapps/rollout.hpp"
#include "deployapps/rollout_judge.hpp"
#include "deployapps/rollout_view.hpp"
#include "deployapps/rollout_watch.hpp"

namespace deployapps {

struct FollowSettings {
  Duration never_ready_after = kNeverReadyAfter;
  bool verify = true;                            // false: drain exits fail nothing
  const std::atomic<int>* interrupts = nullptr;  // Ctrl-C count
  Deadline overall = Deadline::never();          // the budget's: watches and fetches end here
};

class RolloutFollower {
 public:
  // `checks` are read (their failure count) at every tick.
  RolloutFollower(const RestConfig& config, KubeClient& client, const RolloutTarget& target,
                  FollowSettings settings, const InFlightChecks& checks, Console& console);
  ~RolloutFollower();
  RolloutFollower(const RolloutFollower&) = delete;
  RolloutFollower& operator=(const RolloutFollower&) = delete;
  RolloutFollower(RolloutFollower&&) = delete;
  RolloutFollower& operator=(RolloutFollower&&) = delete;

  // Lists the three collections. Returns whether a rollout is under way (a new ReplicaSet still
  // scaling, or an unfinished Deployment). `applied_at`: when the change was applied.
  bool list(Deadline deadline, std::optional<std::chrono::system_clock::time_point> applied_at);
  // Watches (from the lists' resourceVersions) until the judge's verdict is not "go on".
  // `rolling_back`: only done, a further Ctrl-C and the deadline count.
  Verdict wait(Deadline deadline, bool rolling_back);
  // After the rollout: the old pods drain, each with exit code 0, within its own grace period.
  Verdict wait_for_drain(Deadline deadline);
  // The pre-apply template is being restored: `deployment` is the PATCH's response.
  void restoring(nlohmann::json deployment);
  void stop_watches();

  [[nodiscard]] const RolloutStatus& status() const noexcept { return status_; }
  [[nodiscard]] std::vector<OldPodExit> old_pod_exits() const { return view_.old_pod_exits(); }
  // Valid after stop_watches(); the watches' requests only (the client counts its own).
  [[nodiscard]] std::size_t watch_requests() const noexcept { return watch_requests_; }
  [[nodiscard]] std::optional<Duration> complete_to_reported() const {
    return complete_to_reported_;
  }
  [[nodiscard]] std::optional<Duration> event_to_reported() const { return event_to_reported_; }

 private:
  class FailureEvidence;

  void list_all(Deadline deadline);
  void start_watches();
  void stop_watches_keeping_versions();
  void rewatch_before_inactive_counts();
  int interrupts() const;
  Observation observe(bool rolling_back, int interrupts_before, Deadline deadline);
  void record_completion();

  const RestConfig& config_;
  KubeClient& client_;
  const RolloutTarget& target_;
  FollowSettings settings_;
  const InFlightChecks& checks_;
  Console& console_;
  std::unique_ptr<FailureEvidence> evidence_;
  RolloutView view_;
  std::string deployments_path_;
  std::string replica_sets_path_;
  std::string pods_path_;
  std::string selector_;
  std::string deployment_rv_;
  std::string replica_sets_rv_;
  std::string pods_rv_;
  EventQueue queue_;
  std::vector<std::unique_ptr<CollectionWatcher>> watchers_;
  std::size_t watch_requests_ = 0;
  std::optional<std::chrono::system_clock::time_point> applied_at_;
  RolloutStatus status_;
  std::optional<Diagnosis> diagnosis_;
  PersistenceFilter persistence_;
  bool watch_failed_ = false;  // a watch gave up: the Deployment is read instead
  Clock::time_point polled_{};
  std::optional<Clock::time_point> rewatched_at_;
  std::optional<Duration> complete_to_reported_;
  std::optional<Duration> event_to_reported_;
};

}  // namespace deployapps

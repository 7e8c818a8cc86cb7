// One app's rollout: apply, follow it (rollout_follow.hpp) as the judge (rollout_judge.hpp) sees
// it, check in-flight traffic (inflight_checks.hpp), and on failure restore the exact pod
// template found before the apply, all within one Budget. One AppRollout per app; several run
// concurrently on threads.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "deployapps/budget.hpp"
#include "deployapps/console.hpp"
#include "deployapps/diagnosis.hpp"
#include "deployapps/drain_timeline.hpp"
#include "deployapps/inflight_checks.hpp"
#include "deployapps/kube_client.hpp"
#include "deployapps/kubeconfig.hpp"
#include "deployapps/object_snapshot.hpp"
#include "deployapps/probe/config.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

enum class RolloutResult {
  kSucceeded,    // the new version is rolled out (and the checks passed)
  kUnchanged,    // nothing to roll out: the Deployment already runs this template
  kRolledBack,   // failed, and the previous revision is back and healthy
  kFailed,       // failed, and not rolled back (first deploy) or the rollback failed too
  kInterrupted,  // Ctrl-C
  kApplied,      // --no-wait: applied, not followed
};

[[nodiscard]] std::string_view result_name(RolloutResult result) noexcept;

// How an old pod ended while the rollout replaced it (issue 6's server-side evidence).
struct OldPodExit {
  std::string pod;
  std::optional<int> exit_code;  // nullopt: deleted before its exit code was seen
  std::string reason;            // e.g. Completed, Error
};
// [{"pod", "exitCode" (null: not seen), "reason"}], for the report and the certificate.
[[nodiscard]] nlohmann::json old_pods_json(const std::vector<OldPodExit>& pods);

struct RolloutSettings {
  // The in-flight probe (issue 6); unset when no probe URL is known, --no-probe or --no-verify.
  std::optional<probe::Config> probe;
  // The real-traffic check (issue 17): unset when no ingress metrics URL is known or --no-verify.
  std::optional<IngressCheckSettings> ingress;
  // The drain-race timeline of the old pods (drain_timeline.hpp): unset with --no-verify or
  // --no-wait. Its drain pause is read from the live Deployment before the apply.
  std::optional<DrainTimelineSettings> drain;
  std::filesystem::path report_dir;  // the probe's report.json and timeline.png go here
  Duration probe_warmup = std::chrono::seconds(2);  // traffic before the change is applied
  Duration never_ready_after = kNeverReadyAfter;
  Duration object_change_settle = kObjectChangeSettle;
  const std::atomic<int>* interrupts = nullptr;  // Ctrl-C count
  bool wait = true;                              // false: apply and return (--no-wait)
  bool verify = true;  // false (--no-verify): an old pod's non-zero drain exit fails nothing
  // --min-requests: a rollout whose probe judged fewer requests (0 failed) proves too little and
  // fails like a failed check. 0: no minimum.
  std::size_t min_requests = 0;
};

struct RolloutReport {
  std::string app;
  std::string old_version;  // "" on a first deploy
  std::string new_version;
  RolloutResult result = RolloutResult::kFailed;
  bool rolled_back = false;
  std::string failure;     // why it failed
  std::string state_left;  // what the cluster is left doing (failures, interrupts)
  Duration duration{};
  std::size_t api_requests = 0;
  // From the Deployment's completion as the API reports it (the Progressing condition's
  // lastUpdateTime, 1 s resolution) and from the watch event that showed it, to the report.
  std::optional<Duration> complete_to_reported;
  std::optional<Duration> event_to_reported;
  std::vector<OldPodExit> old_pods;
  std::size_t probe_requests = 0;
  std::size_t probe_failures = 0;
  std::string ingress_check;  // what the real-traffic check counted; "" when it did not run
  nlohmann::json drain_timelines = nlohmann::json::array();  // one per old pod replaced
  std::vector<std::string> reports_written;
};

struct RolloutTarget {
  std::string app;
  std::string namespace_name;
  std::string new_version;
  nlohmann::json deployment;  // the rendered Deployment to apply
  // The app's other objects (not its Deployment or Namespace): reported, checked and restored
  // like the pod template when this run changes them.
  std::vector<RolloutObject> others;
};

// Applies one app's objects through `apply` (a callback, so that the caller's Applier and plan
// stay where they are) and follows the rollout to its end.
class AppRollout {
 public:
  using ApplyStep = std::function<void(KubeClient& client)>;

  AppRollout(RestConfig config, RolloutTarget target, RolloutSettings settings, Console& console);
  ~AppRollout();
  AppRollout(const AppRollout&) = delete;
  AppRollout& operator=(const AppRollout&) = delete;
  AppRollout(AppRollout&&) = delete;
  AppRollout& operator=(AppRollout&&) = delete;

  // Never throws for a failed rollout: the report says what happened. Throws Error only for
  // failures before anything changed (then the report is not meaningful). The rollout is judged
  // by budget.rollout; a rollback ends by budget.overall.
  RolloutReport run(const ApplyStep& apply, Budget budget);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// The version a Deployment (or ReplicaSet) template runs: the app.kubernetes.io/version label,
// else the APP_VERSION variable of the first container, else "".
[[nodiscard]] std::string template_version(const nlohmann::json& pod_template);

// The live progress line, e.g. "2/3 updated, 2 available, 1 old terminating".
[[nodiscard]] std::string progress_text(const nlohmann::json& deployment, std::size_t terminating);

}  // namespace deployapps

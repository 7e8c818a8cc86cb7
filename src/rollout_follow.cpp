#include "deployapps/rollout_follow.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <algorithm>

#include "deployapps/budget.hpp"
#include "deployapps/encoding.hpp"
#include "deployapps/rollout_status.hpp"

namespace deployapps {
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// How often time-based judgements (never ready, deadlines, Ctrl-C, the probe) are looked at.
constexpr Duration kTick = 250ms;
// Between two fetches of a pod's Events while it runs unready.
constexpr Duration kEventsInterval = 5s;
constexpr int kLogTailLines = 10;
// How often the Deployment is read when its watch cannot be used.
constexpr Duration kPollInterval = 2s;

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const auto newline = text.find('\n');
    const auto line = text.substr(0, newline);
    if (!trim(line).empty()) {
      lines.push_back(line);
    }
    text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);
  }
  return lines;
}

bool any_running_unready(const std::vector<json>& pods) {
  const json::json_pointer statuses("/status/containerStatuses");
  return std::any_of(pods.begin(), pods.end(), [&](const json& pod) {
    return pod.contains(statuses) &&
           std::any_of(pod.at(statuses).begin(), pod.at(statuses).end(), [](const json& status) {
             return status.value("started", false) && !status.value("ready", false) &&
                    status.contains(json::json_pointer("/state/running"));
           });
  });
}

}  // namespace

// What a diagnosis needs that the watches do not carry: the Events of pods that run unready (for
// the readiness probe's message) and a crashing container's last log lines. Fetched, not watched.
class RolloutFollower::FailureEvidence {
 public:
  FailureEvidence(KubeClient& client, std::string namespace_name, std::string app)
      : client_(client), namespace_(std::move(namespace_name)), app_(std::move(app)) {}

  std::vector<json> events_for_unready(const std::vector<json>& pods, Deadline deadline) {
    const auto now = Clock::now();
    if (now - fetched_ < kEventsInterval || !any_running_unready(pods)) {
      return events_;
    }
    fetched_ = now;
    events_.clear();
    for (const auto& pod : pods) {
      ApiRequest request;
      request.path = fmt::format("/api/v1/namespaces/{}/events", namespace_);
      request.query = {
          {"fieldSelector",
           fmt::format("involvedObject.name={},involvedObject.namespace={},"
                       "involvedObject.kind=Pod,involvedObject.uid={}",
                       name_of(pod), namespace_,
                       pod.value(json::json_pointer("/metadata/uid"), std::string()))}};
      try {
        const auto body = client_.request(request, deadline).body;
        for (const auto& event : body.value("items", json::array())) {
          events_.push_back(event);
        }
      } catch (const Error& error) {
        spdlog::warn("{}: events of {}: {}", app_, name_of(pod), error.what());
      }
    }
    return events_;
  }

  // The last lines a crashing container wrote before it exited.
  std::string crash_logs(const Diagnosis& diagnosis, Deadline deadline) {
    if (diagnosis.kind != FailureKind::kCrashLoop || diagnosis.object.rfind("pod/", 0) != 0) {
      return {};
    }
    ApiRequest request;
    request.path =
        fmt::format("/api/v1/namespaces/{}/pods/{}/log", namespace_, diagnosis.object.substr(4));
    request.query = {{"container", diagnosis.container},
                     {"previous", "true"},
                     {"tailLines", std::to_string(kLogTailLines)}};
    request.text_response = true;
    try {
      const auto text = client_.request(request, deadline).text;
      std::string lines;
      for (const auto line : split_lines(text)) {
        lines += fmt::format("\n    | {}", line);
      }
      return lines.empty() ? std::string() : "\n  last log lines:" + lines;
    } catch (const Error& error) {
      return fmt::format("\n  (its logs could not be read: {})", error.what());
    }
  }

 private:
  KubeClient& client_;
  std::string namespace_;
  std::string app_;
  std::vector<json> events_;
  Clock::time_point fetched_{};
};

RolloutFollower::RolloutFollower(const RestConfig& config, KubeClient& client,
                                 const RolloutTarget& target, FollowSettings settings,
                                 const InFlightChecks& checks, Console& console)
    : config_(config),
      client_(client),
      target_(target),
      settings_(settings),
      checks_(checks),
      console_(console),
      evidence_(std::make_unique<FailureEvidence>(client, target.namespace_name, target.app)),
      view_(target.app, console),
      deployments_path_(
          fmt::format("/apis/apps/v1/namespaces/{}/deployments", target.namespace_name)),
      replica_sets_path_(
          fmt::format("/apis/apps/v1/namespaces/{}/replicasets", target.namespace_name)),
      pods_path_(fmt::format("/api/v1/namespaces/{}/pods", target.namespace_name)),
      // Immutable, and known before anything is listed.
      selector_(selector_query(
          target.deployment.value("spec", json::object()).value("selector", json::object()))) {}

RolloutFollower::~RolloutFollower() {
  stop_watches();
}

bool RolloutFollower::list(Deadline deadline,
                           std::optional<std::chrono::system_clock::time_point> applied_at) {
  applied_at_ = applied_at;
  list_all(deadline);
  status_ = deployment_rollout_status(view_.deployment());
  return view_.analyse(status_);
}

void RolloutFollower::list_all(Deadline deadline) {
  ApiRequest request;
  request.path = deployments_path_;
  request.query = {{"fieldSelector", "metadata.name=" + target_.app}};
  const auto deployments = client_.request(request, deadline).body;
  const auto items = deployments.value("items", json::array());
  if (items.empty()) {
    throw Error(fmt::format("deployment.apps/{} does not exist after applying it", target_.app));
  }
  deployment_rv_ = resource_version_of(deployments);
  selector_ =
      selector_query(items[0].value("spec", json::object()).value("selector", json::object()));
  request.path = replica_sets_path_;
  request.query = {{"labelSelector", selector_}};
  const auto replica_sets = client_.request(request, deadline).body;
  replica_sets_rv_ = resource_version_of(replica_sets);
  request.path = pods_path_;
  const auto pods = client_.request(request, deadline).body;
  pods_rv_ = resource_version_of(pods);
  view_.load(items[0], replica_sets.value("items", json::array()),
             pods.value("items", json::array()));
}

void RolloutFollower::start_watches() {
  const auto watch = [&](WatchSource source, const std::string& path, QueryParameters query,
                         const std::string& resource_version) {
    watchers_.push_back(std::make_unique<CollectionWatcher>(
        config_, source, path, std::move(query), resource_version, queue_, settings_.overall));
  };
  watch(WatchSource::kDeployment, deployments_path_,
        {{"fieldSelector", "metadata.name=" + target_.app}}, deployment_rv_);
  watch(WatchSource::kReplicaSet, replica_sets_path_, {{"labelSelector", selector_}},
        replica_sets_rv_);
  watch(WatchSource::kPod, pods_path_, {{"labelSelector", selector_}}, pods_rv_);
}

void RolloutFollower::stop_watches() {
  for (auto& watcher : watchers_) {
    watcher->stop();
    watch_requests_ += watcher->requests_sent();
  }
  watchers_.clear();
}

void RolloutFollower::stop_watches_keeping_versions() {
  for (auto& watcher : watchers_) {
    watcher->stop();
    watch_requests_ += watcher->requests_sent();
    const auto& version = watcher->resource_version();
    switch (watcher->source()) {
      case WatchSource::kDeployment:
        deployment_rv_ = version;
        break;
      case WatchSource::kReplicaSet:
        replica_sets_rv_ = version;
        break;
      case WatchSource::kPod:
        pods_rv_ = version;
        break;
      case WatchSource::kEndpointSlice:  // not watched here (drain_timeline.hpp)
        break;
    }
  }
  watchers_.clear();
}

// "Nothing acts on the change" is judged from what the watches delivered, and a watch that went
// silent (a dead connection, a proxy that stopped forwarding) delivers exactly that until its
// idle timeout (kWatchIdleTimeout, 45 s), later than the diagnosis (kClusterInactiveAfter, 30 s).
// So when that diagnosis appears, the watches are replaced by new ones that resume from the last
// event each saw and replay everything since; the diagnosis's persistence (5 s) is their time to
// catch up. A cluster that really does not act is named as early as before.
void RolloutFollower::rewatch_before_inactive_counts() {
  const auto now = Clock::now();
  if (!diagnosis_ || diagnosis_->kind != FailureKind::kClusterInactive || diagnosis_->certain ||
      (rewatched_at_ && now - *rewatched_at_ < kClusterInactiveAfter)) {
    return;
  }
  rewatched_at_ = now;
  console_.line(target_.app, fmt::format("{}; watching again from the last events seen before "
                                         "that counts (a silent watch looks the same)",
                                         diagnosis_->describe()));
  stop_watches_keeping_versions();
  start_watches();
}

void RolloutFollower::restoring(json deployment) {
  view_.stop_recording_old_pods();
  if (deployment.is_object() && deployment.contains("metadata")) {
    view_.set_deployment(std::move(deployment));
  }
}

int RolloutFollower::interrupts() const {
  return settings_.interrupts != nullptr ? settings_.interrupts->load() : 0;
}

// What the view says now, as the judge's input. Diagnosing needs the API (Events, logs).
Observation RolloutFollower::observe(bool rolling_back, int interrupts_before, Deadline deadline) {
  Observation observed;
  status_ = deployment_rollout_status(view_.deployment());
  (void)view_.analyse(status_);
  observed.status = status_;
  if (rolling_back) {
    diagnosis_.reset();
  } else if (status_.phase != RolloutPhase::kDone) {
    DiagnosisInput input;
    input.deployment = view_.deployment();
    input.new_replica_set = view_.new_replica_set();
    input.new_pods = view_.new_pods();
    input.events = evidence_->events_for_unready(input.new_pods, settings_.overall);
    input.never_ready_after = settings_.never_ready_after;
    input.applied_at = applied_at_;
    // A cause that often clears on a retry must persist before it counts.
    diagnosis_ = persistence_.apply(diagnose(input), Clock::now());
  }
  observed.diagnosis = diagnosis_;
  observed.rolling_back = rolling_back;
  observed.probe_failures = checks_.failure_count();
  observed.drain_failure = view_.drain_failure();
  observed.verify = settings_.verify;
  observed.interrupted = interrupts() > interrupts_before;
  observed.deadline_passed = deadline.expired();
  return observed;
}

Verdict RolloutFollower::wait(Deadline deadline, bool rolling_back) {
  if (watchers_.empty()) {
    start_watches();
  }
  // A Ctrl-C that came during the apply counts; during a rollback only a further one does.
  const int interrupts_before = rolling_back ? interrupts() : 0;
  std::string shown;
  for (;;) {
    if (const auto error = view_.absorb(queue_.take(kTick))) {
      watch_failed_ = true;
      if (!rolling_back) {
        return {Verdict::Kind::kFailed, *error};
      }
    }
    // A rollback is still followed when a watch gave up (e.g. forbidden): by reading the
    // Deployment, which is all its status needs, instead of waiting out the deadline.
    if (watch_failed_ && Clock::now() - polled_ >= kPollInterval) {
      polled_ = Clock::now();
      try {
        view_.set_deployment(client_.get(deployments_path_ + "/" + target_.app, deadline));
      } catch (const Error& error) {
        spdlog::warn("{}: reading the Deployment: {}", target_.app, error.what());
      }
    }
    const auto observed = observe(rolling_back, interrupts_before, deadline);
    rewatch_before_inactive_counts();
    console_.progress(target_.app,
                      (rolling_back ? "rollback: " : "") +
                          progress_text(view_.deployment(), view_.terminating_old_pods()) +
                          (diagnosis_ ? " — " + diagnosis_->describe() : ""));
    if (status_.message != shown) {
      shown = status_.message;
      spdlog::info("{}: {}", target_.app, shown);
    }
    auto verdict = judge(observed);
    if (verdict.kind == Verdict::Kind::kDone) {
      record_completion();
      console_.clear_progress(target_.app);
      console_.line(target_.app, status_.message);
      return verdict;
    }
    if (verdict.kind != Verdict::Kind::kGoOn) {
      if (verdict.from_diagnosis && diagnosis_) {
        verdict.why += evidence_->crash_logs(*diagnosis_, settings_.overall);
      }
      console_.clear_progress(target_.app);
      return verdict;
    }
  }
}

// How long the completion took to reach us: from the API's own timestamp (the Progressing
// condition's last update, 1 s resolution) and from the watch event that showed it.
void RolloutFollower::record_completion() {
  const auto reported_at = std::chrono::system_clock::now();
  event_to_reported_ = std::chrono::duration_cast<Duration>(Clock::now() - view_.last_event());
  const json::json_pointer conditions("/status/conditions");
  if (!view_.deployment().contains(conditions)) {
    return;
  }
  for (const auto& condition : view_.deployment().at(conditions)) {
    if (condition.value("type", "") == "Progressing" &&
        condition.value("reason", "") == "NewReplicaSetAvailable") {
      try {
        complete_to_reported_ = std::chrono::duration_cast<Duration>(
            reported_at - parse_rfc3339(condition.value("lastUpdateTime", "")));
      } catch (const Error&) {
        complete_to_reported_.reset();
      }
    }
  }
}

Verdict RolloutFollower::wait_for_drain(Deadline deadline) {
  const int interrupts_before = interrupts();
  for (auto draining = view_.old_pods(); !draining.empty(); draining = view_.old_pods()) {
    // Each old pod's own grace period, which a release may have changed.
    const auto now = std::chrono::system_clock::now();
    const bool overdue = now > drain_until(draining, now, kDrainMargin);
    console_.progress(target_.app, fmt::format("rolled out; {} old pod(s) draining",
                                               view_.terminating_old_pods()));
    Verdict verdict;
    if (!view_.drain_failure().empty()) {
      verdict = {Verdict::Kind::kFailed, view_.drain_failure()};
    } else if (interrupts() > interrupts_before) {
      verdict = {Verdict::Kind::kInterrupted,
                 fmt::format("Ctrl-C while {} old pod(s) drained", draining.size())};
    } else if (overdue || deadline.expired()) {
      verdict = {Verdict::Kind::kFailed, "old pods did not finish draining in time"};
    } else if (const auto error = view_.absorb(queue_.take(kTick))) {
      verdict = {Verdict::Kind::kFailed, *error};
    }
    if (verdict.kind != Verdict::Kind::kGoOn) {
      console_.clear_progress(target_.app);
      return verdict;
    }
  }
  console_.clear_progress(target_.app);
  if (!view_.drain_failure().empty()) {
    return {Verdict::Kind::kFailed, view_.drain_failure()};
  }
  const auto exits = view_.old_pod_exits();
  const auto drained = std::count_if(exits.begin(), exits.end(),
                                     [](const OldPodExit& exit) { return exit.exit_code == 0; });
  console_.line(target_.app, fmt::format("{} old pod(s) drained (exit 0)", drained));
  return {Verdict::Kind::kDone, status_.message};
}

}  // namespace deployapps

#include "deployapps/rollout.hpp"

#include <spdlog/spdlog.h>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "deployapps/apply.hpp"
#include "deployapps/encoding.hpp"
#include "deployapps/probe/probe.hpp"
#include "deployapps/rollout_status.hpp"

namespace deployapps {
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Server-side watch length; the watch is resumed from its last resourceVersion after it. Short,
// so that silence is news: the server ends every watch after this, events or not.
constexpr int kWatchTimeoutSeconds = 30;
// No byte for this long on a watch (or no progress connecting to it) means the connection is
// dead: a healthy server would have ended the watch by now. Within 45 s, as issue 18 asks.
constexpr Duration kWatchIdleTimeout = std::chrono::seconds(kWatchTimeoutSeconds + 15);
// How often time-based judgements (never ready, deadlines, Ctrl-C, the probe) are looked at.
constexpr Duration kTick = std::chrono::milliseconds(250);
// Between two fetches of a pod's Events while it runs unready.
constexpr Duration kEventsInterval = std::chrono::seconds(5);
// Old pods get their termination grace period plus this to report an exit code.
constexpr Duration kDrainMargin = std::chrono::seconds(15);
constexpr int kLogTailLines = 10;

enum class Source { kDeployment, kReplicaSet, kPod };

struct QueuedEvent {
  Source source = Source::kDeployment;
  std::string type;  // ADDED, MODIFIED, DELETED, or RELIST (object = the list's items)
  json object;
  Clock::time_point received = Clock::now();
  std::string error;  // a watch that cannot continue
};

class EventQueue {
 public:
  void push(QueuedEvent event) {
    {
      const std::lock_guard lock(mutex_);
      events_.push_back(std::move(event));
    }
    ready_.notify_one();
  }
  // Everything queued, waiting up to `wait` for the first.
  std::vector<QueuedEvent> take(Duration wait) {
    std::unique_lock lock(mutex_);
    ready_.wait_for(lock, wait, [this] { return !events_.empty(); });
    std::vector<QueuedEvent> taken(std::make_move_iterator(events_.begin()),
                                   std::make_move_iterator(events_.end()));
    events_.clear();
    return taken;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<QueuedEvent> events_;
};

std::string name_of(const json& object) {
  return object.value(json::json_pointer("/metadata/name"), std::string());
}

std::string resource_version_of(const json& object) {
  return object.value(json::json_pointer("/metadata/resourceVersion"), std::string());
}

std::string hash_of(const json& object) {
  return object.value(json::json_pointer("/metadata/labels/pod-template-hash"), std::string());
}

long integer_at(const json& object, const char* pointer) {
  const json::json_pointer path(pointer);
  return object.contains(path) && object.at(path).is_number_integer() ? object.at(path).get<long>()
                                                                      : 0;
}

// One collection (list, then watch from the list's resourceVersion) on a thread and a
// connection of its own, feeding the app's queue. Relists after 410 Expired, resumes after a
// normal end of the stream, backs off after errors.
class Watcher {
 public:
  Watcher(const RestConfig& config, Source source, std::string path, QueryParameters query,
          std::string resource_version, EventQueue& queue)
      : client_(config),
        source_(source),
        path_(std::move(path)),
        query_(std::move(query)),
        resource_version_(std::move(resource_version)),
        queue_(queue),
        thread_([this] { loop(); }) {}
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;
  Watcher(Watcher&&) = delete;
  Watcher& operator=(Watcher&&) = delete;
  ~Watcher() { stop(); }

  void stop() {
    stopping_ = true;
    client_.cancel_watch();
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  // Valid after stop().
  [[nodiscard]] std::size_t requests_sent() const noexcept { return client_.requests_sent(); }

 private:
  void loop() {
    int failures = 0;
    while (!stopping_) {
      bool relist = resource_version_.empty();
      try {
        if (relist) {
          list();
        }
        ApiRequest request;
        request.path = path_;
        request.query = query_;
        request.query.insert(request.query.end(),
                             {{"watch", "1"},
                              {"resourceVersion", resource_version_},
                              {"allowWatchBookmarks", "true"},
                              {"timeoutSeconds", std::to_string(kWatchTimeoutSeconds)}});
        request.description = "watch " + path_;
        client_.watch(
            request,
            [&](const json& event) {
              if (stopping_) {
                return false;
              }
              const auto type = event.value("type", "");
              const auto& object = event.contains("object") ? event["object"] : json::object();
              if (type == "ERROR") {
                if (is_expired(object)) {
                  resource_version_.clear();  // too old: list again
                  return false;
                }
                throw ApiError(fmt::format("watch {}: {}", path_, object.value("message", "")),
                               static_cast<unsigned>(object.value("code", 500)),
                               object.value("reason", ""));
              }
              resource_version_ = resource_version_of(object);
              if (type != "BOOKMARK") {
                queue_.push({source_, type, object, Clock::now(), {}});
              }
              failures = 0;
              return true;
            },
            kWatchIdleTimeout, Deadline::never());
      } catch (const ApiError& error) {
        if (error.http_status() == 410) {
          resource_version_.clear();
          continue;
        }
        if (!backoff(watch_retry(++failures, error.http_status()), error.what())) {
          return;
        }
      } catch (const Error& error) {
        if (!backoff(watch_retry(++failures, 0), error.what())) {
          return;
        }
      }
    }
  }

  void list() {
    ApiRequest request;
    request.path = path_;
    request.query = query_;
    const auto body = client_.request(request, Deadline::after(kDefaultRequestTimeout)).body;
    resource_version_ = resource_version_of(body);
    queue_.push({source_, "RELIST", body.value("items", json::array()), Clock::now(), {}});
  }

  // Waits before trying again, or tells the app that the watch cannot go on. The rollout's own
  // deadline ends a watch that keeps failing; a Ctrl-C or stop() ends the wait at once.
  bool backoff(WatchRetry retry, const std::string& what) {
    if (stopping_) {
      return false;
    }
    if (retry.give_up) {
      queue_.push({source_, "ERROR", json::object(), Clock::now(), what});
      return false;
    }
    spdlog::warn("{} (retrying in {})", what, format_duration(retry.delay));
    const auto until = Clock::now() + retry.delay;
    while (Clock::now() < until && !stopping_) {
      std::this_thread::sleep_for(std::min<Duration>(250ms, retry.delay));
    }
    return !stopping_;
  }

  KubeClient client_;
  Source source_;
  std::string path_;
  QueryParameters query_;
  std::string resource_version_;
  EventQueue& queue_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;  // last: starts after everything above is ready
};

// Why a rollout stops before it is done.
struct Stop {
  enum class Kind { kNone, kDone, kFailed, kInterrupted, kTimedOut } kind = Kind::kNone;
  std::string why;
};

}  // namespace

std::string_view result_name(RolloutResult result) noexcept {
  switch (result) {
    case RolloutResult::kSucceeded:
      return "ok";
    case RolloutResult::kUnchanged:
      return "unchanged";
    case RolloutResult::kRolledBack:
      return "rolled back";
    case RolloutResult::kFailed:
      return "failed";
    case RolloutResult::kInterrupted:
      return "interrupted";
    case RolloutResult::kApplied:
      return "applied";
  }
  return "unknown";
}

WatchRetry watch_retry(int consecutive_failures, unsigned http_status) {
  // Retrying cannot fix credentials, RBAC or a deleted namespace.
  if (http_status == 401 || http_status == 403 || http_status == 404) {
    return {true, {}};
  }
  const int doublings = std::clamp(consecutive_failures - 1, 0, 3);
  return {false, std::min<Duration>(kWatchRetryFirst * (1 << doublings), kWatchRetryMax)};
}

std::string template_version(const json& pod_template) {
  auto label = pod_template.value(json::json_pointer("/metadata/labels/app.kubernetes.io~1version"),
                                  std::string());
  if (!label.empty()) {
    return label;
  }
  const json::json_pointer env("/spec/containers/0/env");
  if (pod_template.contains(env) && pod_template.at(env).is_array()) {
    for (const auto& variable : pod_template.at(env)) {
      if (variable.value("name", "") == "APP_VERSION") {
        return variable.value("value", "");
      }
    }
  }
  return {};
}

std::string progress_text(const json& deployment, std::size_t terminating) {
  const auto desired = integer_at(deployment, "/spec/replicas");
  const auto updated = integer_at(deployment, "/status/updatedReplicas");
  const auto available = integer_at(deployment, "/status/availableReplicas");
  const auto replicas = integer_at(deployment, "/status/replicas");
  std::string text = fmt::format("{}/{} updated, {} available", updated, desired, available);
  if (replicas > updated) {
    text += fmt::format(", {} old running", replicas - updated);
  }
  if (terminating > 0) {
    text += fmt::format(", {} old terminating", terminating);
  }
  return text;
}

class AppRollout::Impl {
 public:
  Impl(RestConfig config, RolloutTarget target, RolloutSettings settings, Console& console)
      : config_(std::move(config)),
        target_(std::move(target)),
        settings_(std::move(settings)),
        console_(console),
        client_(config_),
        deployments_path_(
            fmt::format("/apis/apps/v1/namespaces/{}/deployments", target_.namespace_name)),
        deployment_path_(deployments_path_ + "/" + target_.app),
        replica_sets_path_(
            fmt::format("/apis/apps/v1/namespaces/{}/replicasets", target_.namespace_name)),
        pods_path_(fmt::format("/api/v1/namespaces/{}/pods", target_.namespace_name)) {}

  ~Impl() { stop_watches(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;

  RolloutReport run(const ApplyStep& apply, Deadline deadline) {
    const auto started = Clock::now();
    report_.app = target_.app;
    report_.new_version = target_.new_version;
    if (!settings_.wait) {
      apply(client_);
      report_.result = RolloutResult::kApplied;
      return finished(started);
    }
    const auto before = client_.get_if_exists(deployment_path_, deadline);
    if (before) {
      report_.old_version =
          template_version(before->value("spec", json::object()).value("template", json::object()));
    }
    const bool template_changes = changes_template(before, deadline);
    rollout_started_ = template_changes;
    template_changed_ = template_changes;
    if (before) {
      pre_apply_template_ = before->value("spec", json::object()).value("template", json::object());
    }
    // Checked only when an old version serves: a first deploy has nothing to keep available.
    if (template_changes && settings_.probe && before &&
        integer_at(*before, "/status/availableReplicas") > 0) {
      start_probe();
      // Failures before anything changed belong to the running version (or the probe's URL):
      // a rollout judged on them would blame, and roll back, a release that did nothing wrong.
      if (probe_->failure_count() > 0) {
        stop_probe(true);
        report_.result = RolloutResult::kFailed;
        report_.failure = fmt::format(
            "refused: the running version {} already fails requests, before anything was "
            "applied ({}); fix it or the probe URL, or deploy with --no-verify",
            report_.old_version.empty() ? std::string("-") : report_.old_version, probe_failure_);
        report_.state_left = "nothing was applied";
        console_.line(target_.app, "FAILED: " + report_.failure);
        return finished(started);
      }
    } else if (template_changes && settings_.probe) {
      console_.line(target_.app, "in-flight checks skipped: no version serves yet");
    }
    if (interrupts() > 0) {
      stop_probe(false);
      report_.result = RolloutResult::kInterrupted;
      report_.failure = "Ctrl-C before applying";
      report_.state_left = "nothing was applied";
      return finished(started);
    }
    // Immutable, and known before anything is listed: a rollback must find its ReplicaSets
    // even when listing them failed.
    selector_ = selector_query(
        target_.deployment.value("spec", json::object()).value("selector", json::object()));
    try {
      apply(client_);
    } catch (const Error& error) {
      stop_probe(false);
      // Every object was dry-run first, so this is rare (a timeout, a conflict), and it may
      // come after the Deployment changed: then it is a failed rollout, rolled back as such.
      if (!template_changes || !deployment_changed(deadline)) {
        throw;
      }
      fail_after_apply(
          fmt::format("the apply failed after the Deployment changed: {}", error.what()));
      stop_watches();
      return finished(started);
    }
    applied_at_ = std::chrono::system_clock::now();
    try {
      follow(deadline);
    } catch (const Error& error) {
      fail_after_apply(fmt::format("following the rollout failed: {}", error.what()));
    }
    stop_watches();
    for (const auto& [name, exit] : old_pods_) {
      report_.old_pods.push_back(exit);
    }
    return finished(started);
  }

 private:
  // Whether applying will change the pod template (a new ReplicaSet): asked with a server-side
  // dry run of the Deployment, compared with the live one.
  bool changes_template(const std::optional<json>& live, Deadline deadline) {
    if (!live) {
      return true;
    }
    auto request = apply_request(deployment_path_, target_.deployment, kFieldManager, true, true);
    request.description = "dry-run apply of deployment.apps/" + target_.app;
    const auto dry = client_.request(request, deadline).body;
    return !templates_equal_ignoring_hash(
        dry.value("spec", json::object()).value("template", json::object()),
        live->value("spec", json::object()).value("template", json::object()));
  }

  // The report, with the run's duration and every API request it sent, watches included.
  RolloutReport finished(Clock::time_point started) {
    report_.duration = std::chrono::duration_cast<Duration>(Clock::now() - started);
    report_.api_requests = client_.requests_sent() + watch_requests_;
    return report_;
  }

  // Whether the live Deployment's template is no longer the pre-apply one. Unknown (the API
  // does not answer) counts as changed: restoring the pre-apply template is harmless if not.
  bool deployment_changed(Deadline deadline) {
    try {
      const auto live = client_.get(deployment_path_, deadline);
      return !pre_apply_template_ ||
             !templates_equal_ignoring_hash(
                 live.value("spec", json::object()).value("template", json::object()),
                 *pre_apply_template_);
    } catch (const Error& error) {
      spdlog::warn("{}: reading the Deployment after a failed apply: {}", target_.app,
                   error.what());
      return true;
    }
  }

  // An error once the new template may be live is a failed rollout: rolled back like one.
  void fail_after_apply(const std::string& why) {
    report_.failure = why;
    console_.line(target_.app, "FAILED: " + why);
    roll_back(false);
    stop_probe(true);
  }

  void start_probe() {
    auto config = *settings_.probe;
    config.duration = std::chrono::hours(1);  // stopped explicitly
    probe_ = std::make_unique<probe::Probe>(config);
    console_.line(target_.app,
                  fmt::format("in-flight checks: traffic to {}{}", config.url,
                              config.host_header.empty() ? std::string()
                                                         : " (Host: " + config.host_header + ")"));
    probe_->start();
    // Long requests and streams must be in flight before anything changes.
    std::this_thread::sleep_for(settings_.probe_warmup);
    probe_->mark(probe::kRolloutStart);
  }

  // Stops the probe, writes its report and chart; returns whether it saw failures.
  bool stop_probe(bool write) {
    if (!probe_) {
      return false;
    }
    probe_->mark(probe::kRolloutEnd);
    probe_->stop_and_wait();
    const auto result = probe_->report();
    probe_.reset();
    report_.probe_requests = result.records().size();
    report_.probe_failures = result.failures().size();
    if (write && !settings_.report_dir.empty()) {
      try {
        std::filesystem::create_directories(settings_.report_dir);
        const auto json_path = settings_.report_dir / "probe.json";
        std::ofstream file(json_path, std::ios::trunc);
        file << result.to_json().dump(2) << '\n';
        file.close();
        report_.reports_written.push_back(json_path.string());
      } catch (const std::exception& error) {
        console_.line(target_.app,
                      fmt::format("warning: probe report not written: {}", error.what()));
      }
      try {
        const auto junit_path = settings_.report_dir / "junit.xml";
        std::ofstream file(junit_path, std::ios::trunc);
        file << result.to_junit(target_.app + " rollout");
        file.close();
        report_.reports_written.push_back(junit_path.string());
      } catch (const std::exception& error) {
        console_.line(target_.app,
                      fmt::format("warning: JUnit report not written: {}", error.what()));
      }
      // The chart is an extra: without gnuplot the JSON report still holds every figure.
      try {
        const auto chart_path = settings_.report_dir / "timeline.png";
        result.write_chart(chart_path);
        report_.reports_written.push_back(chart_path.string());
      } catch (const std::exception& error) {
        console_.line(target_.app, fmt::format("note: no chart drawn: {}", error.what()));
      }
    }
    const auto summary = result.summary();
    probe_judged_ = summary.requests - summary.cancelled;
    if (result.failed()) {
      const auto failures = result.failures();
      const auto& first = failures.front();
      probe_failure_ = fmt::format(
          "in-flight check: {} of {} requests failed; first: {} {} at +{} ({}{}{})",
          failures.size(), result.records().size(), probe::to_string(first.kind),
          probe::to_string(first.error),
          format_duration(std::chrono::duration_cast<Duration>(first.start)), first.detail,
          first.connection_served_by.empty() ? "" : ", connection to pod ",
          first.connection_served_by);
    }
    return result.failed();
  }

  void follow(Deadline deadline) {
    list_all(deadline);
    auto stop = evaluate();
    if (stop.kind == Stop::Kind::kDone && !rollout_started_) {
      // Nothing to roll out: no new ReplicaSet, no watch needed.
      report_.result = RolloutResult::kUnchanged;
      console_.line(target_.app, fmt::format("unchanged: {}", status_.message));
      stop_probe(false);
      return;
    }
    start_watches();
    stop = wait(deadline, false);
    if (stop.kind == Stop::Kind::kDone && probe_) {
      stop = wait_for_drain(deadline);
      if (stop.kind == Stop::Kind::kInterrupted) {
        // The new version is out and serving: a Ctrl-C now stops checking, it does not undo
        // the release.
        stop_probe(true);
        report_.result = RolloutResult::kInterrupted;
        report_.failure = stop.why;
        report_.state_left =
            fmt::format("version {} is rolled out; the old pods' drain was not checked to the end",
                        target_.new_version);
        console_.line(target_.app, "interrupted: " + stop.why + "; " + report_.state_left);
        return;
      }
    }
    if (stop.kind == Stop::Kind::kDone) {
      if (stop_probe(true)) {
        stop = {Stop::Kind::kFailed, probe_failure_};
      } else if (probe_judged_ < settings_.min_requests) {
        stop = {Stop::Kind::kFailed,
                fmt::format("in-flight check: {} requests judged, fewer than --min-requests {}: 0 "
                            "failures in {} bound the failure rate only below {:.2g} (95 %)",
                            probe_judged_, settings_.min_requests, probe_judged_,
                            probe::zero_failure_upper_bound_95(probe_judged_).value_or(1.0))};
      } else {
        report_.result = RolloutResult::kSucceeded;
        return;
      }
    }
    report_.failure = stop.why;
    console_.line(
        target_.app,
        (stop.kind == Stop::Kind::kInterrupted ? "interrupted: " : "FAILED: ") + stop.why);
    // The probe keeps running through the rollback: the old version must keep serving.
    roll_back(stop.kind == Stop::Kind::kInterrupted);
    if (stop_probe(true) && report_.failure.find(probe_failure_) == std::string::npos) {
      report_.failure += "; " + probe_failure_;
    }
  }

  void list_all(Deadline deadline) {
    ApiRequest request;
    request.path = deployments_path_;
    request.query = {{"fieldSelector", "metadata.name=" + target_.app}};
    const auto deployments = client_.request(request, deadline).body;
    const auto items = deployments.value("items", json::array());
    if (items.empty()) {
      throw Error(fmt::format("deployment.apps/{} does not exist after applying it", target_.app));
    }
    deployment_ = items[0];
    deployment_rv_ = resource_version_of(deployments);
    selector_ =
        selector_query(deployment_.value("spec", json::object()).value("selector", json::object()));
    request.path = replica_sets_path_;
    request.query = {{"labelSelector", selector_}};
    const auto replica_sets = client_.request(request, deadline).body;
    replica_sets_rv_ = resource_version_of(replica_sets);
    for (const auto& item : replica_sets.value("items", json::array())) {
      replica_sets_[name_of(item)] = item;
    }
    request.path = pods_path_;
    const auto pods = client_.request(request, deadline).body;
    pods_rv_ = resource_version_of(pods);
    for (const auto& item : pods.value("items", json::array())) {
      pods_[name_of(item)] = item;
    }
  }

  void start_watches() {
    watchers_.push_back(std::make_unique<Watcher>(
        config_, Source::kDeployment, deployments_path_,
        QueryParameters{{"fieldSelector", "metadata.name=" + target_.app}}, deployment_rv_,
        queue_));
    watchers_.push_back(std::make_unique<Watcher>(config_, Source::kReplicaSet, replica_sets_path_,
                                                  QueryParameters{{"labelSelector", selector_}},
                                                  replica_sets_rv_, queue_));
    watchers_.push_back(std::make_unique<Watcher>(config_, Source::kPod, pods_path_,
                                                  QueryParameters{{"labelSelector", selector_}},
                                                  pods_rv_, queue_));
  }

  void stop_watches() {
    for (auto& watcher : watchers_) {
      watcher->stop();
      watch_requests_ += watcher->requests_sent();
    }
    watchers_.clear();
  }

  // Folds queued events into the view; returns a watch error that ends the rollout, if any.
  std::optional<std::string> absorb(std::vector<QueuedEvent> events) {
    for (auto& event : events) {
      if (event.type == "ERROR") {
        return event.error;
      }
      last_event_ = event.received;
      view_changed_ = true;
      switch (event.source) {
        case Source::kDeployment:
          if (event.type == "DELETED") {
            return fmt::format("deployment.apps/{}: object has been deleted", target_.app);
          }
          if (event.type == "RELIST") {
            if (event.object.empty()) {
              return fmt::format("deployment.apps/{}: object has been deleted", target_.app);
            }
            deployment_ = event.object[0];
          } else {
            deployment_ = event.object;
          }
          break;
        case Source::kReplicaSet:
          absorb_into(replica_sets_, event);
          break;
        case Source::kPod:
          for (const auto& pod :
               event.type == "RELIST" ? event.object : json::array({event.object})) {
            note_old_pod(pod, event.type == "DELETED");
          }
          absorb_into(pods_, event);
          break;
      }
    }
    return std::nullopt;
  }

  static void absorb_into(std::map<std::string, json>& objects, QueuedEvent& event) {
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
  void note_old_pod(const json& pod, bool deleted) {
    const auto name = name_of(pod);
    if (rolling_back_ || new_hash_.empty() || hash_of(pod) == new_hash_ ||
        !old_hashes_.contains(hash_of(pod))) {
      return;
    }
    const bool terminating = pod.contains(json::json_pointer("/metadata/deletionTimestamp"));
    if (!terminating && !deleted) {
      return;
    }
    auto& exit = old_pods_[name];
    exit.pod = name;
    const json::json_pointer statuses("/status/containerStatuses");
    if (pod.contains(statuses) && pod.at(statuses).is_array()) {
      for (const auto& status : pod.at(statuses)) {
        const json::json_pointer terminated("/state/terminated");
        if (status.contains(terminated) && !exit.exit_code) {
          exit.exit_code = status.at(terminated).value("exitCode", -1);
          exit.reason = status.at(terminated).value("reason", "");
          const auto text = fmt::format("old pod {} exited {}{}", name, *exit.exit_code,
                                        exit.reason.empty() ? "" : " (" + exit.reason + ")");
          console_.line(target_.app, text);
          if (*exit.exit_code != 0 && drain_failure_.empty()) {
            drain_failure_ = fmt::format(
                "in-flight check: old pod {} exited {} while draining ({})", name, *exit.exit_code,
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

  std::size_t terminating_old_pods() const {
    std::size_t count = 0;
    for (const auto& [name, pod] : pods_) {
      if (hash_of(pod) != new_hash_ &&
          pod.contains(json::json_pointer("/metadata/deletionTimestamp"))) {
        ++count;
      }
    }
    return count;
  }

  // Which ReplicaSet runs the current template, and which are old (their pods' exits are
  // recorded). Redone only when the view changed: it compares whole pod templates.
  void analyse_replica_sets() {
    std::vector<json> replica_sets;
    replica_sets.reserve(replica_sets_.size());
    for (const auto& [name, item] : replica_sets_) {
      replica_sets.push_back(item);
    }
    const auto owned = owned_replica_sets(deployment_, replica_sets);
    current_replica_set_ = new_replica_set(deployment_, owned);
    if (current_replica_set_) {
      if (new_hash_ != hash_of(*current_replica_set_)) {
        new_hash_ = hash_of(*current_replica_set_);
        old_hashes_.clear();
        for (const auto& replica_set : owned) {
          if (hash_of(replica_set) != new_hash_) {
            old_hashes_.insert(hash_of(replica_set));
          }
        }
      }
      // A new revision was created or is still scaling: a rollout is happening.
      if (integer_at(*current_replica_set_, "/status/replicas") <
              integer_at(deployment_, "/spec/replicas") ||
          status_.phase != RolloutPhase::kDone) {
        rollout_started_ = true;
      }
    } else if (status_.phase != RolloutPhase::kDone) {
      rollout_started_ = true;
    }
  }

  // Judges the current view: done, failed for certain, or still going.
  Stop evaluate() {
    status_ = deployment_rollout_status(deployment_);
    if (view_changed_) {
      view_changed_ = false;
      analyse_replica_sets();
    }
    if (status_.phase == RolloutPhase::kDone) {
      return {Stop::Kind::kDone, status_.message};
    }
    if (rolling_back_) {
      diagnosis_.reset();
      return {};
    }
    DiagnosisInput input;
    input.deployment = deployment_;
    input.new_replica_set = current_replica_set_;
    for (const auto& [name, pod] : pods_) {
      if (!new_hash_.empty() && hash_of(pod) == new_hash_ &&
          !pod.contains(json::json_pointer("/metadata/deletionTimestamp"))) {
        input.new_pods.push_back(pod);
      }
    }
    input.events = events_for_unready(input.new_pods);
    input.never_ready_after = settings_.never_ready_after;
    input.applied_at = applied_at_;
    diagnosis_ = diagnose(input);
    if (diagnosis_ && diagnosis_->certain) {
      return {Stop::Kind::kFailed, diagnosis_->describe() + crash_logs(*diagnosis_)};
    }
    return {};
  }

  // The Events of new pods that run unready long enough to matter (fetched, not watched: only
  // needed for the readiness probe's message).
  std::vector<json> events_for_unready(const std::vector<json>& pods) {
    const auto now = Clock::now();
    if (now - events_fetched_ < kEventsInterval) {
      return events_;
    }
    bool wanted = false;
    for (const auto& pod : pods) {
      const json::json_pointer statuses("/status/containerStatuses");
      if (!pod.contains(statuses)) {
        continue;
      }
      for (const auto& status : pod.at(statuses)) {
        if (status.value("started", false) && !status.value("ready", false) &&
            status.contains(json::json_pointer("/state/running"))) {
          wanted = true;
        }
      }
    }
    if (!wanted) {
      return events_;
    }
    events_fetched_ = now;
    events_.clear();
    for (const auto& pod : pods) {
      ApiRequest request;
      request.path = fmt::format("/api/v1/namespaces/{}/events", target_.namespace_name);
      request.query = {
          {"fieldSelector",
           fmt::format("involvedObject.name={},involvedObject.namespace={},"
                       "involvedObject.kind=Pod,involvedObject.uid={}",
                       name_of(pod), target_.namespace_name,
                       pod.value(json::json_pointer("/metadata/uid"), std::string()))}};
      try {
        const auto body = client_.request(request, Deadline::after(kDefaultRequestTimeout)).body;
        for (const auto& event : body.value("items", json::array())) {
          events_.push_back(event);
        }
      } catch (const Error& error) {
        spdlog::warn("{}: events of {}: {}", target_.app, name_of(pod), error.what());
      }
    }
    return events_;
  }

  // The last lines a crashing container wrote before it exited.
  std::string crash_logs(const Diagnosis& diagnosis) {
    if (diagnosis.kind != FailureKind::kCrashLoop || diagnosis.object.rfind("pod/", 0) != 0) {
      return {};
    }
    ApiRequest request;
    request.path = fmt::format("/api/v1/namespaces/{}/pods/{}/log", target_.namespace_name,
                               diagnosis.object.substr(4));
    request.query = {{"container", diagnosis.container},
                     {"previous", "true"},
                     {"tailLines", std::to_string(kLogTailLines)}};
    request.text_response = true;
    try {
      const auto text = client_.request(request, Deadline::after(kDefaultRequestTimeout)).text;
      std::string lines;
      for (const auto line : split_lines(text)) {
        lines += fmt::format("\n    | {}", line);
      }
      return lines.empty() ? std::string() : "\n  last log lines:" + lines;
    } catch (const Error& error) {
      return fmt::format("\n  (its logs could not be read: {})", error.what());
    }
  }

  static std::vector<std::string_view> split_lines(std::string_view text) {
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

  int interrupts() const {
    return settings_.interrupts != nullptr ? settings_.interrupts->load() : 0;
  }

  // Follows the rollout until it is done, fails for certain, times out or is interrupted.
  // `rolling_back`: only done/timeout/interrupt count (the previous version is coming back).
  Stop wait(Deadline deadline, bool rolling_back) {
    // A Ctrl-C that came during the apply counts; during a rollback only a further one does.
    const int interrupts_before = rolling_back ? interrupts() : 0;
    std::string shown;
    for (;;) {
      if (const auto error = absorb(queue_.take(kTick))) {
        return {Stop::Kind::kFailed, *error};
      }
      auto stop = evaluate();
      const auto progress = progress_text(deployment_, terminating_old_pods()) +
                            (diagnosis_ && !rolling_back ? " — " + diagnosis_->describe() : "");
      console_.progress(target_.app, (rolling_back ? "rollback: " : "") + progress);
      if (status_.message != shown) {
        shown = status_.message;
        spdlog::info("{}: {}", target_.app, shown);
      }
      if (stop.kind == Stop::Kind::kDone) {
        const auto reported_at = std::chrono::system_clock::now();
        report_.event_to_reported =
            std::chrono::duration_cast<Duration>(Clock::now() - last_event_);
        if (const auto completed = completion_time()) {
          report_.complete_to_reported =
              std::chrono::duration_cast<Duration>(reported_at - *completed);
        }
        console_.clear_progress(target_.app);
        console_.line(target_.app, status_.message);
        return stop;
      }
      if (rolling_back) {
        stop = {};
      }
      if (stop.kind == Stop::Kind::kNone && !rolling_back && probe_ &&
          probe_->failure_count() > 0) {
        stop = {Stop::Kind::kFailed, "in-flight check: requests failed during the rollout"};
      }
      if (stop.kind == Stop::Kind::kNone && !rolling_back && settings_.verify &&
          !drain_failure_.empty()) {
        stop = {Stop::Kind::kFailed, drain_failure_};
      }
      if (stop.kind == Stop::Kind::kNone && interrupts() > interrupts_before) {
        stop = {Stop::Kind::kInterrupted, "Ctrl-C during the rollout"};
      }
      if (stop.kind == Stop::Kind::kNone && !rolling_back &&
          status_.phase == RolloutPhase::kFailed) {
        stop = {Stop::Kind::kFailed, status_.message};
      }
      if (stop.kind == Stop::Kind::kNone && deadline.expired()) {
        stop = {Stop::Kind::kTimedOut,
                fmt::format("timed out waiting for the rollout ({}){}", status_.message,
                            diagnosis_ ? "; " + diagnosis_->describe() : "")};
      }
      if (stop.kind != Stop::Kind::kNone) {
        console_.clear_progress(target_.app);
        return stop;
      }
    }
  }

  // When the API says the Deployment completed: its Progressing condition's last update.
  std::optional<std::chrono::system_clock::time_point> completion_time() const {
    const json::json_pointer conditions("/status/conditions");
    if (!deployment_.contains(conditions)) {
      return std::nullopt;
    }
    for (const auto& condition : deployment_.at(conditions)) {
      if (condition.value("type", "") == "Progressing" &&
          condition.value("reason", "") == "NewReplicaSetAvailable") {
        try {
          return parse_rfc3339(condition.value("lastUpdateTime", ""));
        } catch (const Error&) {
          return std::nullopt;
        }
      }
    }
    return std::nullopt;
  }

  // After the rollout: the old pods must finish draining, each with exit code 0.
  Stop wait_for_drain(Deadline deadline) {
    const int interrupts_before = interrupts();
    for (;;) {
      std::vector<json> draining;
      for (const auto& [name, pod] : pods_) {
        if (old_hashes_.contains(hash_of(pod))) {
          draining.push_back(pod);
        }
      }
      if (draining.empty()) {
        break;
      }
      // Each old pod's own grace period, which a release may have changed.
      const auto now = std::chrono::system_clock::now();
      const bool overdue = now > drain_until(draining, now, kDrainMargin);
      console_.progress(target_.app,
                        fmt::format("rolled out; {} old pod(s) draining", terminating_old_pods()));
      if (!drain_failure_.empty()) {
        console_.clear_progress(target_.app);
        return {Stop::Kind::kFailed, drain_failure_};
      }
      if (interrupts() > interrupts_before) {
        console_.clear_progress(target_.app);
        return {Stop::Kind::kInterrupted,
                fmt::format("Ctrl-C while {} old pod(s) drained", draining.size())};
      }
      if (overdue || deadline.expired()) {
        console_.clear_progress(target_.app);
        return {Stop::Kind::kFailed, "old pods did not finish draining in time"};
      }
      if (const auto error = absorb(queue_.take(kTick))) {
        console_.clear_progress(target_.app);
        return {Stop::Kind::kFailed, *error};
      }
    }
    console_.clear_progress(target_.app);
    if (!drain_failure_.empty()) {
      return {Stop::Kind::kFailed, drain_failure_};
    }
    std::size_t drained = 0;
    for (const auto& [name, exit] : old_pods_) {
      drained += exit.exit_code == 0 ? 1U : 0U;
    }
    console_.line(target_.app, fmt::format("{} old pod(s) drained (exit 0)", drained));
    return {Stop::Kind::kDone, status_.message};
  }

  // Restores the pod template recorded before this run's apply (never kubectl's "previous
  // revision", which is older than the live one when the template was not changed or the
  // controller had not yet acted), then waits for it to be healthy.
  void roll_back(bool interrupted) {
    report_.result = interrupted ? RolloutResult::kInterrupted : RolloutResult::kFailed;
    if (!template_changed_) {
      report_.state_left = fmt::format(
          "this run did not change the pod template, so nothing was rolled back: version {} "
          "is left as it was",
          report_.old_version.empty() ? std::string("-") : report_.old_version);
      console_.line(target_.app, report_.state_left);
      return;
    }
    rolling_back_ = true;
    const auto deadline = Deadline::after(settings_.rollback_timeout);
    if (pre_apply_template_) {
      restore_pre_apply_template(interrupted, deadline);
      return;
    }
    UndoPlan plan;
    try {
      const auto deployment = client_.get(deployment_path_, deadline);
      ApiRequest request;
      request.path = replica_sets_path_;
      request.query = {{"labelSelector", selector_}};
      const auto list = client_.request(request, deadline).body;
      plan = plan_undo(deployment, list.value("items", json::array()).get<std::vector<json>>());
    } catch (const RollbackError& error) {
      report_.state_left = fmt::format(
          "not rolled back ({}): this is the first revision, so the failed state is left in "
          "place for inspection (kubectl -n {} describe deployment/{})",
          error.what(), target_.namespace_name, target_.app);
      console_.line(target_.app, report_.state_left);
      return;
    } catch (const Error& error) {
      report_.state_left = fmt::format("rollback could not start: {}", error.what());
      console_.line(target_.app, report_.state_left);
      return;
    }
    const auto version = template_version(plan.template_);
    if (plan.skipped) {
      console_.line(target_.app, plan.message);
    } else {
      ApiRequest patch;
      patch.method = "PATCH";
      patch.path = deployment_path_;
      patch.content_type = "application/json-patch+json";
      patch.body = plan.patch;
      patch.description = fmt::format("rollback of deployment.apps/{}", target_.app);
      try {
        (void)client_.request(patch, deadline);
      } catch (const Error& error) {
        report_.state_left =
            fmt::format("failed restoring revision {}: {}", plan.revision, error.what());
        console_.line(target_.app, report_.state_left);
        return;
      }
      console_.line(target_.app, fmt::format("{} (to revision {}, version {})", plan.message,
                                             plan.revision, version));
    }
    report_.rolled_back = true;
    if (watchers_.empty()) {
      start_watches();
    }
    const auto stop = wait(deadline, true);
    if (stop.kind == Stop::Kind::kDone) {
      if (!interrupted) {
        report_.result = RolloutResult::kRolledBack;
      }
      report_.state_left =
          fmt::format("version {} (revision {}) is running and healthy", version, plan.revision);
    } else {
      report_.state_left = fmt::format(
          "rollback to version {} (revision {}) still in progress in the cluster: {} (follow it "
          "with: kubectl -n {} rollout status deployment/{})",
          version, plan.revision, status_.message, target_.namespace_name, target_.app);
    }
    console_.line(target_.app, report_.state_left);
  }

  // The exact pre-apply template back (a JSON patch replacing spec.template), then the wait.
  void restore_pre_apply_template(bool interrupted, Deadline deadline) {
    const auto version = template_version(*pre_apply_template_);
    ApiRequest patch;
    patch.method = "PATCH";
    patch.path = deployment_path_;
    patch.content_type = "application/json-patch+json";
    patch.body = json::array(
        {{{"op", "replace"}, {"path", "/spec/template"}, {"value", *pre_apply_template_}}});
    patch.description = fmt::format("rollback of deployment.apps/{}", target_.app);
    try {
      const auto response = client_.request(patch, deadline).body;
      // Judged from the object the PATCH returned, not a stale one from before it.
      if (response.is_object() && response.contains("metadata")) {
        deployment_ = response;
      }
    } catch (const Error& error) {
      report_.state_left = fmt::format("failed restoring the pre-apply template (version {}): {}",
                                       version, error.what());
      console_.line(target_.app, report_.state_left);
      return;
    }
    console_.line(target_.app,
                  fmt::format("rolled back to the pre-apply pod template (version {})", version));
    report_.rolled_back = true;
    if (watchers_.empty()) {
      start_watches();
    }
    const auto stop = wait(deadline, true);
    if (stop.kind == Stop::Kind::kDone) {
      if (!interrupted) {
        report_.result = RolloutResult::kRolledBack;
      }
      report_.state_left = fmt::format("version {} is running and healthy", version);
    } else {
      report_.state_left = fmt::format(
          "rollback to version {} still in progress in the cluster: {} (follow it with: kubectl "
          "-n {} rollout status deployment/{})",
          version, status_.message, target_.namespace_name, target_.app);
    }
    console_.line(target_.app, report_.state_left);
  }

  RestConfig config_;
  RolloutTarget target_;
  RolloutSettings settings_;
  Console& console_;
  KubeClient client_;
  RolloutReport report_;
  std::unique_ptr<probe::Probe> probe_;
  std::string probe_failure_;
  std::size_t probe_judged_ = 0;  // the probe's requests, cancelled ones excluded
  std::string drain_failure_;

  std::string deployments_path_;
  std::string deployment_path_;
  std::string replica_sets_path_;
  std::string pods_path_;
  std::string selector_;
  std::string deployment_rv_;
  std::string replica_sets_rv_;
  std::string pods_rv_;

  EventQueue queue_;
  std::vector<std::unique_ptr<Watcher>> watchers_;
  std::size_t watch_requests_ = 0;
  Clock::time_point last_event_ = Clock::now();
  std::optional<std::chrono::system_clock::time_point> applied_at_;

  json deployment_;
  std::map<std::string, json> replica_sets_;
  std::map<std::string, json> pods_;
  RolloutStatus status_;
  std::optional<Diagnosis> diagnosis_;
  std::string new_hash_;
  std::set<std::string> old_hashes_;
  bool rollout_started_ = false;
  bool template_changed_ = false;           // this run's apply changes the pod template
  std::optional<json> pre_apply_template_;  // the live template before this run's apply
  std::map<std::string, OldPodExit> old_pods_;
  bool rolling_back_ = false;  // judging stops; the previous version is coming back
  bool view_changed_ = true;   // events arrived since the ReplicaSets were last analysed
  std::optional<json> current_replica_set_;
  std::vector<json> events_;
  Clock::time_point events_fetched_{};
};

AppRollout::AppRollout(RestConfig config, RolloutTarget target, RolloutSettings settings,
                       Console& console)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(target), std::move(settings),
                                   console)) {}
AppRollout::~AppRollout() = default;

RolloutReport AppRollout::run(const ApplyStep& apply, Deadline deadline) {
  return impl_->run(apply, deadline);
}

}  // namespace deployapps

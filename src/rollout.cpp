#include "deployapps/rollout.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "deployapps/apply.hpp"
#include "deployapps/certificate.hpp"
#include "deployapps/inflight_checks.hpp"
#include "deployapps/probe/report.hpp"
#include "deployapps/rollback.hpp"
#include "deployapps/rollout_follow.hpp"
#include "deployapps/rollout_judge.hpp"
#include "deployapps/rollout_status.hpp"
#include "deployapps/rollout_view.hpp"

namespace deployapps {
using nlohmann::json;

namespace {

json pod_template_of(const json& deployment) {
  return deployment.value("spec", json::object()).value("template", json::object());
}

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

json old_pods_json(const std::vector<OldPodExit>& pods) {
  json out = json::array();
  for (const auto& pod : pods) {
    out.push_back({{"pod", pod.pod},
                   {"exitCode", pod.exit_code ? json(*pod.exit_code) : json(nullptr)},
                   {"reason", pod.reason}});
  }
  return out;
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

// One app's rollout, the imperative shell around the pure judge: it records the pre-apply state,
// runs the in-flight checks (InFlightChecks), applies, has RolloutFollower watch and judge the
// rollout, rolls back to the pre-apply template on failure, and reports.
class AppRollout::Impl {
 public:
  Impl(RestConfig config, RolloutTarget target, RolloutSettings settings, Console& console)
      : config_(std::move(config)),
        target_(std::move(target)),
        settings_(std::move(settings)),
        console_(console),
        client_(config_),
        checks_(target_.app, console_),
        deployment_path_(fmt::format("/apis/apps/v1/namespaces/{}/deployments/{}",
                                     target_.namespace_name, target_.app)) {}

  ~Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;

  RolloutReport run(const ApplyStep& apply, Budget budget) {
    const auto started = Clock::now();
    budget_ = budget;
    report_.app = target_.app;
    report_.new_version = target_.new_version;
    if (!settings_.wait) {
      apply(client_);
      report_.result = RolloutResult::kApplied;
      return finished(started);
    }
    const auto before = client_.get_if_exists(deployment_path_, budget_.rollout);
    if (before) {
      pre_apply_.pod_template = pod_template_of(*before);
      report_.old_version = template_version(*pre_apply_.pod_template);
    }
    pre_apply_.template_changed = changes_template(before, budget_.rollout);
    // What else this run changes, recorded to be put back on failure. A first deploy has
    // nothing to put back.
    if (before) {
      pre_apply_.objects = ObjectSnapshot::take(client_, target_.others, budget_.rollout);
    }
    if ((pre_apply_.template_changed || !pre_apply_.objects.empty()) && !start_checks(before)) {
      return finished(started);
    }
    if (interrupts() > 0) {
      stop_checks(false);
      report_.result = RolloutResult::kInterrupted;
      report_.failure = "Ctrl-C before applying";
      report_.state_left = "nothing was applied";
      return finished(started);
    }
    FollowSettings following;
    following.never_ready_after = settings_.never_ready_after;
    following.verify = settings_.verify;
    following.interrupts = settings_.interrupts;
    following.overall = budget_.overall;
    follower_ =
        std::make_unique<RolloutFollower>(config_, client_, target_, following, checks_, console_);
    try {
      apply(client_);
    } catch (const Error& error) {
      stop_checks(false);
      // Every object was dry-run first, so this is rare (a timeout, a conflict), and it may
      // come after the Deployment changed: then it is a failed rollout, rolled back as such.
      const auto changed =
          pre_apply_.template_changed ? deployment_changed(budget_.overall) : false;
      if (changed == false) {
        throw;
      }
      fail_after_apply(fmt::format(
          "the apply failed {}: {}",
          changed ? "after the Deployment changed" : "and the Deployment may have changed",
          error.what()));
      return finished(started);
    }
    const auto applied_at = std::chrono::system_clock::now();
    try {
      follow(budget_.rollout, applied_at);
    } catch (const Error& error) {
      fail_after_apply(fmt::format("following the rollout failed: {}", error.what()));
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
    return !templates_equal_ignoring_hash(pod_template_of(dry), pod_template_of(*live));
  }

  // Starts the in-flight checks when an old version serves (a first deploy has nothing to keep
  // available). Returns false when that version already fails them: nothing may be applied then,
  // or the release would be blamed, and rolled back, for failures it did not cause.
  bool start_checks(const std::optional<json>& live) {
    if (!settings_.probe && !settings_.ingress && !settings_.drain) {
      return true;
    }
    if (!live || integer_at(*live, "/status/availableReplicas") <= 0) {
      console_.line(target_.app, "in-flight checks skipped: no version serves yet");
      return true;
    }
    if (settings_.probe || settings_.ingress) {
      checks_.start(settings_.probe, settings_.ingress, settings_.probe_warmup);
    }
    if (checks_.failure_count() == 0) {
      if (settings_.drain && pre_apply_.template_changed) {
        auto drain = *settings_.drain;
        drain.configured_pause = drain_pause_of(pod_template_of(*live));
        try {
          checks_.start_drain_timeline(config_, drain, budget_.overall, budget_.rollout);
        } catch (const Error&) {
          stop_checks(false);  // nothing was applied: the error says why
          throw;
        }
      }
      return true;
    }
    stop_checks(true);
    report_.result = RolloutResult::kFailed;
    report_.failure = fmt::format(
        "refused: the running version {} already fails requests, before anything was applied "
        "({}); fix it or the probe URL, or deploy with --no-verify",
        report_.old_version.empty() ? std::string("-") : report_.old_version, probe_failure_);
    report_.state_left = "nothing was applied";
    console_.line(target_.app, "FAILED: " + report_.failure);
    return false;
  }

  // Stops the in-flight checks and records what they saw; returns whether requests failed.
  bool stop_checks(bool write) {
    auto outcome = checks_.stop(write ? settings_.report_dir : std::filesystem::path());
    if (!outcome) {
      return false;
    }
    report_.probe_requests = outcome->requests;
    report_.probe_failures = outcome->failures;
    report_.reports_written.insert(report_.reports_written.end(), outcome->reports_written.begin(),
                                   outcome->reports_written.end());
    probe_judged_ = outcome->judged;
    report_.ingress_check = outcome->ingress ? outcome->ingress->summary : std::string();
    report_.drain_timelines = outcome->drain_timelines;
    if (write && !settings_.report_dir.empty()) {
      evidence_ = evidence_of(*outcome);
    }
    const bool failed = outcome->failures > 0 || (outcome->ingress && outcome->ingress->failed) ||
                        outcome->drain_failed;
    if (failed) {
      probe_failure_ = outcome->failure;
    }
    return failed;
  }

  // The report, with the run's duration and every API request it sent, watches included.
  RolloutReport finished(Clock::time_point started) {
    if (follower_) {
      follower_->stop_watches();
      report_.old_pods = follower_->old_pod_exits();
      report_.api_requests = follower_->watch_requests();
      report_.complete_to_reported = follower_->complete_to_reported();
      report_.event_to_reported = follower_->event_to_reported();
    }
    report_.api_requests += client_.requests_sent();
    report_.duration = std::chrono::duration_cast<Duration>(Clock::now() - started);
    if (evidence_) {
      write_certificate(*evidence_);
    }
    return report_;
  }

  CertificateEvidence evidence_of(const CheckOutcome& outcome) const {
    CertificateEvidence evidence;
    evidence.namespace_name = target_.namespace_name;
    evidence.issued_at = format_rfc3339(std::chrono::system_clock::now());
    if (outcome.probe_summary) {
      evidence.probe = settings_.probe;
      evidence.probe_summary = outcome.probe_summary;
    }
    evidence.ingress = outcome.ingress;
    evidence.ingress_url = settings_.ingress ? settings_.ingress->metrics_url : std::string();
    evidence.drain_checked = outcome.drain_recorded;
    evidence.min_requests = settings_.min_requests;
    return evidence;
  }

  // certificate.json and junit.xml beside the checks' reports, once the old pods' exits are in.
  // A failure is said, not thrown: the verdict stands.
  void write_certificate(const CertificateEvidence& evidence) {
    const auto write = [&](const char* name, const std::string& text) {
      const auto path = settings_.report_dir / name;
      try {
        std::filesystem::create_directories(settings_.report_dir);
        std::ofstream file(path, std::ios::trunc);
        file << text;
        file.close();
        if (!file) {
          throw std::runtime_error("cannot write " + path.string());
        }
        report_.reports_written.push_back(path.string());
      } catch (const std::exception& error) {
        console_.line(target_.app, fmt::format("warning: {} not written: {}", name, error.what()));
      }
    };
    write("certificate.json", certificate_json(report_, evidence).dump(2) + "\n");
    write("junit.xml", certificate_junit(report_, evidence));
    console_.line(target_.app, "certificate: " + certificate_line(report_, evidence));
  }

  // Whether the live Deployment's template is no longer the pre-apply one; nullopt when the API
  // does not say (then it counts as changed: restoring the pre-apply template is harmless).
  std::optional<bool> deployment_changed(Deadline deadline) {
    try {
      const auto live = client_.get_if_exists(deployment_path_, deadline);
      if (!live) {
        return false;  // not even created: the apply failed before it
      }
      return !pre_apply_.pod_template ||
             !templates_equal_ignoring_hash(pod_template_of(*live), *pre_apply_.pod_template);
    } catch (const Error& error) {
      spdlog::warn("{}: reading the Deployment after a failed apply: {}", target_.app,
                   error.what());
      return std::nullopt;
    }
  }

  // An error once the new template may be live is a failed rollout: rolled back like one.
  void fail_after_apply(const std::string& why) {
    report_.failure = why;
    console_.line(target_.app, "FAILED: " + why);
    roll_back(false);
    stop_checks(true);
  }

  void follow(Deadline deadline, std::chrono::system_clock::time_point applied_at) {
    const bool replacing_pods =
        follower_->list(deadline, applied_at) || pre_apply_.template_changed;
    if (!replacing_pods && pre_apply_.objects.empty()) {
      // Nothing to roll out: no new ReplicaSet, no watch needed.
      report_.result = RolloutResult::kUnchanged;
      console_.line(target_.app, fmt::format("unchanged: {}", follower_->status().message));
      stop_checks(false);
      return;
    }
    auto verdict = replacing_pods ? follower_->wait(deadline, false) : settle(deadline);
    if (verdict.kind == Verdict::Kind::kDone && replacing_pods && checks_.running()) {
      checks_.old_pods_deleted();
      verdict = follower_->wait_for_drain(deadline);
      if (verdict.kind == Verdict::Kind::kInterrupted) {
        // The new version is out and serving: a Ctrl-C now stops checking, it does not undo
        // the release.
        stop_checks(true);
        report_.result = RolloutResult::kInterrupted;
        report_.failure = verdict.why;
        report_.state_left =
            fmt::format("version {} is rolled out; the old pods' drain was not checked to the end",
                        target_.new_version);
        console_.line(target_.app, "interrupted: " + verdict.why + "; " + report_.state_left);
        return;
      }
    }
    if (verdict.kind == Verdict::Kind::kDone) {
      verdict = judge_checks();
      if (verdict.kind == Verdict::Kind::kDone) {
        report_.result = RolloutResult::kSucceeded;
        return;
      }
    }
    report_.failure = verdict.why;
    const bool interrupted = verdict.kind == Verdict::Kind::kInterrupted;
    console_.line(target_.app, (interrupted ? "interrupted: " : "FAILED: ") + verdict.why);
    // The probe keeps running through the rollback: the old version must keep serving.
    roll_back(interrupted);
    if (stop_checks(true) && report_.failure.find(probe_failure_) == std::string::npos) {
      report_.failure += "; " + probe_failure_;
    }
  }

  // A change that replaces no pod (a Service, Ingress or NetworkPolicy alone) still changes what
  // serves: the checks watch the traffic for a while after it.
  Verdict settle(Deadline deadline) {
    const auto until = deadline.at_most(settings_.object_change_settle);
    console_.line(
        target_.app,
        fmt::format("changed without new pods: {}{}", pre_apply_.objects.describe(),
                    checks_.running() ? fmt::format("; checking traffic for {}",
                                                    format_duration(settings_.object_change_settle))
                                      : std::string()));
    while (checks_.running() && !until.expired()) {
      if (checks_.failure_count() > 0) {
        return {Verdict::Kind::kFailed, "in-flight check: requests failed after the change"};
      }
      if (interrupts() > 0) {
        return {Verdict::Kind::kInterrupted, "Ctrl-C after the apply"};
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return {Verdict::Kind::kDone, "changed: " + pre_apply_.objects.describe()};
  }

  int interrupts() const {
    return settings_.interrupts != nullptr ? settings_.interrupts->load() : 0;
  }

  // After the rollout and the drain: the checks' own verdict on everything they saw.
  Verdict judge_checks() {
    if (stop_checks(true)) {
      return {Verdict::Kind::kFailed, probe_failure_};
    }
    if (probe_judged_ < settings_.min_requests) {
      return {Verdict::Kind::kFailed,
              fmt::format("in-flight check: {} requests judged, fewer than --min-requests {}: 0 "
                          "failures in {} bound the failure rate only below {:.2g} (95 %)",
                          probe_judged_, settings_.min_requests, probe_judged_,
                          probe::zero_failure_upper_bound_95(probe_judged_).value_or(1.0))};
    }
    return {Verdict::Kind::kDone, "checks passed"};
  }

  // Puts back what this run changed (rollback.hpp), by the budget's overall deadline.
  void roll_back(bool interrupted) {
    const auto result = deployapps::roll_back(pre_apply_, target_, report_.old_version, client_,
                                              *follower_, budget_.overall, console_);
    report_.rolled_back = result.rolled_back;
    report_.state_left = result.state_left;
    report_.result = interrupted       ? RolloutResult::kInterrupted
                     : result.complete ? RolloutResult::kRolledBack
                                       : RolloutResult::kFailed;
  }

  RestConfig config_;
  RolloutTarget target_;
  RolloutSettings settings_;
  Budget budget_ = Budget::unbounded();
  Console& console_;
  KubeClient client_;
  RolloutReport report_;
  InFlightChecks checks_;
  std::string probe_failure_;
  std::size_t probe_judged_ = 0;                 // the probe's requests, cancelled ones excluded
  std::optional<CertificateEvidence> evidence_;  // set once the checks stopped with reports
  std::string deployment_path_;
  std::unique_ptr<RolloutFollower> follower_;  // from the apply on
  PreApplyState pre_apply_;                    // what the apply changes, as it was before
};

AppRollout::AppRollout(RestConfig config, RolloutTarget target, RolloutSettings settings,
                       Console& console)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(target), std::move(settings),
                                   console)) {}
AppRollout::~AppRollout() = default;

RolloutReport AppRollout::run(const ApplyStep& apply, Budget budget) {
  return impl_->run(apply, budget);
}

}  // namespace deployapps

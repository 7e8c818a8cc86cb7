// The in-flight probe of one rollout: traffic started before the apply (long requests and
// streams in flight first), stopped after the old pods drained or the rollback ended, its
// reports written and its result summed up.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "deployapps/console.hpp"
#include "deployapps/drain_timeline.hpp"
#include "deployapps/ingress_check.hpp"
#include "deployapps/kubeconfig.hpp"
#include "deployapps/probe/config.hpp"
#include "deployapps/probe/report.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

namespace probe {
class Probe;
}
class DrainTimelineRecorder;

struct CheckOutcome {
  std::size_t requests = 0;
  std::size_t failures = 0;
  std::size_t judged = 0;  // requests, cancelled ones excluded
  std::string failure;     // the first failure, for people; "" when none
  std::vector<std::string> reports_written;
  // What the probe saw, summed up; unset when it did not run.
  std::optional<probe::Summary> probe_summary;
  // The real-traffic check (ingress_check.hpp): its verdict and what it counted; unset when off.
  std::optional<IngressJudgement> ingress;
  // The drain-race timelines (drain_timeline.hpp): a negative margin fails.
  bool drain_recorded = false;
  bool drain_failed = false;
  nlohmann::json drain_timelines = nlohmann::json::array();
};

// Where the real-traffic check reads the ingress controller's counters, and for which Service.
struct IngressCheckSettings {
  std::string metrics_url;  // e.g. http://127.0.0.1:8089/metrics (Traefik's Prometheus endpoint)
  std::string namespace_name;
  std::string service;
  bool required = false;  // given by the user: an endpoint that does not answer is an error
};

class InFlightChecks {
 public:
  InFlightChecks(std::string app, Console& console);
  ~InFlightChecks();
  InFlightChecks(const InFlightChecks&) = delete;
  InFlightChecks& operator=(const InFlightChecks&) = delete;
  InFlightChecks(InFlightChecks&&) = delete;
  InFlightChecks& operator=(InFlightChecks&&) = delete;

  // Starts the traffic (when `config` is set) and the real-traffic check (when `ingress` is), and
  // lets them run for `warmup` before the change is applied. Throws NetworkError when a required
  // ingress endpoint does not answer.
  void start(const std::optional<probe::Config>& config,
             const std::optional<IngressCheckSettings>& ingress, Duration warmup);
  // Starts recording the old pods' drain-race timelines. Throws ApiError (a missing permission
  // is named) before anything is applied.
  void start_drain_timeline(const RestConfig& config, const DrainTimelineSettings& settings,
                            Deadline overall, Deadline deadline);
  [[nodiscard]] bool running() const noexcept {
    return probe_ != nullptr || ingress_ != nullptr || drain_ != nullptr;
  }
  // Every old pod is deleted: the probe stops starting long requests and streams (those already
  // running go on through the drain), so that stop() does not wait for ones only the new version
  // serves.
  void old_pods_deleted();
  // Failed requests so far (the probe's, plus the ingress's errors beyond what its baseline
  // allows); 0 when not running.
  [[nodiscard]] std::size_t failure_count() const;
  // Stops the traffic; writes probe.json, timeline.png and drain.json into `report_dir` unless
  // it is empty (the rollout adds the certificate). nullopt when it was not running.
  std::optional<CheckOutcome> stop(const std::filesystem::path& report_dir);

 private:
  std::string app_;
  Console& console_;
  std::unique_ptr<probe::Probe> probe_;
  std::unique_ptr<IngressCheck> ingress_;
  std::unique_ptr<DrainTimelineRecorder> drain_;
};

}  // namespace deployapps

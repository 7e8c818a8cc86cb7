#include "deployapps/inflight_checks.hpp"

#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "deployapps/budget.hpp"
#include "deployapps/drain_timeline.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/ingress_check.hpp"
#include "deployapps/probe/probe.hpp"

namespace deployapps {

InFlightChecks::InFlightChecks(std::string app, Console& console)
    : app_(std::move(app)), console_(console) {}

InFlightChecks::~InFlightChecks() = default;

void InFlightChecks::start(const std::optional<probe::Config>& config,
                           const std::optional<IngressCheckSettings>& ingress, Duration warmup) {
  if (ingress) {
    auto check = std::make_unique<IngressCheck>(ingress->metrics_url, ingress->namespace_name,
                                                ingress->service);
    try {
      check->start();
      ingress_ = std::move(check);
      console_.line(app_,
                    fmt::format("in-flight checks: real traffic to service {}/{}, as the "
                                "ingress counts it ({})",
                                ingress->namespace_name, ingress->service, ingress->metrics_url));
    } catch (const Error& error) {
      if (ingress->required) {
        throw NetworkError(
            fmt::format("the ingress metrics endpoint does not answer: {}", error.what()));
      }
      console_.line(app_, fmt::format("real-traffic check off: {}", error.what()));
    }
  }
  if (config) {
    auto probe_config = *config;
    probe_config.duration = std::chrono::hours(1);  // stopped explicitly
    probe_ = std::make_unique<probe::Probe>(probe_config);
    console_.line(app_, fmt::format("in-flight checks: traffic to {}{}", probe_config.url,
                                    probe_config.host_header.empty()
                                        ? std::string()
                                        : " (Host: " + probe_config.host_header + ")"));
    probe_->start();
  }
  // Long requests and streams must be in flight before anything changes; the ingress's counters
  // over the same time are the baseline.
  std::this_thread::sleep_for(warmup);
  if (probe_) {
    probe_->mark(probe::kRolloutStart);
  }
  if (ingress_) {
    ingress_->mark_apply();
  }
}

void InFlightChecks::old_pods_deleted() {
  if (probe_) {
    probe_->stop_long_requests();
  }
}

void InFlightChecks::start_drain_timeline(const RestConfig& config,
                                          const DrainTimelineSettings& settings, Deadline overall,
                                          Deadline deadline) {
  auto recorder = std::make_unique<DrainTimelineRecorder>(config, settings, overall);
  recorder->start(deadline);
  drain_ = std::move(recorder);
  console_.line(app_, fmt::format("in-flight checks: the old pods' drain race (EndpointSlices{}, "
                                  "their logs; drain pause {})",
                                  settings.ingress_api_url.empty() ? "" : ", the ingress's API",
                                  format_duration(settings.configured_pause.total())));
}

std::size_t InFlightChecks::failure_count() const {
  std::size_t failures = probe_ ? probe_->failure_count() : 0;
  if (ingress_) {
    const auto judgement = ingress_->judgement();
    if (judgement.failed) {
      failures += 1;
    }
  }
  return failures;
}

std::optional<CheckOutcome> InFlightChecks::stop(const std::filesystem::path& report_dir) {
  if (!running()) {
    return std::nullopt;
  }
  CheckOutcome outcome;
  // Writes one report file into `report_dir`; a failure is said, not thrown: the verdict stands.
  const auto write = [&](const char* name, const char* what, auto&& write_to) {
    try {
      std::filesystem::create_directories(report_dir);
      const auto path = report_dir / name;
      write_to(path);
      outcome.reports_written.push_back(path.string());
    } catch (const std::exception& error) {
      console_.line(app_, fmt::format("{}: {}", what, error.what()));
    }
  };
  std::vector<std::pair<std::string, WallTime>> drain_moments;
  if (drain_) {
    auto drained = drain_->stop(Deadline::after(kDrainLogFinish));
    drain_moments = std::move(drained.moments);
    drain_.reset();
    for (const auto& line : drained.lines) {
      console_.line(app_, "drain race: " + line);
    }
    outcome.drain_recorded = true;
    outcome.drain_failed = drained.failed;
    outcome.drain_timelines = std::move(drained.timelines);
    if (drained.failed) {
      outcome.failure = "drain race: " + drained.failure;
    }
    if (!report_dir.empty() && !outcome.drain_timelines.empty()) {
      write("drain.json", "warning: drain timelines not written", [&](const auto& path) {
        std::ofstream(path, std::ios::trunc) << outcome.drain_timelines.dump(2) << '\n';
      });
    }
  }
  if (ingress_) {
    const auto judgement = ingress_->stop();
    ingress_.reset();
    console_.line(app_, "real-traffic check: " + judgement.summary);
    if (judgement.failed && outcome.failure.empty()) {
      outcome.failure =
          "real-traffic check: users got errors from the ingress: " + judgement.summary;
    }
    outcome.ingress = judgement;
  }
  if (!probe_) {
    return outcome;
  }
  probe_->mark(probe::kRolloutEnd);
  probe_->stop_and_wait();
  auto result = probe_->take_report();
  probe_.reset();
  // The drain race on the probe's time axis (the chart's): its offsets count from started_at.
  const auto probe_started = parse_rfc3339(result.info().started_at);
  for (const auto& [name, when] : drain_moments) {
    result.add_mark({name, std::chrono::duration_cast<probe::Offset>(when - probe_started)});
  }
  outcome.requests = result.records().size();
  outcome.failures = result.failures().size();
  const auto summary = result.summary();
  outcome.judged = summary.requests - summary.cancelled;
  outcome.probe_summary = summary;
  if (!report_dir.empty()) {
    write("probe.json", "warning: probe report not written", [&](const auto& path) {
      std::ofstream file(path, std::ios::trunc);
      result.write_json(file);
    });
    // The chart is an extra: without gnuplot the JSON report still holds every figure.
    write("timeline.png", "note: no chart drawn",
          [&](const auto& path) { result.write_chart(path); });
  }
  if (result.failed() && outcome.failure.empty()) {
    const auto failures = result.failures();
    const auto& first = failures.front();
    outcome.failure = fmt::format(
        "in-flight check: {} of {} requests failed; first: {} {} at +{} ({}{}{})", failures.size(),
        outcome.requests, probe::to_string(first.kind), probe::to_string(first.error),
        format_duration(std::chrono::duration_cast<Duration>(first.start)), first.detail,
        first.connection_served_by.empty() ? "" : ", connection to pod ",
        first.connection_served_by);
  }
  return outcome;
}

}  // namespace deployapps

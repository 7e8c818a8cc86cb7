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

#include "deployapps/console.hpp"
#include "deployapps/probe/config.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

namespace probe {
class Probe;
}

struct CheckOutcome {
  std::size_t requests = 0;
  std::size_t failures = 0;
  std::size_t judged = 0;  // requests, cancelled ones excluded
  std::string failure;     // the first failure, for people; "" when none
  std::vector<std::string> reports_written;
};

class InFlightChecks {
 public:
  InFlightChecks(std::string app, Console& console);
  ~InFlightChecks();
  InFlightChecks(const InFlightChecks&) = delete;
  InFlightChecks& operator=(const InFlightChecks&) = delete;
  InFlightChecks(InFlightChecks&&) = delete;
  InFlightChecks& operator=(InFlightChecks&&) = delete;

  // Starts the traffic and lets it run for `warmup` before the change is applied.
  void start(probe::Config config, Duration warmup);
  [[nodiscard]] bool running() const noexcept { return probe_ != nullptr; }
  // Failed requests so far; 0 when not running.
  [[nodiscard]] std::size_t failure_count() const;
  // Stops the traffic; writes probe.json, junit.xml and timeline.png into `report_dir` unless it
  // is empty. nullopt when it was not running.
  std::optional<CheckOutcome> stop(const std::filesystem::path& report_dir);

 private:
  std::string app_;
  Console& console_;
  std::unique_ptr<probe::Probe> probe_;
};

}  // namespace deployapps

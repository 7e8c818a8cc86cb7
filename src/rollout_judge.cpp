#include "deployapps/rollout_judge.hpp"

#include <fmt/format.h>

namespace deployapps {

Verdict judge(const Observation& observed) {
  using Kind = Verdict::Kind;
  if (observed.status.phase == RolloutPhase::kDone) {
    return {Kind::kDone, observed.status.message};
  }
  if (!observed.rolling_back) {
    if (observed.diagnosis && observed.diagnosis->certain) {
      return {Kind::kFailed, observed.diagnosis->describe(), true};
    }
    if (observed.probe_failures > 0) {
      return {Kind::kFailed, "in-flight check: requests failed during the rollout"};
    }
    if (observed.verify && !observed.drain_failure.empty()) {
      return {Kind::kFailed, observed.drain_failure};
    }
  }
  if (observed.interrupted) {
    return {Kind::kInterrupted, "Ctrl-C during the rollout"};
  }
  if (!observed.rolling_back && observed.status.phase == RolloutPhase::kFailed) {
    return {Kind::kFailed, observed.status.message};
  }
  if (observed.deadline_passed) {
    return {Kind::kTimedOut,
            fmt::format("timed out waiting for the rollout ({}){}", observed.status.message,
                        observed.diagnosis ? "; " + observed.diagnosis->describe() : "")};
  }
  return {};
}

}  // namespace deployapps

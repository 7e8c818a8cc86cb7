// The rollout's judge: from what was observed at one moment, whether the rollout goes on, is
// done, failed, was interrupted or ran out of time. Pure, so every rule is table-tested.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "deployapps/diagnosis.hpp"
#include "deployapps/rollout_status.hpp"

namespace deployapps {

// Why a rollout stops before it is done, or that it is.
struct Verdict {
  enum class Kind { kGoOn, kDone, kFailed, kInterrupted, kTimedOut } kind = Kind::kGoOn;
  std::string why;
  // kFailed on a certain diagnosis: the caller adds the crashing container's last log lines.
  bool from_diagnosis = false;
};

struct Observation {
  RolloutStatus status;                // kubectl's judgement of the Deployment
  std::optional<Diagnosis> diagnosis;  // early failure diagnosis (none while rolling back)
  bool rolling_back = false;           // only done, Ctrl-C and the deadline count
  std::size_t probe_failures = 0;      // failed in-flight requests so far
  std::string drain_failure;           // an old pod that exited non-zero while draining
  bool verify = true;                  // false (--no-verify): drain exits fail nothing
  bool interrupted = false;            // a Ctrl-C since this wait began
  bool deadline_passed = false;        // the budget's deadline for this wait
};

// The first rule that applies, in order: done; a certain diagnosis; failed in-flight requests; a
// failed drain; Ctrl-C; the controller's ProgressDeadlineExceeded; the deadline.
[[nodiscard]] Verdict judge(const Observation& observed);

}  // namespace deployapps

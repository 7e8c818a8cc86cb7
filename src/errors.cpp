#include "deployapps/errors.hpp"

namespace deployapps {

ExitCode exit_code_for(const std::exception& error) noexcept {
  if (dynamic_cast<const UsageError*>(&error) != nullptr) {
    return ExitCode::kUsage;
  }
  if (dynamic_cast<const InterruptedError*>(&error) != nullptr) {
    return ExitCode::kInterrupted;
  }
  return ExitCode::kFailed;
}

}  // namespace deployapps

#include "deployapps/errors.hpp"

namespace deployapps {

ExitCode exit_code_for(const std::exception& error) noexcept {
  if (dynamic_cast<const UsageError*>(&error) != nullptr) {
    return ExitCode::kUsage;
  }
  return ExitCode::kFailed;
}

}  // namespace deployapps

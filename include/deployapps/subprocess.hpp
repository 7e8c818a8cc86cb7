// Runs a child process with a deadline: credential plugins now, image builds in part 2.
// Hand-written on posix_spawn because Boost.Process 1.74 needs Boost.Filesystem linked in and its
// synchronous wait cannot be bounded together with reading both pipes.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "deployapps/errors.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

using EnvironmentVariables = std::vector<std::pair<std::string, std::string>>;

struct ProcessOptions {
  std::vector<std::string> argv;  // argv[0] is looked up on PATH unless it contains '/'
  // Set on top of this process's environment (replacing variables of the same name).
  EnvironmentVariables environment;
  std::optional<std::filesystem::path> working_directory;
  bool inherit_stdin = false;   // else /dev/null
  bool inherit_stderr = false;  // else captured
  Deadline deadline = Deadline::never();
  // Called with each complete line as it arrives (without the newline); output is also captured.
  std::function<void(std::string_view line)> on_stdout_line;
  std::function<void(std::string_view line)> on_stderr_line;
};

struct ProcessResult {
  int exit_code = 0;       // the exit status, or 128 + signal when killed by a signal
  bool timed_out = false;  // killed because the deadline passed
  std::string stdout_text;
  std::string stderr_text;
};

// The command could not be started at all (not found, not executable).
class SpawnError : public Error {
 public:
  SpawnError(const std::string& message, int error_number)
      : Error(message), error_number_(error_number) {}
  [[nodiscard]] int error_number() const noexcept { return error_number_; }

 private:
  int error_number_;
};

// Runs the process to completion (or until the deadline, then kills it). Throws SpawnError.
[[nodiscard]] ProcessResult run_process(const ProcessOptions& options);

}  // namespace deployapps

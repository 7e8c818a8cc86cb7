// `deploy-apps probe URL`: the in-flight traffic probe on its own (issue 6), e.g. to watch a
// rollout someone else runs. The probe itself is the deployapps::probe library.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <iosfwd>
#include <optional>
#include <string>

namespace deployapps {

struct ProbeOptions {
  std::string url;
  std::optional<std::string> host;  // Host header, e.g. go-app.localhost behind an ingress
  std::string duration = "60s";
  std::optional<std::string> json_report;
  std::optional<std::string> chart;
  std::string long_sleep = "5s";
  int stream_seconds = 10;
  int rate = 0;  // short requests per second, all short workers together; 0 = no bound
};

// Adds the `probe` subcommand to `app` and binds it to `options`.
CLI::App* setup_probe_command(CLI::App& app, ProbeOptions& options);

// Runs the probe; returns the exit code: 0 no failed request, 1 some failed (or the probe could
// not run), 2 bad input, 130 interrupted without failures. `interrupts`: 1 stops starting
// requests, 2 cancels those in flight.
[[nodiscard]] int run_probe_command(const ProbeOptions& options, std::ostream& out,
                                    std::ostream& err, const std::atomic<int>* interrupts);

}  // namespace deployapps

// The body of `deploy-apps probe URL`: run, print the summary, write the JSON report and chart.
#pragma once

#include <atomic>
#include <filesystem>
#include <iosfwd>

#include "deployapps/probe/config.hpp"
#include "deployapps/probe/report.hpp"

namespace deployapps::probe {

struct Outputs {
  std::filesystem::path json;   // the JSON report; empty for none
  std::filesystem::path chart;  // the timeline chart (.png or .svg); empty for none
};

// Runs a probe for config.duration, then prints report.summary_text() to `out` and writes the
// outputs. `interrupts` (optional, e.g. counted by a SIGINT handler) ends it early: 1 stops
// starting requests and drains, 2 cancels what is in flight. The caller decides the exit code from
// report.failed(). Throws ConfigError on bad input (before any traffic), Error when the host does
// not resolve or an output cannot be written, ChartError when gnuplot fails.
Report run_standalone(const Config& config, const Outputs& outputs, std::ostream& out,
                      const std::atomic<int>* interrupts = nullptr);

}  // namespace deployapps::probe

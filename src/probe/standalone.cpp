#include "deployapps/probe/standalone.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <thread>

#include "deployapps/probe/probe.hpp"

namespace deployapps::probe {
namespace {

// How often the interrupt counter is looked at while the probe runs.
constexpr auto kPollInterval = std::chrono::milliseconds(50);

void write_json(const Report& report, const std::filesystem::path& path) {
  std::ofstream file(path, std::ios::trunc);
  report.write_json(file);
  file.close();
  if (!file) {
    throw Error("cannot write the probe report " + path.string());
  }
}

}  // namespace

Report run_standalone(const Config& config, const Outputs& outputs, std::ostream& out,
                      const std::atomic<int>* interrupts) {
  if (!outputs.chart.empty() && outputs.chart.extension() != ".png" &&
      outputs.chart.extension() != ".svg") {
    throw ConfigError("chart " + outputs.chart.string() + ": use a .png or .svg file name");
  }
  // Found out now rather than after a long run.
  for (const auto& path : {outputs.json, outputs.chart}) {
    if (!path.empty() &&
        !std::filesystem::is_directory(path.parent_path().empty() ? std::filesystem::path(".")
                                                                  : path.parent_path())) {
      throw ConfigError("cannot write " + path.string() + ": no such directory");
    }
  }
  Probe probe(config);
  probe.start();
  int handled = 0;
  while (probe.running()) {
    std::this_thread::sleep_for(kPollInterval);
    const int seen = interrupts ? interrupts->load() : 0;
    if (seen >= 1 && handled < 1) {
      probe.mark("interrupted");
      probe.request_stop();
    }
    if (seen >= 2 && handled < 2) {
      probe.cancel();
    }
    handled = std::max(handled, seen);
  }
  probe.wait();
  Report report = probe.take_report();
  out << report.summary_text() << std::flush;
  if (!outputs.json.empty()) {
    write_json(report, outputs.json);
    out << "report: " << outputs.json.string() << '\n';
  }
  if (!outputs.chart.empty()) {
    report.write_chart(outputs.chart);
    out << "chart: " << outputs.chart.string() << '\n';
  }
  return report;
}

}  // namespace deployapps::probe

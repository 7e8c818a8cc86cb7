#include "deployapps/probe_command.hpp"

#include <fmt/format.h>
#include <ostream>

#include "deployapps/errors.hpp"
#include "deployapps/probe/standalone.hpp"
#include "deployapps/time.hpp"

namespace deployapps {
namespace {

std::string check_duration(const std::string& text) {
  try {
    (void)parse_duration(text);
    return {};
  } catch (const UsageError& error) {
    return error.what();
  }
}

}  // namespace

CLI::App* setup_probe_command(CLI::App& app, ProbeOptions& options) {
  auto* probe = app.add_subcommand(
      "probe",
      "Send a mixed HTTP load (keep-alive GETs and POSTs, new connections, long requests, "
      "streams) to URL, record every request, and print a summary; exit 1 if any failed");
  probe->add_option("URL", options.url, "Base URL of the app, e.g. http://127.0.0.1:8088")
      ->required();
  probe->add_option("--host", options.host,
                    "Host header to send, e.g. go-app.localhost for an ingress");
  probe->add_option("--duration", options.duration, "How long to send traffic, e.g. 60s, 5m")
      ->type_name("DURATION")
      ->check(check_duration)
      ->default_str("60s");
  probe->add_option("--json", options.json_report, "Write the JSON report (every request) here")
      ->type_name("FILE");
  probe->add_option("--chart", options.chart, "Draw the timeline chart here (.png or .svg)")
      ->type_name("FILE");
  probe->add_option("--long-sleep", options.long_sleep, "?sleep= of the long requests")
      ->type_name("DURATION")
      ->check(check_duration)
      ->default_str("5s");
  probe->add_option("--stream-seconds", options.stream_seconds, "Length of each /stream")
      ->check(CLI::Range(1, 120))
      ->default_str("10");
  probe
      ->add_option("--rate", options.rate,
                   "At most this many short requests per second, all keep-alive and "
                   "new-connection workers together (0: no bound)")
      ->type_name("N")
      ->check(CLI::Range(0, 100000))
      ->default_str("0");
  probe->footer(
      "Ctrl-C once stops starting requests and waits for those in flight; twice cancels them.\n"
      "Example: deploy-apps probe http://127.0.0.1:8088 --host go-app.localhost --duration 60s "
      "--json out/probe.json --chart out/probe.png");
  return probe;
}

int run_probe_command(const ProbeOptions& options, std::ostream& out, std::ostream& err,
                      const std::atomic<int>* interrupts) {
  probe::Config config;
  config.url = options.url;
  config.host_header = options.host.value_or("");
  probe::Outputs outputs;
  try {
    config.duration = parse_duration(options.duration);
    config.long_sleep = parse_duration(options.long_sleep);
    config.stream_length = std::chrono::seconds(options.stream_seconds);
    config.max_short_requests_per_second = options.rate;
    outputs.json = options.json_report.value_or("");
    outputs.chart = options.chart.value_or("");
    config.validate();
    const auto report = probe::run_standalone(config, outputs, out, interrupts);
    if (report.failed()) {
      err << fmt::format("deploy-apps: probe: {} of {} requests failed\n", report.failures().size(),
                         report.records().size());
      return static_cast<int>(ExitCode::kFailed);
    }
    if (interrupts != nullptr && interrupts->load() > 0) {
      return static_cast<int>(ExitCode::kInterrupted);
    }
    return static_cast<int>(ExitCode::kOk);
  } catch (const probe::ConfigError& error) {
    err << "deploy-apps: error: " << error.what() << '\n';
    return static_cast<int>(ExitCode::kUsage);
  } catch (const UsageError& error) {
    err << "deploy-apps: error: " << error.what() << '\n';
    return static_cast<int>(ExitCode::kUsage);
  } catch (const probe::Error& error) {
    err << "deploy-apps: error: probe: " << error.what() << '\n';
    return static_cast<int>(ExitCode::kFailed);
  }
}

}  // namespace deployapps

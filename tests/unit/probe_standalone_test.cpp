// run_standalone: what `deploy-apps probe URL` does end to end, against a real local server.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "deployapps/probe/standalone.hpp"
#include "probe_test_server.hpp"
#include "probe_test_support.hpp"

namespace probe = deployapps::probe;
using deployapps::probe::testing::MessageContains;
using deployapps::probe::testing::read_file;
using deployapps::probe::testing::TempDir;
using deployapps::probe::testing::TestServer;
using namespace std::chrono_literals;

namespace {

probe::Config quick(const std::string& url) {
  probe::Config config;
  config.url = url;
  config.duration = 300ms;
  config.long_sleep = 100ms;
  config.stream_length = 2s;  // the test server sends lines 5 ms apart
  return config;
}

}  // namespace

TEST_CASE("standalone: prints the summary and writes the JSON report and the chart",
          "[probe][standalone]") {
  TestServer server;
  const TempDir dir;
  const probe::Outputs outputs{dir.path() / "report.json", dir.path() / "timeline.png"};
  std::ostringstream out;
  const auto report = probe::run_standalone(quick(server.url()), outputs, out);
  CHECK_FALSE(report.failed());
  CHECK_THAT(out.str(),
             Catch::Matchers::Contains("requests: " + std::to_string(report.records().size()) +
                                       " total, 0 failed"));
  CHECK_THAT(out.str(), Catch::Matchers::Contains("chart: " + outputs.chart.string()));
  const auto written = probe::Report::from_json(nlohmann::json::parse(read_file(outputs.json)));
  CHECK(written == report);
  CHECK(read_file(outputs.chart).substr(1, 3) == "PNG");
}

TEST_CASE("standalone: interrupts stop, then cancel", "[probe][standalone]") {
  TestServer server;
  probe::Config config = quick(server.url());
  config.duration = 60s;
  config.long_sleep = 3s;
  std::atomic<int> interrupts{0};
  std::ostringstream out;
  const auto began = std::chrono::steady_clock::now();
  std::thread interrupter([&interrupts] {
    std::this_thread::sleep_for(200ms);
    ++interrupts;  // stop starting requests; the 3 s long requests keep running
    std::this_thread::sleep_for(300ms);
    ++interrupts;  // cancel them
  });
  const auto report = probe::run_standalone(config, {}, out, &interrupts);
  interrupter.join();
  const auto took = std::chrono::steady_clock::now() - began;
  CHECK(took >= 500ms);
  CHECK(took < 2500ms);  // cancelled, not waiting for the 3 s long requests
  REQUIRE(report.mark("interrupted"));
  CHECK(*report.mark("interrupted") >= 200ms);
  CHECK_FALSE(report.failed());
  CHECK(report.summary().cancelled >= 2);  // the long requests
}

TEST_CASE("standalone: bad outputs are refused before any traffic", "[probe][standalone]") {
  TestServer server;
  const TempDir dir;
  std::ostringstream out;
  CHECK_THROWS_MATCHES(
      probe::run_standalone(quick(server.url()), {{}, dir.path() / "chart.gif"}, out),
      probe::ConfigError, MessageContains(".png or .svg"));
  CHECK_THROWS_MATCHES(
      probe::run_standalone(quick(server.url()), {dir.path() / "missing" / "r.json", {}}, out),
      probe::ConfigError, MessageContains("no such directory"));
  CHECK(server.requests() == 0);
}

// The chart: the generated gnuplot script, and real gnuplot runs (gnuplot-nox is a test
// dependency).
#include <filesystem>

#include <catch2/catch.hpp>

#include "deployapps/probe/config.hpp"
#include "deployapps/probe/report.hpp"
#include "probe_test_support.hpp"

namespace fs = std::filesystem;
namespace probe = deployapps::probe;
using deployapps::probe::testing::MessageContains;
using deployapps::probe::testing::read_file;
using deployapps::probe::testing::TempDir;
using namespace std::chrono_literals;

namespace {

probe::Record answered(probe::Offset start, probe::Offset end, std::string version) {
  probe::Record record;
  record.start = start;
  record.end = end;
  record.response = end;
  record.status = 200;
  record.version = std::move(version);
  return record;
}

probe::Report sample(bool with_failure) {
  std::vector<probe::Record> records;
  for (int i = 0; i < 200; ++i) {
    const auto start = probe::Offset{i * 10'000};
    records.push_back(answered(start, start + 2ms, i < 120 ? "v1" : "it's v2"));
  }
  probe::Record stream = answered(0ms, 1500ms, "v1");
  stream.kind = probe::RequestKind::stream;
  records.push_back(stream);
  if (with_failure) {
    probe::Record failed;
    failed.start = 1000ms;
    failed.end = 1001ms;
    failed.error = probe::ErrorClass::reset;
    records.push_back(failed);
  }
  return probe::Report(
      {"http://127.0.0.1:8088", "go-app.localhost", "2025-01-01T00:00:00.000Z", 2000ms},
      std::move(records), {{"rollout-start", 500ms}, {"rollout-end", 1800ms}});
}

}  // namespace

TEST_CASE("chart script: one series per version, failures only when there are some",
          "[probe][chart]") {
  const std::string with = probe::chart_script(sample(true), "out.png");
  CAPTURE(with);
  CHECK_THAT(with, Catch::Matchers::Contains("set terminal pngcairo"));
  CHECK_THAT(with, Catch::Matchers::Contains("set output 'out.png'"));
  CHECK_THAT(with, Catch::Matchers::Contains("$LATENCY0 << EOD"));
  CHECK_THAT(with, Catch::Matchers::Contains("$LATENCY1 << EOD"));
  CHECK_THAT(with, Catch::Matchers::Contains("title 'v1'"));
  CHECK_THAT(with, Catch::Matchers::Contains("title 'it''s v2'"));  // gnuplot quoting
  CHECK_THAT(with, Catch::Matchers::Contains("title 'failed'"));
  CHECK_THAT(with, Catch::Matchers::Contains("'rollout-start'"));
  CHECK_THAT(with, Catch::Matchers::Contains("1.000000 1.000\n"));  // the failure's point
  // The stream is drawn in its own series of triangles.
  CHECK_THAT(with, Catch::Matchers::Contains("$LONG0 << EOD\n0.000000 1500.000\nEOD"));
  CHECK_THAT(with, Catch::Matchers::Contains("$LONG0 using 1:2 with points pt 9"));

  const std::string without = probe::chart_script(sample(false), "out.svg");
  CHECK_THAT(without, Catch::Matchers::Contains("set terminal svg"));
  CHECK_THAT(without, !Catch::Matchers::Contains("title 'failed'"));
}

TEST_CASE("chart: gnuplot draws a PNG and an SVG", "[probe][chart]") {
  const TempDir dir;
  const fs::path png = dir.path() / "timeline.png";
  sample(true).write_chart(png);
  const std::string bytes = read_file(png);
  REQUIRE(bytes.size() > 1000);
  CHECK(bytes.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  CHECK(fs::exists(dir.path() / "timeline.gp"));

  const fs::path svg = dir.path() / "timeline.svg";
  sample(false).write_chart(svg);
  CHECK_THAT(read_file(svg), Catch::Matchers::Contains("<svg"));
}

TEST_CASE("chart: bad requests fail clearly and write nothing", "[probe][chart]") {
  const TempDir dir;
  SECTION("unknown extension") {
    CHECK_THROWS_MATCHES(sample(true).write_chart(dir.path() / "timeline.jpg"), probe::ChartError,
                         MessageContains(".png or .svg"));
  }
  SECTION("empty report") {
    CHECK_THROWS_MATCHES(probe::Report().write_chart(dir.path() / "timeline.png"),
                         probe::ChartError, MessageContains("no requests"));
  }
  SECTION("unwritable directory") {
    CHECK_THROWS_AS(sample(true).write_chart(dir.path() / "missing" / "timeline.png"),
                    probe::ChartError);
  }
  CHECK(fs::is_empty(dir.path()));
}

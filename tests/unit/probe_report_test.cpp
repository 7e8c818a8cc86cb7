// The summary math, JSON round trip and text, on synthetic records with known answers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "deployapps/probe/report.hpp"

namespace probe = deployapps::probe;
using probe::ErrorClass;
using probe::Offset;
using probe::RequestKind;
using namespace std::chrono_literals;

namespace {

std::uint64_t next_id = 0;

// A request from start_ms to end_ms, answered (headers at the end) unless it failed before.
probe::Record request(RequestKind kind, double start_ms, double end_ms, std::string version,
                      ErrorClass error = ErrorClass::none) {
  probe::Record record;
  record.id = ++next_id;
  record.kind = kind;
  record.start = Offset{static_cast<std::int64_t>(start_ms * 1000)};
  record.end = Offset{static_cast<std::int64_t>(end_ms * 1000)};
  record.error = error;
  const bool answered = error == ErrorClass::none || error == ErrorClass::http_5xx ||
                        error == ErrorClass::http_4xx || error == ErrorClass::truncated;
  if (answered) {
    record.response = kind == RequestKind::stream ? record.start + 1ms : record.end;
    record.status = error == ErrorClass::http_5xx ? 503 : error == ErrorClass::http_4xx ? 404 : 200;
    record.version = std::move(version);
    record.served_by = "pod-" + record.version;
  }
  record.connection = record.id;
  return record;
}

probe::Record short_get(double start_ms, double latency_ms, std::string version,
                        ErrorClass error = ErrorClass::none) {
  return request(RequestKind::keepalive_get, start_ms, start_ms + latency_ms, std::move(version),
                 error);
}

probe::Report report_of(std::vector<probe::Record> records, std::vector<probe::Mark> marks = {}) {
  return probe::Report({"http://127.0.0.1:1", "app.localhost", "2025-01-01T00:00:00.000Z", 0us},
                       std::move(records), std::move(marks));
}

}  // namespace

TEST_CASE("nearest-rank percentiles", "[probe][report]") {
  std::vector<Offset> hundred;
  for (int i = 100; i >= 1; --i) {
    hundred.emplace_back(i);
  }
  CHECK(probe::nearest_rank_percentile(hundred, 50) == Offset{50});
  CHECK(probe::nearest_rank_percentile(hundred, 99) == Offset{99});
  CHECK(probe::nearest_rank_percentile(hundred, 100) == Offset{100});
  CHECK(probe::nearest_rank_percentile(hundred, 0.5) == Offset{1});

  std::vector<Offset> two{Offset{7}, Offset{3}};
  CHECK(probe::nearest_rank_percentile(two, 50) == Offset{3});
  CHECK(probe::nearest_rank_percentile(two, 99) == Offset{7});
  std::vector<Offset> one{Offset{5}};
  CHECK(probe::nearest_rank_percentile(one, 99) == Offset{5});
  std::vector<Offset> none;
  CHECK(probe::nearest_rank_percentile(none, 50) == Offset{0});
}

TEST_CASE("summary: totals, classes, kinds, versions", "[probe][report]") {
  const auto report = report_of({
      short_get(0, 1, "v1"),
      short_get(10, 1, "v1"),
      short_get(20, 1, "", ErrorClass::eof),
      short_get(30, 1, "v2", ErrorClass::http_5xx),
      request(RequestKind::fresh_get, 40, 41, "", ErrorClass::refused),
      request(RequestKind::stream, 0, 5000, "v1", ErrorClass::truncated),
      request(RequestKind::long_get, 0, 100, "", ErrorClass::cancelled),
      short_get(50, 1, "v2"),
  });
  const auto summary = report.summary();
  CHECK(summary.requests == 8);
  CHECK(summary.failed == 4);
  CHECK(summary.cancelled == 1);
  CHECK(report.failed());
  CHECK(report.failures().size() == 4);
  const std::map<ErrorClass, std::size_t> classes{{ErrorClass::eof, 1},
                                                  {ErrorClass::http_5xx, 1},
                                                  {ErrorClass::refused, 1},
                                                  {ErrorClass::truncated, 1}};
  CHECK(summary.failures_by_class == classes);
  CHECK(summary.by_kind.at(RequestKind::keepalive_get).requests == 5);
  CHECK(summary.by_kind.at(RequestKind::keepalive_get).failed == 2);
  CHECK(summary.by_kind.at(RequestKind::long_get).failed == 0);
  // Ordered by first response: the stream's headers (1 ms) came first.
  REQUIRE(summary.versions.size() == 2);
  CHECK(summary.versions[0].version == "v1");
  CHECK(summary.versions[0].responses == 3);
  CHECK(summary.versions[1].version == "v2");
  CHECK(summary.versions[1].responses == 2);
  CHECK(summary.connections_opened == 8);
}

TEST_CASE("summary: a run with only cancelled requests has not failed", "[probe][report]") {
  const auto report = report_of({request(RequestKind::long_get, 0, 10, "", ErrorClass::cancelled)});
  CHECK_FALSE(report.failed());
  CHECK(report.summary().failed == 0);
}

TEST_CASE("certificate: the 95 % bound that 0 failures in N requests support", "[probe][report]") {
  CHECK_FALSE(probe::zero_failure_upper_bound_95(0));
  CHECK(*probe::zero_failure_upper_bound_95(1) == Approx(0.95));
  // The rule of three: about 3/N for large N.
  CHECK(*probe::zero_failure_upper_bound_95(100000) == Approx(3.0 / 100000).epsilon(0.01));

  std::vector<probe::Record> clean;
  for (int i = 0; i < 300; ++i) {
    clean.push_back(short_get(i, 1, "v1"));
  }
  clean.push_back(request(RequestKind::long_get, 0, 10, "", ErrorClass::cancelled));
  const auto report = report_of(clean);
  const auto bound = report.to_json()["summary"]["zero_failure_bound_95"];
  CHECK(bound["requests"] == 300);  // the cancelled request proves nothing
  CHECK(bound["failure_rate_upper_bound"].get<double>() == Approx(0.00994).epsilon(0.01));

  clean.push_back(short_get(400, 1, "", ErrorClass::eof));
  const auto failed = report_of(clean);
  CHECK(failed.to_json()["summary"]["zero_failure_bound_95"].is_null());
}

TEST_CASE("summary: switch-over window over short requests", "[probe][report]") {
  std::vector<probe::Record> records;
  // v1 answers until 10 s, v2 from 5 s: both answer between 5 s and 10 s.
  for (int t = 0; t <= 10000; t += 500) {
    records.push_back(short_get(t, 2, "v1"));
  }
  for (int t = 5000; t <= 20000; t += 500) {
    records.push_back(short_get(t, 2, "v2"));
  }
  // A long request on v1 that ends late must not stretch the window.
  records.push_back(request(RequestKind::long_get, 9000, 30000, "v1"));
  const auto summary = report_of(std::move(records)).summary();
  REQUIRE(summary.switch_over);
  CHECK(summary.switch_over->old_version == "v1");
  CHECK(summary.switch_over->new_version == "v2");
  CHECK(summary.switch_over->window.start == 5002ms);
  CHECK(summary.switch_over->window.end == 10002ms);
  // Without marks the switch-over is the rollout window.
  REQUIRE(summary.rollout);
  CHECK(summary.rollout_source == "switch-over");
  CHECK(summary.rollout->start == 5002ms);
  CHECK(summary.rollout->end == 10002ms);
}

TEST_CASE("summary: a clean cut has a negative switch-over and a positive rollout window",
          "[probe][report]") {
  const auto summary = report_of({short_get(0, 1, "v1"), short_get(100, 1, "v2")}).summary();
  REQUIRE(summary.switch_over);
  CHECK(summary.switch_over->window.start == 101ms);
  CHECK(summary.switch_over->window.end == 1ms);
  CHECK(summary.switch_over->window.length() < 0ms);
  REQUIRE(summary.rollout);
  CHECK(summary.rollout->start == 1ms);
  CHECK(summary.rollout->end == 101ms);
}

TEST_CASE("summary: one version means no switch-over and no rollout window", "[probe][report]") {
  const auto summary = report_of({short_get(0, 1, "v1"), short_get(5, 1, "v1")}).summary();
  CHECK_FALSE(summary.switch_over);
  CHECK_FALSE(summary.rollout);
  CHECK(summary.steady.count == 2);
  CHECK(summary.during_rollout.count == 0);
}

TEST_CASE("summary: latency in steady state vs during the marked rollout", "[probe][report]") {
  std::vector<probe::Record> records;
  // Steady: 100 requests of 1..100 ms before 1 s. Rollout 1 s..2 s: 10 requests of 10..100 ms.
  for (int i = 1; i <= 100; ++i) {
    records.push_back(short_get(0, i, "v1"));
  }
  for (int i = 1; i <= 10; ++i) {
    records.push_back(short_get(1000 + i * 50, i * 10, i < 5 ? "v1" : "v2"));
  }
  // Overlapping the window's start counts as during; failures and long requests are left out.
  records.push_back(short_get(990, 500, "v1"));
  records.push_back(short_get(1100, 5, "", ErrorClass::reset));
  records.push_back(request(RequestKind::long_get, 1200, 1700, "v2"));
  records.push_back(short_get(3000, 7, "v2"));  // steady again after the window
  const auto summary =
      report_of(std::move(records),
                {{"rollout-start", 1000ms}, {"deploy go-app", 1500ms}, {"rollout-end", 2000ms}})
          .summary();
  REQUIRE(summary.rollout);
  CHECK(summary.rollout_source == "marks");
  CHECK(summary.rollout->start == 1000ms);
  CHECK(summary.rollout->end == 2000ms);
  CHECK(summary.steady.count == 101);
  CHECK(summary.steady.p50 == 50ms);
  CHECK(summary.steady.p99 == 99ms);
  CHECK(summary.steady.max == 100ms);
  CHECK(summary.during_rollout.count == 11);
  CHECK(summary.during_rollout.p50 == 60ms);
  CHECK(summary.during_rollout.p99 == 500ms);
  CHECK(summary.during_rollout.max == 500ms);
  // Requests started after the window: only v2.
  REQUIRE(summary.versions_after_rollout.size() == 1);
  CHECK(summary.versions_after_rollout[0].version == "v2");
}

TEST_CASE("summary: long requests and streams started before the rollout", "[probe][report]") {
  const auto report = report_of(
      {
          request(RequestKind::long_get, 0, 5000, "v1"),
          request(RequestKind::stream, 100, 10100, "v1", ErrorClass::truncated),
          request(RequestKind::long_get, 3000, 8000, "v2"),  // started during: not counted
          short_get(10, 1, "v1"),
      },
      {{"rollout-start", 2000ms}});  // no end mark: the window runs to the end
  const auto summary = report.summary();
  REQUIRE(summary.rollout);
  CHECK(summary.rollout->end == 10100ms);
  CHECK(summary.long_lived_before_rollout.requests == 2);
  CHECK(summary.long_lived_before_rollout.failed == 1);
  CHECK(report.mark("rollout-start") == 2000ms);
  CHECK_FALSE(report.mark("rollout-end"));
}

TEST_CASE("report: JSON round trip keeps every field", "[probe][report]") {
  probe::Record full = short_get(1.5, 2.25, "v2");
  full.worker = 3;
  full.connection = 42;
  full.connection_reused = true;
  full.stale_connection_replaced = true;
  full.connection_served_by = "pod-a";
  full.server_closed = true;
  full.detail = "quote \" and newline \n";
  probe::Record streamed = request(RequestKind::stream, 0, 30, "v1");
  streamed.stream_lines = 3;
  probe::Record unanswered = request(RequestKind::fresh_get, 1, 2, "", ErrorClass::refused);
  unanswered.connection = 0;
  REQUIRE_FALSE(unanswered.response);
  const auto original = report_of({full, streamed, unanswered}, {{"rollout-start", 1ms}});

  const nlohmann::json json = nlohmann::json::parse(original.to_json().dump());
  const auto copy = probe::Report::from_json(json);
  CHECK(copy == original);
  CHECK(copy.records()[0].detail == full.detail);
  CHECK_FALSE(copy.records()[2].response);

  CHECK(json.at("summary").at("failed") == 1);
  CHECK(json.at("summary").at("failures_by_class").at("refused") == 1);
  CHECK(json.at("summary").at("rollout").at("source") == "marks");
  CHECK(json.at("records")[2].at("response_us").is_null());
  CHECK(json.at("records")[0].at("kind") == "keepalive-get");
  CHECK(json.at("probe").at("host_header") == "app.localhost");

  // The streamed writer gives the same document, a record per line.
  std::ostringstream written;
  original.write_json(written);
  const auto text = written.str();
  CHECK(nlohmann::json::parse(text) == original.to_json());
  CHECK(std::count(text.begin(), text.end(), '\n') >= 3 + 3);
  std::ostringstream empty;
  report_of({}).write_json(empty);
  CHECK(nlohmann::json::parse(empty.str()).at("records").empty());
}

TEST_CASE("report: malformed JSON is rejected", "[probe][report]") {
  auto json = report_of({short_get(0, 1, "v1")}).to_json();
  SECTION("unknown error class") {
    json["records"][0]["error"] = "gremlins";
    CHECK_THROWS_AS(probe::Report::from_json(json), std::invalid_argument);
  }
  SECTION("missing field") {
    json["records"][0].erase("end_us");
    CHECK_THROWS_AS(probe::Report::from_json(json), nlohmann::json::exception);
  }
}

TEST_CASE("report: summary text names the figures and the failures", "[probe][report]") {
  probe::Record reset = short_get(1000, 1, "", ErrorClass::reset);
  reset.connection_reused = true;
  reset.connection_served_by = "pod-old";
  reset.detail = "read headers: Connection reset by peer";
  const auto text = report_of({short_get(0, 1, "v1"), reset, short_get(2000, 1, "v2")},
                              {{"rollout-start", 500ms}, {"rollout-end", 2500ms}})
                        .summary_text();
  CAPTURE(text);
  CHECK_THAT(text, Catch::Matchers::Contains("requests: 3 total, 1 failed"));
  CHECK_THAT(text, Catch::Matchers::Contains("failures by class: reset 1"));
  CHECK_THAT(text, Catch::Matchers::Contains("versions: v1 1, v2 1"));
  CHECK_THAT(text, Catch::Matchers::Contains("switch-over v1 -> v2"));
  CHECK_THAT(text, Catch::Matchers::Contains("rollout window (marks): 0.500 s .. 2.500 s"));
  CHECK_THAT(text, Catch::Matchers::Contains("pinned to pod-old"));
  CHECK_THAT(text, Catch::Matchers::Contains("FAILED 1.000 s"));
}

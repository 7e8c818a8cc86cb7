// The probe against real HTTP servers on 127.0.0.1:0 that behave or misbehave on demand. Each
// failure mode must surface as its error class; correct behaviour (Connection: close, idle
// closes) must not.
#include <algorithm>
#include <functional>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "deployapps/probe/probe.hpp"
#include "probe_test_server.hpp"

namespace probe = deployapps::probe;
using probe::ErrorClass;
using probe::RequestKind;
using probe::testing::Reply;
using probe::testing::ServerRequest;
using probe::testing::TestServer;
using namespace std::chrono_literals;

namespace {

// A small, fast mix: every kind once, streams of 4 lines, long requests of 150 ms.
probe::Config small_mix(const std::string& url) {
  probe::Config config;
  config.url = url;
  config.duration = 500ms;
  config.keepalive_get_workers = 2;
  config.keepalive_post_workers = 1;
  config.fresh_connection_workers = 1;
  config.initial_long_requests = 1;
  config.long_request_workers = 1;
  config.initial_streams = 1;
  config.stream_workers = 1;
  config.long_sleep = 150ms;
  config.stream_length = 4s;  // the test server sends the 4 lines 5 ms apart
  config.request_interval = 5ms;
  config.connect_timeout = 1s;
  config.request_timeout = 2s;
  return config;
}

// Only `count` keep-alive GET workers.
probe::Config keepalive_only(const std::string& url, int count = 1) {
  probe::Config config = small_mix(url);
  config.keepalive_post_workers = config.fresh_connection_workers = 0;
  config.initial_long_requests = config.long_request_workers = 0;
  config.initial_streams = config.stream_workers = 0;
  config.keepalive_get_workers = count;
  return config;
}

probe::Report run(const probe::Config& config) {
  probe::Probe traffic(config);
  traffic.start();
  traffic.wait();
  // take_report() moves the same records out that report() copies.
  const auto copied = traffic.report();
  auto taken = traffic.take_report();
  CHECK(taken.records() == copied.records());
  CHECK(traffic.report().records().empty());
  return taken;
}

// Runs `config`, calling `act` on the running probe once `after` has passed (a rollout's moment).
probe::Report run_acting(const probe::Config& config, std::chrono::milliseconds after,
                         const std::function<void(probe::Probe&)>& act) {
  probe::Probe traffic(config);
  traffic.start();
  std::this_thread::sleep_for(after);
  act(traffic);
  traffic.wait();
  return traffic.report();
}

std::vector<probe::Record> of_kind(const probe::Report& report, RequestKind kind) {
  std::vector<probe::Record> out;
  std::copy_if(report.records().begin(), report.records().end(), std::back_inserter(out),
               [kind](const probe::Record& record) { return record.kind == kind; });
  return out;
}

std::set<ErrorClass> classes(const probe::Report& report) {
  std::set<ErrorClass> out;
  for (const auto& [error, count] : report.summary().failures_by_class) {
    out.insert(error);
  }
  return out;
}

}  // namespace

TEST_CASE("traffic: a healthy server gets the whole mix and nothing fails", "[probe][traffic]") {
  TestServer server;
  const auto report = run(small_mix(server.url()));
  INFO(report.summary_text());
  CHECK_FALSE(report.failed());
  const auto summary = report.summary();
  for (const auto kind : {RequestKind::keepalive_get, RequestKind::keepalive_post,
                          RequestKind::fresh_get, RequestKind::long_get, RequestKind::stream}) {
    CAPTURE(probe::to_string(kind));
    CHECK(summary.by_kind.count(kind) == 1);
  }
  // Every request the server saw is recorded exactly once: nothing retried, nothing lost.
  CHECK(server.requests() == report.records().size());
  REQUIRE(summary.versions.size() == 1);
  CHECK(summary.versions[0].version == "v1");
  for (const auto& record : report.records()) {
    CHECK(record.status == 200);
    CHECK(record.served_by == "test-server");
    CHECK(record.start <= *record.response);
    CHECK(*record.response <= record.end);
  }
  for (const auto& record : of_kind(report, RequestKind::stream)) {
    CHECK(record.stream_lines == 4);
  }
  for (const auto& record : of_kind(report, RequestKind::fresh_get)) {
    CHECK_FALSE(record.connection_reused);
  }
  // Keep-alive workers reuse their connection: 2 GET + 1 POST + 1 long worker + the streams'.
  CHECK(summary.reused_requests > 10);
  CHECK(summary.connections_opened < report.records().size());
  // The initial long request and stream (worker 0) are the first requests started.
  probe::Offset first_short = probe::Offset::max();
  for (const auto& record : report.records()) {
    if (record.kind != RequestKind::long_get && record.kind != RequestKind::stream) {
      first_short = std::min(first_short, record.start);
    }
  }
  std::size_t initial = 0;
  for (const auto& record : report.records()) {
    if ((record.kind == RequestKind::long_get || record.kind == RequestKind::stream) &&
        record.worker == 0) {
      ++initial;
      CHECK(record.start <= first_short);
    }
  }
  CHECK(initial == 2);
  CHECK(server.last_host_header() == server.url().substr(7));
}

TEST_CASE("traffic: versions switching mid-run give per-version counts and a switch-over",
          "[probe][traffic]") {
  TestServer server;
  probe::Config config = small_mix(server.url());
  config.duration = 800ms;
  const auto report = run_acting(config, 300ms, [&server](probe::Probe& traffic) {
    traffic.mark(probe::kRolloutStart);
    server.set_version("v2");
    traffic.mark(probe::kRolloutEnd);
  });
  INFO(report.summary_text());
  CHECK_FALSE(report.failed());
  const auto summary = report.summary();
  REQUIRE(summary.versions.size() == 2);
  CHECK(summary.versions[0].version == "v1");
  CHECK(summary.versions[1].version == "v2");
  CHECK(summary.versions[0].responses + summary.versions[1].responses == report.records().size());
  REQUIRE(summary.switch_over);
  CHECK(summary.switch_over->old_version == "v1");
  CHECK(summary.switch_over->new_version == "v2");
  const auto start = *report.mark(probe::kRolloutStart);
  const auto end = *report.mark(probe::kRolloutEnd);
  CHECK(summary.switch_over->window.start >= start);
  CHECK(summary.rollout_source == "marks");
  // Requests started after the switch were answered by v2 only.
  REQUIRE(summary.versions_after_rollout.size() == 1);
  CHECK(summary.versions_after_rollout[0].version == "v2");
  for (const auto& record : report.records()) {
    if (record.start > end) {
      CHECK(record.version == "v2");
    }
  }
  CHECK(summary.long_lived_before_rollout.requests > 0);
  CHECK(summary.long_lived_before_rollout.failed == 0);
  CHECK(summary.steady.count > 0);
}

TEST_CASE("traffic: Connection: close is followed with a new connection, not a failure",
          "[probe][traffic]") {
  TestServer server([](const ServerRequest&) { return Reply::connection_close; });
  const auto report = run(small_mix(server.url()));
  INFO(report.summary_text());
  CHECK_FALSE(report.failed());
  const auto summary = report.summary();
  CHECK(summary.reused_requests == 0);
  CHECK(summary.stale_replacements == 0);  // closed at once, not found closed later
  CHECK(summary.server_closes == report.records().size());
  CHECK(summary.connections_opened == report.records().size());
  CHECK(server.connections() == report.records().size());
}

TEST_CASE("traffic: an idle keep-alive connection closed by the server is replaced, not failed",
          "[probe][traffic]") {
  TestServer server([](const ServerRequest&) { return Reply::ok_then_close_idle; });
  probe::Config config = keepalive_only(server.url());
  config.request_interval = 50ms;  // the FIN arrives while the connection is idle
  const auto report = run(config);
  INFO(report.summary_text());
  CHECK_FALSE(report.failed());
  const auto summary = report.summary();
  CHECK(summary.stale_replacements + 1 == report.records().size());
  CHECK(summary.reused_requests == 0);
}

TEST_CASE("traffic: failures on a reused connection are classified", "[probe][traffic]") {
  const auto [reply, expected] = GENERATE(table<Reply, ErrorClass>({
      {Reply::drop, ErrorClass::eof},
      {Reply::reset, ErrorClass::reset},
  }));
  // The first request on each connection works, the second is cut.
  TestServer server([reply = reply](const ServerRequest& request) {
    return request.on_connection >= 2 ? reply : Reply::ok;
  });
  const auto report = run(keepalive_only(server.url(), 2));
  INFO(report.summary_text());
  CHECK(classes(report) == std::set{expected});
  const auto failures = report.failures();
  REQUIRE(failures.size() > 2);
  for (const auto& record : failures) {
    CHECK(record.connection_reused);
    CHECK(record.connection_served_by == "test-server");
    CHECK_FALSE(record.response);
  }
  // Alternating: a fresh connection that works, then a reused one that fails. Nothing retried.
  CHECK(server.requests() == report.records().size());
}

TEST_CASE("traffic: error statuses are failures of their class", "[probe][traffic]") {
  const auto [reply, expected, status] = GENERATE(table<Reply, ErrorClass, int>({
      {Reply::status_503, ErrorClass::http_5xx, 503},
      {Reply::status_404, ErrorClass::http_4xx, 404},
  }));
  TestServer server([reply = reply](const ServerRequest& request) {
    return request.target.rfind("/stream", 0) == 0 ? Reply::ok : reply;
  });
  const auto report = run(small_mix(server.url()));
  INFO(report.summary_text());
  CHECK(classes(report) == std::set{expected});
  for (const auto& record : report.records()) {
    if (record.kind != RequestKind::stream) {
      CHECK(record.status == status);
      CHECK(record.error == expected);
    }
  }
  CHECK(report.summary().failed ==
        report.records().size() - of_kind(report, RequestKind::stream).size());
}

TEST_CASE("traffic: a cut stream or body is truncated", "[probe][traffic]") {
  const auto reply = GENERATE(Reply::truncate, Reply::short_stream);
  TestServer server([reply](const ServerRequest&) { return reply; });
  probe::Config config = small_mix(server.url());
  config.duration = 200ms;
  const auto report = run(config);
  INFO(report.summary_text());
  const auto streams = of_kind(report, RequestKind::stream);
  REQUIRE(streams.size() >= 2);
  for (const auto& record : streams) {
    CHECK(record.error == ErrorClass::truncated);
    CHECK(record.status == 200);
    CHECK(record.stream_lines == 2);
  }
  const auto gets = of_kind(report, RequestKind::keepalive_get);
  REQUIRE_FALSE(gets.empty());
  for (const auto& record : gets) {
    // A short Content-Length body is cut; a clean short response is fine.
    CHECK(record.error == (reply == Reply::truncate ? ErrorClass::truncated : ErrorClass::none));
  }
}

TEST_CASE("traffic: a closed port is refused", "[probe][traffic]") {
  probe::Config config =
      small_mix("http://127.0.0.1:" + std::to_string(probe::testing::closed_port()));
  config.duration = 200ms;
  probe::Probe traffic(config);
  traffic.start();
  traffic.wait();
  const auto report = traffic.report();
  INFO(report.summary_text());
  CHECK(classes(report) == std::set{ErrorClass::refused});
  CHECK(report.failures().size() == report.records().size());
  CHECK(traffic.failure_count() == report.records().size());
  // Failed workers pause before their next request: 8 workers over 200 ms, not a busy loop.
  CHECK(report.records().size() < 8 * 200 / 10 + 16);
  for (const auto& record : report.records()) {
    CHECK(record.connection == 0);
    CHECK_FALSE(record.response);
  }
}

TEST_CASE("traffic: a server that never answers times out", "[probe][traffic]") {
  TestServer server([](const ServerRequest&) { return Reply::hang; });
  probe::Config config = keepalive_only(server.url());
  config.request_timeout = 150ms;
  config.duration = 400ms;
  const auto report = run(config);
  INFO(report.summary_text());
  CHECK(classes(report) == std::set{ErrorClass::timeout});
  REQUIRE(report.records().size() >= 2);
  for (const auto& record : report.records()) {
    CHECK(record.latency() >= 150ms);
    CHECK(record.latency() < 3s);  // bounded by the deadline, with room for a loaded machine
  }
}

TEST_CASE("traffic: stopping drains long requests and streams in flight", "[probe][traffic]") {
  TestServer server({}, 100ms);
  probe::Config config = small_mix(server.url());
  config.duration = 60s;
  config.keepalive_get_workers = 1;
  config.long_sleep = 600ms;
  const auto began = std::chrono::steady_clock::now();
  probe::Probe traffic(config);
  traffic.start();
  std::this_thread::sleep_for(100ms);
  traffic.mark("stop");
  traffic.stop_and_wait();
  const auto took = std::chrono::steady_clock::now() - began;
  const auto report = traffic.report();
  INFO(report.summary_text());
  CHECK(took < 5s);
  CHECK_FALSE(report.failed());
  // Nothing started after the probe stopped, and what was in flight then ran to its end: at least
  // the long request worker's and the stream worker's current requests.
  REQUIRE(report.mark(probe::kProbeStopped));
  const auto stopped = *report.mark(probe::kProbeStopped);
  CHECK(stopped >= *report.mark("stop"));
  std::size_t drained = 0;
  for (const auto& record : report.records()) {
    CHECK(record.start <= stopped);
    if (record.start < stopped && record.end > stopped) {
      ++drained;
    }
  }
  CHECK(drained >= 2);
  for (const auto& record : of_kind(report, RequestKind::long_get)) {
    CHECK(record.latency() >= 600ms);
  }
  for (const auto& record : of_kind(report, RequestKind::stream)) {
    CHECK(record.stream_lines == 4);
  }
}

TEST_CASE("traffic: cancel ends requests in flight as cancelled, not failed", "[probe][traffic]") {
  TestServer server;
  probe::Config config = small_mix(server.url());
  config.duration = 60s;
  config.long_sleep = 5s;
  probe::Probe traffic(config);
  traffic.start();
  std::this_thread::sleep_for(150ms);
  const auto began = std::chrono::steady_clock::now();
  traffic.cancel();
  traffic.wait();
  CHECK(std::chrono::steady_clock::now() - began < 3s);  // not the 5 s of the long requests
  const auto report = traffic.report();
  INFO(report.summary_text());
  CHECK_FALSE(report.failed());
  CHECK(report.summary().cancelled >= 2);
  for (const auto& record : of_kind(report, RequestKind::long_get)) {
    CHECK(record.error == ErrorClass::cancelled);
  }
}

TEST_CASE("traffic: the duration bounds the run", "[probe][traffic]") {
  TestServer server;
  probe::Config config = keepalive_only(server.url());
  config.duration = 300ms;
  const auto began = std::chrono::steady_clock::now();
  const auto report = run(config);
  const auto took = std::chrono::steady_clock::now() - began;
  CHECK(took >= 300ms);
  CHECK(took < 3s);
  CHECK(report.info().elapsed >= 300ms);
  // About one request per 5 ms interval.
  CHECK(report.records().size() >= 10);
  CHECK(report.records().size() <= 61);
}

TEST_CASE("traffic: a rate bound caps the short requests, every worker still sending",
          "[probe][traffic]") {
  TestServer server;
  probe::Config config = small_mix(server.url());  // 4 short workers at 5 ms: about 800/s
  config.duration = 1s;
  config.max_short_requests_per_second = 20;  // so 200 ms apart per worker
  const auto report = run(config);
  const auto short_kinds = {RequestKind::keepalive_get, RequestKind::keepalive_post,
                            RequestKind::fresh_get};
  std::size_t sent = 0;
  for (const auto kind : short_kinds) {
    const auto records = of_kind(report, kind);
    CHECK(records.size() >= 3);  // each worker kept sending: at 0, 200, 400 ... ms
    sent += records.size();
  }
  // 20/s for 1 s, plus the first request of each of the 4 workers at 0 ms.
  CHECK(sent <= 24);
  CHECK(report.summary().failed == 0);
}

TEST_CASE("traffic: stop_long_requests ends long requests and streams, short ones go on",
          "[probe][traffic]") {
  TestServer server;
  probe::Config config = small_mix(server.url());
  config.duration = 900ms;
  const auto report =
      run_acting(config, 300ms, [](probe::Probe& traffic) { traffic.stop_long_requests(); });
  const auto stopped = report.mark(probe::kLongRequestsStopped);
  REQUIRE(stopped);
  CHECK(*stopped >= 300ms);
  std::size_t long_before = 0;
  std::size_t short_after = 0;
  for (const auto& record : report.records()) {
    const bool long_kind =
        record.kind == RequestKind::long_get || record.kind == RequestKind::stream;
    if (long_kind) {
      CHECK(record.start <= *stopped);  // none started after the mark
      ++long_before;
    } else if (record.start > *stopped) {
      ++short_after;
    }
  }
  CHECK(long_before >= 3);   // the initial ones and at least one worker's
  CHECK(short_after >= 20);  // 4 short workers at 5 ms for about 600 ms more
  CHECK(report.summary().failed == 0);
}

TEST_CASE("traffic: Host header override and *.localhost names", "[probe][traffic]") {
  TestServer server;
  SECTION("override") {
    probe::Config config = keepalive_only(server.url());
    config.duration = 50ms;
    config.host_header = "go-app.localhost";
    CHECK_FALSE(run(config).failed());
    CHECK(server.last_host_header() == "go-app.localhost");
  }
  SECTION("*.localhost resolves to loopback without DNS") {
    probe::Config config =
        keepalive_only("http://go-app.localhost:" + std::to_string(server.port()));
    config.duration = 50ms;
    CHECK_FALSE(run(config).failed());
    CHECK(server.last_host_header() == "go-app.localhost:" + std::to_string(server.port()));
  }
}

TEST_CASE("traffic: misuse is reported", "[probe][traffic]") {
  probe::Config config = keepalive_only("http://127.0.0.1:1");
  SECTION("mark before start") {
    probe::Probe traffic(config);
    CHECK_THROWS_AS(traffic.mark("x"), probe::Error);
  }
  SECTION("start twice") {
    TestServer server;
    config.url = server.url();
    probe::Probe traffic(config);
    traffic.start();
    CHECK_THROWS_AS(traffic.start(), probe::Error);
    traffic.stop_and_wait();
  }
  SECTION("invalid config") {
    config.keepalive_get_workers = -1;
    CHECK_THROWS_AS(probe::Probe(config), probe::ConfigError);
  }
  SECTION("unresolvable host") {
    config.url = "http://no-such-host.invalid";
    probe::Probe traffic(config);
    CHECK_THROWS_AS(traffic.start(), probe::Error);
  }
}

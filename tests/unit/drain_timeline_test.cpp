#include <catch2/catch.hpp>

#include <chrono>
#include <nlohmann/json.hpp>

#include "deployapps/drain_timeline.hpp"
#include "deployapps/time.hpp"

using deployapps::DrainJudgement;
using deployapps::judge_drain;
using deployapps::parse_rfc3339;
using deployapps::PodDrain;
using deployapps::read_shutdown_line;
using deployapps::ShutdownLog;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

deployapps::WallTime at(const char* text) {
  return parse_rfc3339(text);
}

// A pod that drained with a kubelet's preStop sleep: routers stop 1.5 s after the deletion,
// SIGTERM comes 10 s after the preStop began, and the app closes its listener at once.
PodDrain drained_pod() {
  PodDrain pod;
  pod.pod = "go-app-7f9c-abcde";
  pod.ip = "10.22.0.7";
  pod.deletion_seen = at("2026-12-06T10:00:00.000Z");
  pod.slices_left["go-app-x1"] = at("2026-12-06T10:00:00.300Z");
  pod.ingress_listed = true;
  pod.ingress_left = at("2026-12-06T10:00:01.500Z");
  pod.log.signal = at("2026-12-06T10:00:10.100Z");
  pod.log.stopped_accepting = at("2026-12-06T10:00:10.102Z");
  pod.exit_code = 0;
  return pod;
}

}  // namespace

TEST_CASE("the apps' shutdown lines are read from either app's JSON log", "[drain]") {
  ShutdownLog log;
  // go-app (slog, RFC 3339 with nanoseconds and an offset) and node-app (pino, ISO with ms).
  read_shutdown_line(
      R"({"time":"2026-12-06T10:00:10.100123456+00:00","level":"INFO","msg":"shutdown signal received","signal":"terminated"})",
      log);
  read_shutdown_line(
      R"({"level":"info","time":"2026-12-06T10:00:10.102Z","msg":"shutdown: stopped accepting; draining connections"})",
      log);
  read_shutdown_line(
      R"({"level":"info","time":"2026-12-06T10:00:12.000Z","last_response_at":"2026-12-06T10:00:11.900Z","msg":"shutdown: drained"})",
      log);
  read_shutdown_line(R"({"time":"2026-12-06T10:00:12.001Z","msg":"shutdown complete"})", log);
  read_shutdown_line("plain text from somewhere", log);
  read_shutdown_line(R"({"msg":"shutdown complete"})", log);  // no time: ignored
  REQUIRE(log.signal == at("2026-12-06T10:00:10.100Z"));
  REQUIRE(log.stopped_accepting == at("2026-12-06T10:00:10.102Z"));
  REQUIRE(log.last_response == at("2026-12-06T10:00:11.900Z"));
  REQUIRE(log.drained == at("2026-12-06T10:00:12.000Z"));
  REQUIRE(log.complete == at("2026-12-06T10:00:12.001Z"));
  REQUIRE_FALSE(log.immediate);

  SECTION("a drain before any response has no last response") {
    ShutdownLog quiet;
    read_shutdown_line(
        R"({"time":"2026-12-06T10:00:12.000Z","last_response_at":null,"msg":"shutdown: drained"})",
        quiet);
    REQUIRE(quiet.drained);
    REQUIRE_FALSE(quiet.last_response);
  }
  SECTION("immediate mode stops listening on the signal itself") {
    ShutdownLog immediate;
    read_shutdown_line(
        R"({"time":"2026-12-06T10:00:10.1Z","level":"WARN","msg":"SHUTDOWN_MODE=immediate: dying on the signal without draining"})",
        immediate);
    REQUIRE(immediate.immediate);
    REQUIRE(immediate.signal == at("2026-12-06T10:00:10.100Z"));
    REQUIRE(immediate.stopped_accepting == immediate.signal);
  }
}

TEST_CASE("an EndpointSlice's endpoints: absent ready means ready", "[drain]") {
  const auto slice = json::parse(R"({"endpoints": [
    {"addresses": ["10.22.0.7"], "conditions": {"ready": false, "serving": true, "terminating": true},
     "targetRef": {"kind": "Pod", "name": "old"}},
    {"addresses": ["10.22.0.8"], "conditions": {}, "targetRef": {"kind": "Pod", "name": "new"}},
    {"addresses": ["10.22.0.9"], "conditions": {"ready": true}}
  ]})");
  const auto endpoints = deployapps::slice_endpoints(slice);
  REQUIRE(endpoints.size() == 2);
  CHECK(endpoints[0].pod == "old");
  CHECK_FALSE(endpoints[0].ready);
  CHECK(endpoints[1].pod == "new");
  CHECK(endpoints[1].ready);
  CHECK(deployapps::slice_endpoints(json::parse(R"({"endpoints": null})")).empty());
}

TEST_CASE("Traefik's servers for one Service that take new requests (not fenced ones)", "[drain]") {
  const auto services = json::parse(R"([
    {"name": "shop-go-app-80@kubernetes", "loadBalancer": {"servers": [
      {"url": "http://10.22.0.7:8080"}, {"url": "http://10.22.0.6:8080", "fenced": true},
      {"url": "http://[fd00::8]:8080"}]}},
    {"name": "shop-go-app-canary-80@kubernetes", "loadBalancer": {"servers": [
      {"url": "http://10.22.0.99:8080"}]}},
    {"name": "shop-go-app-80@file", "loadBalancer": {"servers": [{"url": "http://10.0.0.1:1"}]}},
    {"name": "shop-go-app-80@kubernetes-gateway", "loadBalancer": {}}
  ])");
  REQUIRE(deployapps::traefik_server_hosts(services, "shop-go-app-") ==
          std::vector<std::string>{"10.22.0.7", "fd00::8"});
  CHECK(deployapps::traefik_server_hosts(json::object(), "shop-go-app-").empty());
  CHECK(deployapps::traefik_services_url("http://127.0.0.1:8089/metrics") ==
        "http://127.0.0.1:8089/api/http/services");
}

TEST_CASE("the drain judge measures the propagation margin and the drain pause it needs",
          "[drain]") {
  const deployapps::DrainPause configured{seconds(10), seconds(0)};
  SECTION("routers stop long before the listener closes: passes") {
    const DrainJudgement judgement = judge_drain(drained_pod(), configured);
    CHECK_FALSE(judgement.failed);
    CHECK(judgement.routers_stopped == at("2026-12-06T10:00:01.500Z"));
    CHECK(judgement.propagation == milliseconds(1500));
    CHECK(judgement.margin == milliseconds(8602));
    CHECK(judgement.pause_start == at("2026-12-06T10:00:00.100Z"));
    CHECK(judgement.pause_needed == milliseconds(1400));
    CHECK_THAT(judgement.summary, Catch::Contains("1.5s after its deletion was seen") &&
                                      Catch::Contains("drain pause needed 1.4s, configured 10s"));
  }
  SECTION("the app's own delay: SIGTERM at the deletion, the listener closed 10 s later: passes") {
    auto pod = drained_pod();
    pod.log.signal = at("2026-12-06T10:00:00.080Z");
    pod.log.stopped_accepting = at("2026-12-06T10:00:10.082Z");
    const DrainJudgement judgement = judge_drain(pod, {seconds(0), seconds(10)});
    CHECK_FALSE(judgement.failed);
    CHECK(judgement.margin == milliseconds(8582));
    CHECK(judgement.pause_start == at("2026-12-06T10:00:00.080Z"));
    CHECK(judgement.pause_needed == milliseconds(1420));
    CHECK_THAT(judgement.summary, Catch::Contains("drain pause needed 1.4s, configured 10s"));
  }
  SECTION("the listener closes before the ingress stops routing: fails") {
    auto pod = drained_pod();
    // No preStop sleep: SIGTERM right after the deletion, the ingress 1.4 s later.
    pod.log.signal = at("2026-12-06T10:00:00.080Z");
    pod.log.stopped_accepting = at("2026-12-06T10:00:00.081Z");
    const DrainJudgement judgement = judge_drain(pod, {});
    CHECK(judgement.failed);
    CHECK(judgement.margin == milliseconds(-1419));
    CHECK(judgement.pause_needed == milliseconds(1420));
    CHECK_THAT(judgement.summary, Catch::Contains("NEGATIVE"));
  }
  SECTION("the later of the slices and the ingress is when no router sends to it") {
    auto pod = drained_pod();
    pod.ingress_left.reset();
    pod.slices_left["go-app-x2"] = at("2026-12-06T10:00:00.900Z");
    CHECK(judge_drain(pod, configured).routers_stopped == at("2026-12-06T10:00:00.900Z"));
  }
  SECTION("without the pod's log nothing is judged, and it says why") {
    auto pod = drained_pod();
    pod.log = ShutdownLog{};
    pod.log_error = "pods \"x\" is forbidden";
    const DrainJudgement judgement = judge_drain(pod, configured);
    CHECK_FALSE(judgement.failed);
    CHECK_FALSE(judgement.margin);
    CHECK_THAT(judgement.summary, Catch::Contains("unknown") && Catch::Contains("forbidden"));
  }
  SECTION("the report gives each moment after the deletion") {
    const auto pod = drained_pod();
    const auto out = deployapps::drain_json(pod, judge_drain(pod, configured), configured);
    CHECK(out.at("leftIngress").at("afterDeletionSeconds") == 1.5);
    CHECK(out.at("leftEndpointSlices").at("go-app-x1").at("at") == "2026-12-06T10:00:00.300Z");
    CHECK(out.at("marginSeconds") == 8.602);
    CHECK(out.at("pauseConfiguredSeconds") == 10.0);
    CHECK(out.at("preStopSleepSeconds") == 10.0);
    CHECK(out.at("appDelaySeconds") == 0.0);
    CHECK(out.at("exitCode") == 0);
    CHECK(out.at("lastResponse").is_null());
  }
}

TEST_CASE("the template's drain pause and the Deployment's selector", "[drain]") {
  const auto deployment = json::parse(R"({"spec": {
    "selector": {"matchLabels": {"app.kubernetes.io/name": "go-app", "tier": "web"}},
    "template": {"spec": {"containers": [{"name": "app",
      "env": [{"name": "PORT", "value": "8080"}, {"name": "SHUTDOWN_DELAY_SECONDS", "value": "7"}],
      "lifecycle": {"preStop": {"sleep": {"seconds": 3}}}}]}}}})");
  const auto pause = deployapps::drain_pause_of(deployment.at("spec").at("template"));
  CHECK(pause.prestop_sleep == seconds(3));
  CHECK(pause.app_delay == seconds(7));
  CHECK(pause.total() == seconds(10));
  CHECK(deployapps::drain_pause_of(json::parse(R"({"spec": {"containers": [{}]}})")).total() ==
        seconds(0));
  // A delay the deployer cannot read (from a ConfigMap, or not a number) counts as none.
  CHECK(deployapps::drain_pause_of(json::parse(R"({"spec": {"containers": [{"env": [
          {"name": "SHUTDOWN_DELAY_SECONDS", "value": "ten"},
          {"name": "SHUTDOWN_DELAY_SECONDS", "valueFrom": {"configMapKeyRef": {}}}]}]}})"))
            .app_delay == seconds(0));
  CHECK(deployapps::match_labels_selector(deployment) == "app.kubernetes.io/name=go-app,tier=web");
}

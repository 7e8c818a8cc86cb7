#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "deployapps/certificate.hpp"

using deployapps::certificate_checks;
using deployapps::certificate_json;
using deployapps::certificate_junit;
using deployapps::certificate_line;
using deployapps::CertificateEvidence;
using deployapps::CheckStatus;
using deployapps::IngressJudgement;
using deployapps::RolloutReport;
using deployapps::RolloutResult;
using deployapps::probe::ErrorClass;
using deployapps::probe::RequestKind;
using nlohmann::json;

namespace {

// A go-app rollout v1 -> v2 that its checks saw go well: 300 short and 4 long requests, one
// cancelled, 3 old pods exited 0 with positive drain margins, real traffic without errors.
RolloutReport clean_rollout() {
  RolloutReport rollout;
  rollout.app = "go-app";
  rollout.old_version = "v1";
  rollout.new_version = "v2";
  rollout.result = RolloutResult::kSucceeded;
  rollout.duration = std::chrono::milliseconds(41250);
  for (const char* pod : {"go-app-a", "go-app-b", "go-app-c"}) {
    rollout.old_pods.push_back({pod, 0, "Completed"});
    rollout.drain_timelines.push_back({{"pod", pod},
                                       {"marginSeconds", 8.5},
                                       {"pauseNeededSeconds", 1.25},
                                       {"pauseConfiguredSeconds", 10.0},
                                       {"failed", false}});
  }
  return rollout;
}

CertificateEvidence clean_evidence() {
  CertificateEvidence evidence;
  evidence.namespace_name = "apps";
  evidence.issued_at = "2026-12-06T10:00:00.000Z";
  deployapps::probe::Config config;
  config.url = "http://127.0.0.1:8088/prefix";
  config.host_header = "go-app.localhost";
  config.long_sleep = std::chrono::seconds(5);
  evidence.probe = config;
  deployapps::probe::Summary summary;
  summary.requests = 305;
  summary.cancelled = 1;
  summary.by_kind[RequestKind::keepalive_post] = {300, 0};
  summary.by_kind[RequestKind::long_get] = {5, 0};
  evidence.probe_summary = summary;
  IngressJudgement ingress;
  ingress.summary = "1200 real requests through the ingress, 0 5xx";
  ingress.during.requests = 1200;
  ingress.baseline.requests = 80;
  evidence.ingress = ingress;
  evidence.ingress_url = "http://127.0.0.1:8089/metrics";
  evidence.drain_checked = true;
  return evidence;
}

CheckStatus status_of(const RolloutReport& rollout, const CertificateEvidence& evidence,
                      std::size_t index) {
  return certificate_checks(rollout, evidence).at(index).status;
}

}  // namespace

TEST_CASE("certificate: a clean rollout passes with its bound, requests by kind and path",
          "[certificate]") {
  const auto rollout = clean_rollout();
  const auto evidence = clean_evidence();
  const auto out = certificate_json(rollout, evidence);
  CHECK(out["verdict"] == "passed");
  CHECK(out["requests"]["judged"] == 304);  // the cancelled one proves nothing
  CHECK(out["bound95"]["judged"] == 304);
  CHECK(out["bound95"]["failureRateUpperBound"].get<double>() == Approx(0.00981).epsilon(0.01));
  const auto& kinds = out["requests"]["byKind"];
  REQUIRE(kinds.size() == 2);
  CHECK(kinds[0] == json{{"kind", "keepalive-post"},
                         {"request", "POST /prefix/?sleep=0"},
                         {"requests", 300},
                         {"failed", 0}});
  CHECK(kinds[1]["request"] == "GET /prefix/?sleep=5000");
  CHECK(out["failuresByClass"].empty());
  CHECK(out["realTraffic"]["duringRollout"]["requests"] == 1200.0);
  CHECK(out["oldPods"].size() == 3);
  CHECK(out["drainTimelines"].size() == 3);
  for (const auto& check : out["checks"]) {
    INFO(check.dump());
    CHECK(check["status"] != "failed");
  }
  CHECK(out["checks"][1]["status"] == "skipped");  // no --min-requests
  CHECK_THAT(certificate_line(rollout, evidence),
             Catch::StartsWith("passed: 0 failed in 304 judged requests; failure rate below "
                               "0.0098 (95 %); 1200 real requests"));
}

TEST_CASE("certificate: each check fails on its own evidence", "[certificate]") {
  SECTION("a failed request, by class") {
    auto evidence = clean_evidence();
    evidence.probe_summary->failed = 2;
    evidence.probe_summary->failures_by_class[ErrorClass::reset] = 2;
    const auto out = certificate_json(clean_rollout(), evidence);
    CHECK(out["verdict"] == "failed");
    CHECK(out["checks"][0]["detail"] == "2 of 304 judged requests failed: reset 2");
    CHECK(out["failuresByClass"] == json{{"reset", 2}});
    CHECK(out["bound95"].is_null());
  }
  SECTION("fewer requests than --min-requests") {
    auto evidence = clean_evidence();
    evidence.min_requests = 305;
    CHECK(status_of(clean_rollout(), evidence, 1) == CheckStatus::kFailed);
    evidence.min_requests = 304;
    CHECK(status_of(clean_rollout(), evidence, 1) == CheckStatus::kPassed);
  }
  SECTION("real users got errors") {
    auto evidence = clean_evidence();
    evidence.ingress->failed = true;
    CHECK(status_of(clean_rollout(), evidence, 2) == CheckStatus::kFailed);
  }
  SECTION("a negative drain margin") {
    auto rollout = clean_rollout();
    rollout.drain_timelines[1]["marginSeconds"] = -0.134;
    rollout.drain_timelines[1]["failed"] = true;
    const auto checks = certificate_checks(rollout, clean_evidence());
    CHECK(checks[3].status == CheckStatus::kFailed);
    CHECK_THAT(checks[3].detail, Catch::Contains("smallest -0.134 s") &&
                                     Catch::Contains("drain pause needed up to 1.250 s of 10 s"));
  }
  SECTION("an old pod cut off") {
    auto rollout = clean_rollout();
    rollout.old_pods[2].exit_code = 137;
    rollout.old_pods[2].reason = "Error";
    const auto checks = certificate_checks(rollout, clean_evidence());
    CHECK(checks[4].status == CheckStatus::kFailed);
    CHECK_THAT(checks[4].detail, Catch::Contains("go-app-c exited 137 (Error)"));
  }
  SECTION("a rolled-back release, with no request failed, still fails its result") {
    auto rollout = clean_rollout();
    rollout.result = RolloutResult::kRolledBack;
    rollout.rolled_back = true;
    rollout.failure = "never ready";
    const auto checks = certificate_checks(rollout, clean_evidence());
    CHECK(checks[0].status == CheckStatus::kPassed);
    CHECK(checks[5].status == CheckStatus::kFailed);
    CHECK(checks[5].detail == "rolled back to v1: never ready");
  }
}

TEST_CASE("certificate: nothing judged is no evidence, not a pass", "[certificate]") {
  auto evidence = clean_evidence();
  evidence.probe.reset();
  evidence.probe_summary.reset();
  evidence.ingress->during = {};
  const auto out = certificate_json(clean_rollout(), evidence);
  CHECK(out["verdict"] == "no evidence");
  CHECK(out["requests"].is_null());
  CHECK(out["bound95"].is_null());
  CHECK(out["checks"][0]["status"] == "skipped");
}

TEST_CASE("certificate: JUnit has a test case per check, escaped", "[certificate]") {
  auto rollout = clean_rollout();
  rollout.old_pods[0].exit_code = 1;
  rollout.old_pods[0].reason = "<cut>";
  const auto junit = certificate_junit(rollout, clean_evidence());
  CHECK_THAT(junit, Catch::Contains("<testsuite name=\"go-app rollout v1 -&gt; v2\" tests=\"6\" "
                                    "failures=\"1\" skipped=\"1\""));
  CHECK_THAT(junit, Catch::Contains("<property name=\"requests\" value=\"304\"/>"));
  CHECK_THAT(junit, Catch::Contains("<property name=\"requests.long-get\" value=\"5\"/>"));
  CHECK_THAT(junit, Catch::Contains("failure_rate_upper_bound_95\" value=\"0.00981\""));
  CHECK_THAT(junit, Catch::Contains("<failure message=\"2 of 3 exited 0; go-app-a exited 1 "
                                    "(&lt;cut&gt;)\"/>"));
  CHECK_THAT(junit, Catch::Contains("<skipped message=\"no minimum required"));
}

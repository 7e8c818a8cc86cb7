#include <catch2/catch.hpp>

#include "deployapps/errors.hpp"
#include "deployapps/ingress_check.hpp"
#include "probe_test_server.hpp"

using deployapps::ingress_counts;
using deployapps::IngressCounts;
using deployapps::judge_ingress;
using deployapps::parse_prometheus_text;

namespace {

// As Traefik v3 writes it (trimmed), with a neighbour whose name starts like go-app's.
constexpr const char* kTraefikMetrics =
    R"(# HELP traefik_service_requests_total How many HTTP requests processed on a service, partitioned by status code, protocol, and method.
# TYPE traefik_service_requests_total counter
traefik_service_requests_total{code="200",method="GET",protocol="http",service="shop-go-app-http@kubernetes"} 1200
traefik_service_requests_total{code="200",method="POST",protocol="http",service="shop-go-app-http@kubernetes"} 300
traefik_service_requests_total{code="502",method="GET",protocol="http",service="shop-go-app-http@kubernetes"} 4
traefik_service_requests_total{code="503",method="GET",protocol="http",service="shop-go-app-http@kubernetes"} 2
traefik_service_requests_total{code="499",method="GET",protocol="http",service="shop-go-app-http@kubernetes"} 1
traefik_service_requests_total{code="500",method="GET",protocol="http",service="shop-go-app-canary-http@kubernetes"} 99
traefik_service_requests_total{code="500",method="GET",protocol="http",service="other-go-app-http@kubernetes"} 99
traefik_service_requests_total{code="200",method="GET",protocol="http",service="shop-go-app-http@kubernetescrd"} 7
# HELP traefik_open_connections How many open connections exist, by entryPoint and protocol
# TYPE traefik_open_connections gauge
traefik_open_connections{entrypoint="web",protocol="TCP"} 12
traefik_open_connections{entrypoint="websecure",protocol="TCP"} 3
traefik_open_connections{entrypoint="traefik",protocol="TCP"} 1
traefik_service_request_duration_seconds_bucket{code="200",le="+Inf",service="shop-go-app-http@kubernetes"} 1500
)";

}  // namespace

TEST_CASE("the Prometheus text format: labels, escapes, special values, timestamps", "[ingress]") {
  const auto samples = parse_prometheus_text(
      "# a comment\n"
      "plain 3\n"
      "with_labels{a=\"x\",b=\"q\\\"uote\\\\d\\n\"} 1.5e3 1700000000000\n"
      "  indented{} +Inf\n"
      "broken{a=\"unterminated} 1\n"
      "not_a_number{a=\"x\"} many\n"
      "\n");
  REQUIRE(samples.size() == 3);
  CHECK(samples[0].name == "plain");
  CHECK(samples[0].value == 3);
  CHECK(samples[1].labels.at("a") == "x");
  CHECK(samples[1].labels.at("b") == "q\"uote\\d\n");
  CHECK(samples[1].value == 1500);  // the timestamp is not the value
  CHECK(samples[2].name == "indented");
  CHECK(samples[2].value > 1e300);
}

TEST_CASE("Traefik's counters are summed per Service, by class of answer", "[ingress]") {
  const auto counts = ingress_counts(parse_prometheus_text(kTraefikMetrics), "shop", "go-app");
  CHECK(counts.requests == 1507);
  CHECK(counts.server_errors == 6);
  CHECK(counts.bad_gateway == 4);
  CHECK(counts.service_unavailable == 2);
  CHECK(counts.gateway_timeout == 0);
  CHECK(counts.client_closed == 1);
  CHECK(counts.errors() == 7);
  CHECK(counts.open_connections == 15);  // users' entry points; not the API's own
  IngressCounts earlier;
  earlier.requests = 1000;
  earlier.open_connections = 40;
  CHECK((counts - earlier).requests == 507);
  CHECK((counts - earlier).open_connections == 15);  // a gauge: the later reading
  // No series yet (no traffic since Traefik started): all zero.
  CHECK(ingress_counts(parse_prometheus_text(kTraefikMetrics), "shop", "node-app").requests == 0);
}

TEST_CASE("the real-traffic judge: any error fails against a clean baseline", "[ingress]") {
  IngressCounts baseline;
  baseline.requests = 200;
  IngressCounts during;
  during.requests = 5000;
  auto judgement = judge_ingress(baseline, during);
  CHECK_FALSE(judgement.failed);
  CHECK_THAT(judgement.summary, Catch::Contains("5000 real requests through the ingress, 0 5xx"));

  during.bad_gateway = 1;
  during.server_errors = 1;
  judgement = judge_ingress(baseline, during);
  CHECK(judgement.failed);
  CHECK_THAT(judgement.summary, Catch::Contains("1 5xx (502: 1, 503: 0, 504: 0), 0 499"));

  IngressCounts client_gave_up;
  client_gave_up.requests = 10;
  client_gave_up.client_closed = 1;
  CHECK(judge_ingress(baseline, client_gave_up).failed);
}

TEST_CASE("the real-traffic judge allows what a noisy baseline predicts, and no more",
          "[ingress]") {
  IngressCounts baseline;
  baseline.requests = 1000;
  baseline.client_closed = 10;  // 1 % background: clients that give up
  IngressCounts during;
  during.requests = 10000;  // 100 expected, +3 sigma = 130
  during.client_closed = 130;
  auto judgement = judge_ingress(baseline, during);
  CHECK(judgement.allowed_errors == 130);
  CHECK_FALSE(judgement.failed);
  CHECK_THAT(judgement.summary,
             Catch::Contains("the baseline's error ratio (10 of 1000) allows 130"));
  during.client_closed = 131;
  CHECK(judge_ingress(baseline, during).failed);
}

TEST_CASE("no real traffic during the rollout is nothing to judge, not a failure", "[ingress]") {
  const auto judgement = judge_ingress(IngressCounts{}, IngressCounts{});
  CHECK_FALSE(judgement.failed);
  CHECK(judgement.summary ==
        "no real traffic through the ingress during the rollout: nothing to judge");
}

TEST_CASE("an ingress metrics endpoint that does not answer is an error at the start",
          "[ingress]") {
  deployapps::IngressCheck check(
      "http://127.0.0.1:" + std::to_string(deployapps::probe::testing::closed_port()) + "/metrics",
      "shop", "go-app");
  CHECK_THROWS_AS(check.start(), deployapps::NetworkError);
}

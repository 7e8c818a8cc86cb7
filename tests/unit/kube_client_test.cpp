#include <catch2/catch.hpp>

#include "deployapps/apply.hpp"
#include "deployapps/discovery.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/kube_client.hpp"
#include "support/fake_api.hpp"

using namespace std::chrono_literals;
using deployapps::ApiError;
using deployapps::ApiRequest;
using deployapps::ClientOptions;
using deployapps::Deadline;
using deployapps::KubeClient;
using deployapps::testing::FakeApiServer;
using deployapps::testing::json_reply;
using deployapps::testing::ReceivedRequest;
using deployapps::testing::ServerReply;
using deployapps::testing::status_body;
using nlohmann::json;

namespace {

ClientOptions fast_retries() {
  ClientOptions options;
  options.initial_backoff = 5ms;
  options.max_backoff = 20ms;
  return options;
}

}  // namespace

TEST_CASE("Status errors read well", "[api][errors]") {
  SECTION("403 from Pod Security admission keeps the admission message") {
    const auto error = deployapps::make_api_error(
        403, "Forbidden",
        status_body(403, "Forbidden",
                    "pods \"web-x\" is forbidden: violates PodSecurity \"restricted:latest\": "
                    "allowPrivilegeEscalation != false (container \"web\" must set "
                    "securityContext.allowPrivilegeEscalation=false)")
            .dump(),
        "admission check of the pods of deployment.apps/web");
    CHECK(error.http_status() == 403);
    CHECK(error.reason() == "Forbidden");
    CHECK_THAT(error.what(),
               Catch::StartsWith("admission check of the pods of deployment.apps/web: "
                                 "pods \"web-x\" is forbidden: violates PodSecurity"));
    CHECK_THAT(error.what(), Catch::Contains("(HTTP 403 Forbidden)"));
  }
  SECTION("422 lists every field cause") {
    const auto error = deployapps::make_api_error(
        422, "Unprocessable Entity",
        status_body(
            422, "Invalid", "Deployment.apps \"web\" is invalid: [...]",
            json::array({{{"reason", "FieldValueRequired"},
                          {"message", "Required value"},
                          {"field", "spec.template.spec.containers[0].image"}},
                         {{"reason", "FieldValueInvalid"},
                          {"message", "Invalid value: 0: must be greater than 0"},
                          {"field", "spec.template.spec.containers[0].ports[0].containerPort"}}}))
            .dump(),
        "apply deployment.apps/web");
    CHECK(error.causes().size() == 2);
    CHECK_THAT(error.what(),
               Catch::Contains("\n  - spec.template.spec.containers[0].image: Required value"));
    CHECK_THAT(error.what(), Catch::Contains("containerPort: Invalid value: 0"));
  }
  SECTION("409 from an apply conflict explains itself") {
    const auto error = deployapps::make_api_error(
        409, "Conflict",
        status_body(409, "Conflict",
                    "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" "
                    "using apps/v1: .spec.replicas")
            .dump(),
        "apply deployment.apps/web");
    CHECK_THAT(error.what(), Catch::Contains(".spec.replicas") && Catch::Contains("field manager"));
  }
  SECTION("plain-text bodies, like APF's 429, are quoted") {
    const auto error = deployapps::make_api_error(
        429, "Too Many Requests", "Too many requests, please try again later.\n", "");
    CHECK(std::string(error.what()) ==
          "HTTP 429 Too Many Requests: Too many requests, please try again later.");
  }
}

TEST_CASE("Warning headers are surfaced", "[api]") {
  CHECK(deployapps::parse_warnings({R"(299 - "would violate PodSecurity \"restricted:latest\": x")",
                                    "299 - \"spec.x: deprecated\""}) ==
        std::vector<std::string>{R"(would violate PodSecurity "restricted:latest": x)",
                                 "spec.x: deprecated"});
  FakeApiServer api;
  api.override_path("GET", "/warned", [](const ReceivedRequest&) {
    return json_reply(200, json::object(), {{"Warning", R"(299 - "deprecated thing")"}});
  });
  KubeClient client(api.rest_config());
  ApiRequest request;
  request.path = "/warned";
  CHECK(client.request(request, Deadline::after(10s)).warnings ==
        std::vector<std::string>{"deprecated thing"});
}

TEST_CASE("requests carry the credential, impersonation and a user agent", "[api]") {
  FakeApiServer api;
  auto config = api.rest_config();
  config.impersonate = "jane";
  config.impersonate_groups = {"devs"};
  KubeClient client(config);
  (void)client.get("/api/v1", Deadline::after(10s));
  const auto request = api.requests().at(0);
  CHECK(request.headers.at("authorization") == "Bearer fake-token");
  CHECK(request.headers.at("impersonate-user") == "jane");
  CHECK(request.headers.at("impersonate-group") == "devs");
  CHECK_THAT(request.headers.at("user-agent"), Catch::StartsWith("deploy-apps/"));
  CHECK(request.headers.at("accept") == "application/json");
}

TEST_CASE("429 is retried after Retry-After, for every verb", "[api][retry]") {
  FakeApiServer api;
  int calls = 0;
  api.override_path("POST", "/busy", [&](const ReceivedRequest&) {
    if (++calls < 3) {
      return deployapps::testing::http_reply(429, "Too many requests, please try again later.",
                                             {{"Retry-After", "0"}}, "text/plain");
    }
    return json_reply(201, {{"ok", true}});
  });
  KubeClient client(api.rest_config(), fast_retries());
  ApiRequest request;
  request.method = "POST";
  request.path = "/busy";
  request.body = json::object();
  request.idempotent = false;
  CHECK(client.request(request, Deadline::after(10s)).status == 201);
  CHECK(calls == 3);
}

TEST_CASE("429 gives up when the deadline is too close for Retry-After", "[api][retry]") {
  FakeApiServer api;
  api.override_path("GET", "/busy", [](const ReceivedRequest&) {
    return deployapps::testing::http_reply(429, "slow down", {{"Retry-After", "30"}}, "text/plain");
  });
  KubeClient client(api.rest_config(), fast_retries());
  CHECK_THROWS_WITH(client.get("/busy", Deadline::after(2s)), Catch::Contains("HTTP 429"));
  CHECK(api.request_count() == 1);
}

TEST_CASE("network errors are retried for idempotent requests only", "[api][retry]") {
  FakeApiServer api;
  int calls = 0;
  const auto flaky = [&](const ReceivedRequest&) {
    ServerReply reply;
    if (++calls == 1) {
      reply.reset = true;  // the connection drops without an answer
      return reply;
    }
    return json_reply(200, {{"ok", true}});
  };
  api.override_path("GET", "/flaky", flaky);
  api.override_path("POST", "/flaky", flaky);
  KubeClient client(api.rest_config(), fast_retries());
  SECTION("GET") {
    CHECK(client.get("/flaky", Deadline::after(10s))["ok"] == true);
    CHECK(calls == 2);
  }
  SECTION("POST") {
    ApiRequest request;
    request.method = "POST";
    request.path = "/flaky";
    request.body = json::object();
    request.idempotent = false;
    CHECK_THROWS_AS(client.request(request, Deadline::after(10s)), deployapps::NetworkError);
    CHECK(calls == 1);
  }
}

TEST_CASE("a 401 makes the credential source fetch a new credential", "[api][auth]") {
  struct Counting : deployapps::CredentialSource {
    int invalidations = 0;
    deployapps::Credential get(Deadline) override { return {std::string("Bearer wrong"), {}}; }
    void invalidate() override { ++invalidations; }
  };
  FakeApiServer api;
  auto source = std::make_unique<Counting>();
  auto* counting = source.get();
  KubeClient client(api.rest_config(), std::move(source), fast_retries());
  CHECK_THROWS_AS(client.get("/api/v1", Deadline::after(10s)), ApiError);
  CHECK(counting->invalidations == 1);
}

TEST_CASE("get_if_exists turns 404 into nothing", "[api]") {
  FakeApiServer api;
  KubeClient client(api.rest_config());
  CHECK_FALSE(client.get_if_exists("/api/v1/namespaces/none", Deadline::after(10s)).has_value());
  CHECK(client.get_if_exists("/api/v1", Deadline::after(10s)).has_value());
}

TEST_CASE("watch events arrive one by one, including in-stream errors", "[api][watch]") {
  FakeApiServer api;
  api.override_path("GET", "/apis/apps/v1/namespaces/x/deployments", [](const ReceivedRequest& r) {
    CHECK(r.query.at("watch") == "1");
    return deployapps::testing::chunked_reply(
        {R"({"type":"ADDED","object":{"metadata":{"name":"web","resourceVersion":"5"}}})"
         "\n",
         R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"6"}}})"
         "\n"
         R"J({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 1 (6)"}})J"
         "\n"});
  });
  KubeClient client(api.rest_config());
  ApiRequest request;
  request.path = "/apis/apps/v1/namespaces/x/deployments";
  request.query = {{"watch", "1"}, {"fieldSelector", "metadata.name=web"}};
  std::vector<std::string> types;
  bool expired = false;
  client.watch(
      request,
      [&](const json& event) {
        types.push_back(event["type"].get<std::string>());
        expired = expired || deployapps::is_expired(event["object"]);
        return true;
      },
      5s, Deadline::after(10s));
  CHECK(types == std::vector<std::string>{"ADDED", "BOOKMARK", "ERROR"});
  CHECK(expired);
  CHECK(api.requests().at(0).query.at("fieldSelector") == "metadata.name=web");
}

TEST_CASE("a refused watch becomes an ApiError", "[api][watch]") {
  FakeApiServer api;
  api.override_path("GET", "/apis/apps/v1/namespaces/x/deployments", [](const ReceivedRequest&) {
    return json_reply(410, status_body(410, "Expired", "too old resource version: 1 (6)"));
  });
  KubeClient client(api.rest_config());
  ApiRequest request;
  request.path = "/apis/apps/v1/namespaces/x/deployments";
  try {
    client.watch(
        request, [](const json&) { return true; }, 5s, Deadline::after(10s));
    FAIL("no error");
  } catch (const ApiError& error) {
    CHECK(error.http_status() == 410);
    CHECK(error.reason() == "Expired");
  }
}

TEST_CASE("discovery maps apiVersion and kind to REST paths", "[api][discovery]") {
  FakeApiServer api;
  KubeClient client(api.rest_config());
  deployapps::Discovery discovery(client);
  const auto deployment = discovery.resolve("apps/v1", "Deployment", Deadline::after(10s));
  CHECK(deployment.plural == "deployments");
  CHECK(deployment.namespaced);
  CHECK(deployapps::object_path(deployment, "go-app", "web") ==
        "/apis/apps/v1/namespaces/go-app/deployments/web");
  const auto ns = discovery.resolve("v1", "Namespace", Deadline::after(10s));
  CHECK_FALSE(ns.namespaced);
  CHECK(deployapps::object_path(ns, "", "go-app") == "/api/v1/namespaces/go-app");
  (void)discovery.resolve("apps/v1", "ReplicaSet", Deadline::after(10s));
  CHECK(api.request_count() == 2);  // one document per group version
  CHECK_THROWS_WITH(discovery.resolve("apps/v1", "Widget", Deadline::after(10s)),
                    Catch::Contains("no kind Widget in apiVersion apps/v1"));
  CHECK_THROWS_AS(discovery.resolve("example.com/v1", "Widget", Deadline::after(10s)),
                  deployapps::UsageError);
}

#include <catch2/catch.hpp>

#include "deployapps/apply.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/object_snapshot.hpp"
#include "support/fake_api.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using deployapps::Applier;
using deployapps::ApplyOperation;
using deployapps::ApplyOptions;
using deployapps::Deadline;
using deployapps::DryRun;
using deployapps::KubeClient;
using deployapps::testing::FakeApiServer;
using nlohmann::json;

namespace {

std::vector<deployapps::PlannedObject> plan_for(KubeClient& client, const std::string& app) {
  const deployapps::testing::FixtureRepo repo;
  deployapps::RenderRequest request;
  request.app = app;
  request.tag = "v1";
  const auto rendered = deployapps::render_app(deployapps::Repository(repo.root()), request);
  deployapps::Discovery discovery(client);
  return deployapps::plan_objects(discovery, rendered.objects, Deadline::after(10s));
}

std::vector<std::string> patched_paths(const FakeApiServer& api, bool dry_run) {
  std::vector<std::string> paths;
  for (const auto& request : api.requests()) {
    if (request.method == "PATCH" && (request.query.count("dryRun") != 0) == dry_run) {
      paths.push_back(request.path);
    }
  }
  return paths;
}

std::vector<ApplyOperation> operations(const deployapps::ApplyResult& result) {
  std::vector<ApplyOperation> out;
  for (const auto& object : result.objects) {
    out.push_back(object.operation);
  }
  return out;
}

}  // namespace

TEST_CASE("plans name kubectl-style and resolve paths before anything is sent", "[apply]") {
  FakeApiServer api;
  KubeClient client(api.rest_config());
  const auto plan = plan_for(client, "go-app");
  REQUIRE(plan.size() == 7);
  CHECK(plan[0].display() == "namespace/go-app");
  CHECK(plan[0].path == "/api/v1/namespaces/go-app");
  CHECK(plan[5].display() == "deployment.apps/go-app");
  CHECK(plan[5].path == "/apis/apps/v1/namespaces/go-app/deployments/go-app");
  CHECK(plan[6].display() == "ingress.networking.k8s.io/go-app");
  for (const auto& request : api.requests()) {
    CHECK(request.method == "GET");  // discovery only
  }
}

TEST_CASE("server-side apply: namespace first, dry run before every change", "[apply]") {
  FakeApiServer api;
  KubeClient client(api.rest_config());
  const auto plan = plan_for(client, "go-app");
  Applier applier(client, ApplyOptions{});
  const auto first = applier.apply(plan, Deadline::after(30s));
  CHECK(operations(first) == std::vector<ApplyOperation>(7, ApplyOperation::kCreated));

  const auto real = patched_paths(api, false);
  REQUIRE(real.size() == 7);
  CHECK(real.front() == "/api/v1/namespaces/go-app");
  for (const auto& request : api.requests()) {
    if (request.method == "PATCH") {
      CHECK(request.headers.at("content-type") == "application/apply-patch+yaml");
      CHECK(request.query.at("fieldManager") == "deploy-apps");
      CHECK(request.query.at("fieldValidation") == "Strict");
      // Dry runs are not forced (a conflict is news); the real apply takes our fields.
      CHECK(request.query.count("force") == (request.query.count("dryRun") == 0 ? 1U : 0U));
      CHECK(json::parse(request.body).contains("apiVersion"));
    }
  }
  // The deployment's service account did not exist during the dry run, so the pod admission
  // check could not run the first time; it says so.
  CHECK(first.notes.size() == 1);
  CHECK_THAT(first.notes[0], Catch::Contains("service account go-app/go-app does not exist yet"));

  SECTION("applying again changes nothing and says so") {
    const auto second = applier.apply(plan, Deadline::after(30s));
    CHECK(operations(second) == std::vector<ApplyOperation>(7, ApplyOperation::kUnchanged));
    CHECK(second.notes.empty());
    const auto deployment = api.stored("/apis/apps/v1/namespaces/go-app/deployments/go-app");
    REQUIRE(deployment.has_value());
    CHECK(second.objects[5].resource_version == (*deployment)["metadata"]["resourceVersion"]);
    std::size_t pod_checks = 0;
    for (const auto& request : api.requests()) {
      if (request.method == "POST" && request.path == "/api/v1/namespaces/go-app/pods") {
        ++pod_checks;
        CHECK(request.query.at("dryRun") == "All");
        const auto pod = json::parse(request.body);
        CHECK(pod["kind"] == "Pod");
        CHECK(pod["spec"]["containers"][0]["image"] == "127.0.0.1:5000/go-app:v1");
      }
    }
    CHECK(pod_checks == 1);
  }
  SECTION("a changed object is reported as configured") {
    auto changed = plan;
    changed[5].object["spec"]["replicas"] = 3;
    const auto result = applier.apply(changed, Deadline::after(30s));
    CHECK(result.objects[5].operation == ApplyOperation::kConfigured);
    CHECK(result.objects[4].operation == ApplyOperation::kUnchanged);
  }
}

TEST_CASE("Pod Security rejection stops the apply before any workload changes", "[apply]") {
  FakeApiServer api;
  KubeClient client(api.rest_config());
  const auto plan = plan_for(client, "go-app");
  Applier applier(client, ApplyOptions{});
  (void)applier.apply(plan, Deadline::after(30s));  // first deploy: everything exists now

  api.reject_pods(deployapps::testing::status_body(
      403, "Forbidden",
      "pods \"go-app-admission-check-x\" is forbidden: violates PodSecurity "
      "\"restricted:latest\": allowPrivilegeEscalation != false"));
  auto bad = plan;
  bad[5].object["spec"]["template"]["spec"]["containers"][0]["securityContext"]
               ["allowPrivilegeEscalation"] = true;
  const auto patches_before = patched_paths(api, false).size();
  CHECK_THROWS_WITH(applier.apply(bad, Deadline::after(30s)),
                    Catch::Contains("admission check of the pods of deployment.apps/go-app") &&
                        Catch::Contains("violates PodSecurity"));
  // Only the namespace phase was applied for real.
  CHECK(patched_paths(api, false).size() == patches_before + 1);
}

TEST_CASE("server dry run changes nothing and skips what a missing namespace holds", "[apply]") {
  FakeApiServer api;
  KubeClient client(api.rest_config());
  const auto plan = plan_for(client, "node-app");
  Applier applier(client, ApplyOptions{DryRun::kServer, "deploy-apps"});
  const auto result = applier.apply(plan, Deadline::after(30s));
  CHECK(patched_paths(api, false).empty());
  CHECK(result.objects[0].operation == ApplyOperation::kCreated);
  for (std::size_t i = 1; i < result.objects.size(); ++i) {
    CHECK(result.objects[i].operation == ApplyOperation::kSkipped);
    CHECK_THAT(result.objects[i].note, Catch::Contains("namespace node-app does not exist yet"));
  }
  CHECK_FALSE(api.stored("/api/v1/namespaces/node-app").has_value());
}

TEST_CASE("replicas owned by an autoscaler are left to it, other fields are still applied",
          "[apply]") {
  FakeApiServer api;
  KubeClient client(api.rest_config());
  auto plan = plan_for(client, "go-app");
  Applier applier(client, ApplyOptions{});
  (void)applier.apply(plan, Deadline::after(30s));
  // Now an HPA owns .spec.replicas: an apply that is not forced conflicts on it, as the API
  // answers then.
  const std::string path = "/apis/apps/v1/namespaces/go-app/deployments/go-app";
  api.override_path("PATCH", path, [](const deployapps::testing::ReceivedRequest& request) {
    auto body = json::parse(request.body);
    if (request.query.count("force") == 0 && body["spec"].contains("replicas")) {
      return deployapps::testing::json_reply(
          409, deployapps::testing::status_body(
                   409, "Conflict", "Apply failed with 1 conflict",
                   json::array({{{"reason", "FieldManagerConflict"},
                                 {"message",
                                  "conflict with \"kube-controller-manager\" using "
                                  "apps/v1"},
                                 {"field", ".spec.replicas"}}})));
    }
    body["metadata"]["resourceVersion"] = "900";
    return deployapps::testing::json_reply(200, body);
  });
  plan[5].object["spec"]["template"]["metadata"]["labels"]["release"] = "two";
  const auto result = applier.apply(plan, Deadline::after(30s));
  std::optional<json> applied;
  for (const auto& request : api.requests()) {
    if (request.method == "PATCH" && request.path == path && request.query.count("dryRun") == 0) {
      applied = json::parse(request.body);
    }
  }
  REQUIRE(applied);
  CHECK_FALSE((*applied)["spec"].contains("replicas"));  // not taken back from the HPA
  CHECK((*applied)["spec"]["template"]["metadata"]["labels"]["release"] == "two");
  bool noted = false;
  for (const auto& note : result.notes) {
    noted = noted || note.find("spec.replicas is managed by \"kube-controller-manager\"") !=
                         std::string::npos;
  }
  CHECK(noted);
}

TEST_CASE("a conflict on other fields is forced, as kubectl --force-conflicts", "[apply]") {
  deployapps::ApiError replicas_only(
      "conflict", 409, "Conflict",
      {{"FieldManagerConflict", "conflict with \"hpa\" using apps/v1", ".spec.replicas"}});
  CHECK(deployapps::replicas_owner_in_conflict(replicas_only) == "hpa");
  deployapps::ApiError also_image(
      "conflict", 409, "Conflict",
      {{"FieldManagerConflict", "conflict with \"hpa\"", ".spec.replicas"},
       {"FieldManagerConflict", "conflict with \"kubectl-edit\"",
        ".spec.template.spec.containers[name=\"go-app\"].image"}});
  CHECK(deployapps::replicas_owner_in_conflict(also_image).empty());
  CHECK(deployapps::replicas_owner_in_conflict(deployapps::ApiError("invalid", 422, "Invalid", {}))
            .empty());
}

TEST_CASE("objects compare by what they declare and not by what the server keeps", "[apply]") {
  using deployapps::same_object_ignoring_server_fields;
  const nlohmann::json live = {
      {"apiVersion", "v1"},
      {"kind", "Service"},
      {"metadata",
       {{"name", "go-app"},
        {"namespace", "go-app"},
        {"resourceVersion", "7"},
        {"uid", "0a"},
        {"creationTimestamp", "2026-12-05T07:00:00Z"},
        {"managedFields", nlohmann::json::array({{{"manager", "deploy-apps"}}})},
        {"labels", {{"app.kubernetes.io/name", "go-app"}}}}},
      {"spec", {{"clusterIP", "10.0.0.1"}, {"ports", {{{"port", 80}}}}}},
      {"status", {{"loadBalancer", nlohmann::json::object()}}}};
  auto dry_run = live;
  dry_run["metadata"]["resourceVersion"] = "8";
  dry_run["metadata"]["managedFields"][0]["time"] = "2026-12-05T07:01:00Z";
  dry_run.erase("status");
  CHECK(same_object_ignoring_server_fields(live, dry_run));
  auto annotated = dry_run;
  annotated["metadata"]["annotations"] = {{"example", "yes"}};
  CHECK_FALSE(same_object_ignoring_server_fields(live, annotated));
  auto relabelled = dry_run;
  relabelled["metadata"]["labels"]["tier"] = "web";
  CHECK_FALSE(same_object_ignoring_server_fields(live, relabelled));
  auto moved = dry_run;
  moved["spec"]["ports"][0]["port"] = 8080;
  CHECK_FALSE(same_object_ignoring_server_fields(live, moved));
}

TEST_CASE("a snapshot puts back what an apply changed and retries a conflicting update",
          "[apply][objects]") {
  FakeApiServer api;
  KubeClient client(api.rest_config());
  Applier applier(client, ApplyOptions{DryRun::kNone, std::string(deployapps::kFieldManager)});
  auto plan = plan_for(client, "go-app");
  (void)applier.apply(plan, Deadline::after(10s));
  std::vector<deployapps::RolloutObject> others;
  std::string service_path;
  for (auto& object : plan) {
    if (object.resource.kind == "Service") {
      service_path = object.path;
      object.object["metadata"]["annotations"] = {{"changed", "yes"}};
      others.push_back({object.display(), object.path, object.object});
    } else if (object.resource.kind == "PodDisruptionBudget") {
      others.push_back({object.display(), object.path, object.object});  // unchanged
    }
  }
  REQUIRE(others.size() == 2);
  const auto before = api.stored(service_path).value();
  const auto snapshot = deployapps::ObjectSnapshot::take(client, others, Deadline::after(10s));
  CHECK(snapshot.describe() == "service/go-app");
  (void)applier.apply(plan, Deadline::after(10s));
  REQUIRE(api.stored(service_path).value()["metadata"].contains("annotations"));

  SECTION("a controller writing meanwhile costs a retry, not the restore") {
    api.conflict_next_updates(service_path, 2);
    const auto outcome = snapshot.restore(client, Deadline::after(10s));
    CHECK(outcome.ok);
    CHECK(deployapps::same_object_ignoring_server_fields(api.stored(service_path).value(), before));
  }
  SECTION("an update that keeps conflicting is reported, not hidden") {
    api.conflict_next_updates(service_path, 5);
    const auto outcome = snapshot.restore(client, Deadline::after(10s));
    CHECK_FALSE(outcome.ok);
    REQUIRE(outcome.lines.size() == 1);
    CHECK_THAT(outcome.lines[0], Catch::Contains("service/go-app NOT restored"));
  }
}

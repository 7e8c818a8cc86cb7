// Failure classification over Pods, Events, ReplicaSets and Deployments recorded from the real
// local cluster (tests/unit/fixtures/rollout/record).
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>

#include "deployapps/diagnosis.hpp"
#include "deployapps/rollout_status.hpp"
#include "deployapps/time.hpp"

using deployapps::FailureKind;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

json fixture(const std::string& name) {
  std::ifstream file(std::string(DEPLOY_APPS_TEST_SOURCE_DIR) + "/tests/unit/fixtures/rollout/" +
                     name);
  REQUIRE(file);
  return json::parse(file);
}

std::vector<json> items(const json& list) {
  return list.at("items").get<std::vector<json>>();
}

// The inputs the deployer gathers for one recorded failure, seen at `now`.
deployapps::DiagnosisInput recorded(const std::string& name,
                                    std::chrono::system_clock::time_point now) {
  deployapps::DiagnosisInput input;
  input.deployment = fixture(name + "-deployment.json");
  const auto owned =
      deployapps::owned_replica_sets(input.deployment, items(fixture(name + "-replicasets.json")));
  input.new_replica_set = deployapps::new_replica_set(input.deployment, owned);
  input.new_pods = items(fixture(name + "-pods.json"));
  input.events = items(fixture(name + "-events.json"));
  input.now = now;
  return input;
}

std::chrono::system_clock::time_point at(const char* text) {
  return deployapps::parse_rfc3339(text);
}

}  // namespace

TEST_CASE("a crashing release is a certain CrashLoopBackOff with its exit code", "[diagnosis]") {
  const auto diagnosis = deployapps::diagnose(recorded("crash", std::chrono::system_clock::now()));
  REQUIRE(diagnosis);
  CHECK(diagnosis->kind == FailureKind::kCrashLoop);
  CHECK(diagnosis->certain);
  CHECK(diagnosis->reason == "CrashLoopBackOff");
  CHECK(diagnosis->container == "go-app");
  CHECK(diagnosis->exit_code == 1);
  CHECK(diagnosis->object.rfind("pod/go-app-", 0) == 0);
  CHECK_THAT(diagnosis->describe(),
             Catch::Contains("container crashes") && Catch::Contains("(last exit code 1)"));
}

TEST_CASE("a missing image is a certain image pull failure", "[diagnosis]") {
  const auto diagnosis =
      deployapps::diagnose(recorded("missing-image", std::chrono::system_clock::now()));
  REQUIRE(diagnosis);
  CHECK(diagnosis->kind == FailureKind::kImagePull);
  CHECK(diagnosis->certain);
  CHECK(diagnosis->reason == "ImagePullBackOff");
  CHECK_THAT(diagnosis->message, Catch::Contains("does-not-exist: not found"));
}

TEST_CASE("a first ErrImagePull is certain only when the image is not found", "[diagnosis]") {
  auto input = recorded("missing-image", std::chrono::system_clock::now());
  auto& waiting = input.new_pods.at(0)["status"]["containerStatuses"][0]["state"]["waiting"];
  waiting["reason"] = "ErrImagePull";
  CHECK(deployapps::diagnose(input)->certain);
  waiting["message"] = "rpc error: code = Unavailable desc = connection refused";
  const auto diagnosis = deployapps::diagnose(input);
  REQUIRE(diagnosis);
  CHECK(diagnosis->kind == FailureKind::kImagePull);
  CHECK_FALSE(diagnosis->certain);
}

TEST_CASE("never ready: certain once the kubelet saw it unready long enough", "[diagnosis]") {
  auto input = recorded("unready", std::chrono::system_clock::now());
  const auto started =
      at(input.new_pods.at(0)["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
             .get<std::string>()
             .c_str());
  // Recorded: the container started 23:45:17 and its readiness probe last failed 23:45:35,
  // 18 s of the kubelet's own time.
  input.now = started + 19s;
  auto diagnosis = deployapps::diagnose(input);
  REQUIRE(diagnosis);
  CHECK(diagnosis->kind == FailureKind::kNeverReady);
  CHECK_FALSE(diagnosis->certain);
  CHECK(diagnosis->message == "Readiness probe failed: HTTP probe failed with statuscode: 503");
  // The workstation's clock plays no part: an hour ahead, it is still 18 s of failures.
  input.now = started + 1h;
  CHECK_FALSE(deployapps::diagnose(input)->certain);
  input.never_ready_after = 10s;
  CHECK(deployapps::diagnose(input)->certain);
  input.never_ready_after = deployapps::kNeverReadyAfter;
  // The probe still failing 30 s after the start.
  for (auto& event : input.events) {
    if (event.value("reason", "") == "Unhealthy") {
      event["lastTimestamp"] = "2026-11-28T23:45:47Z";
    }
  }
  input.now = started;  // even with a clock behind the cluster's
  diagnosis = deployapps::diagnose(input);
  REQUIRE(diagnosis);
  CHECK(diagnosis->certain);
}

TEST_CASE("never ready needs a failed readiness probe event", "[diagnosis]") {
  auto input = recorded("unready", std::chrono::system_clock::now());
  input.events.clear();
  CHECK_FALSE(deployapps::diagnose(input).has_value());
}

TEST_CASE("Pod Security rejections show as FailedCreate on the new ReplicaSet", "[diagnosis]") {
  deployapps::DiagnosisInput input;
  input.deployment = fixture("failed-create-deployment.json");
  const auto owned = deployapps::owned_replica_sets(
      input.deployment, items(fixture("failed-create-replicasets.json")));
  input.new_replica_set = deployapps::new_replica_set(input.deployment, owned);
  REQUIRE(input.new_replica_set);
  const auto diagnosis = deployapps::diagnose(input);
  REQUIRE(diagnosis);
  CHECK(diagnosis->kind == FailureKind::kFailedCreate);
  CHECK(diagnosis->certain);
  CHECK(diagnosis->object ==
        "replicaset/" + (*input.new_replica_set)["metadata"]["name"].get<std::string>());
  CHECK_THAT(diagnosis->message, Catch::Contains("violates PodSecurity \"restricted:latest\""));
  // Without the ReplicaSet, the Deployment's mirrored condition says the same.
  input.new_replica_set.reset();
  const auto mirrored = deployapps::diagnose(input);
  REQUIRE(mirrored);
  CHECK(mirrored->object == "deployment/go-app");
  CHECK_THAT(mirrored->message, Catch::Contains("forbidden"));
}

TEST_CASE("the progress deadline is certain and wins", "[diagnosis]") {
  auto input = recorded("unready", std::chrono::system_clock::now());
  input.deployment = fixture("deadline-deployment.json");
  const auto diagnosis = deployapps::diagnose(input);
  REQUIRE(diagnosis);
  CHECK(diagnosis->kind == FailureKind::kProgressDeadline);
  CHECK(diagnosis->certain);
  CHECK_THAT(diagnosis->message, Catch::Contains("has timed out progressing"));
}

TEST_CASE("a finished rollout has no diagnosis", "[diagnosis]") {
  deployapps::DiagnosisInput input;
  input.deployment = fixture("after-v2-deployment.json");
  const auto owned =
      deployapps::owned_replica_sets(input.deployment, items(fixture("after-v2-replicasets.json")));
  input.new_replica_set = deployapps::new_replica_set(input.deployment, owned);
  REQUIRE(input.new_replica_set);
  CHECK_FALSE(deployapps::diagnose(input).has_value());
}

TEST_CASE("a cluster that does not act is named, after 30 s and not before", "[diagnosis]") {
  const auto applied = at("2026-12-03T10:00:00Z");
  deployapps::DiagnosisInput input;
  input.deployment = json::parse(R"({"metadata": {"name": "go-app", "generation": 3},
                                     "status": {"observedGeneration": 2}})");
  input.applied_at = applied;

  SECTION("no controller-manager: the new generation is never observed") {
    input.now = applied + 29s;
    CHECK_FALSE(deployapps::diagnose(input).has_value());
    input.now = applied + 30s;
    const auto diagnosis = deployapps::diagnose(input);
    REQUIRE(diagnosis.has_value());
    CHECK(diagnosis->kind == FailureKind::kClusterInactive);
    CHECK(diagnosis->certain);
    CHECK_THAT(diagnosis->describe(), Catch::Contains("kube-controller-manager") &&
                                          Catch::Contains("generation 3 (still 2)"));
    // Observed: the controller works, nothing to say.
    input.deployment["status"]["observedGeneration"] = 3;
    CHECK_FALSE(deployapps::diagnose(input).has_value());
  }

  input.deployment["status"]["observedGeneration"] = 3;
  const auto pod = [](const char* status) {
    return json::parse(std::string(R"({"metadata": {"name": "go-app-1",
                                         "creationTimestamp": "2026-12-03T10:00:01Z"},)") +
                       status + "}");
  };
  SECTION("no scheduler: a pod nobody binds") {
    input.new_pods = {pod(R"("spec": {}, "status": {"phase": "Pending"})")};
    input.now = applied + 30s;
    CHECK_FALSE(deployapps::diagnose(input).has_value());  // 29 s after the pod was created
    input.now = applied + 31s;
    const auto diagnosis = deployapps::diagnose(input);
    REQUIRE(diagnosis.has_value());
    CHECK(diagnosis->reason == "NotScheduled");
    CHECK_THAT(diagnosis->describe(), Catch::Contains("kube-scheduler"));
  }
  SECTION("no Ready node: the scheduler says the only node is tainted not-ready") {
    input.new_pods = {pod(R"("spec": {}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "lastTransitionTime": "2026-12-03T10:00:02Z",
         "message": "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."}]})")};
    input.now = applied + 31s;
    auto diagnosis = deployapps::diagnose(input);
    REQUIRE(diagnosis.has_value());
    CHECK_FALSE(diagnosis->certain);  // plain Unschedulable, still waiting
    input.now = applied + 32s;
    diagnosis = deployapps::diagnose(input);
    REQUIRE(diagnosis.has_value());
    CHECK(diagnosis->reason == "NoReadyNode");
    CHECK(diagnosis->certain);
  }
  SECTION("a silent kubelet: bound, but never reported") {
    input.new_pods = {pod(R"("spec": {"nodeName": "127.0.0.1"}, "status": {"phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True",
                        "lastTransitionTime": "2026-12-03T10:00:01Z"}]})")};
    input.now = applied + 31s;
    const auto diagnosis = deployapps::diagnose(input);
    REQUIRE(diagnosis.has_value());
    CHECK(diagnosis->reason == "NodeSilent");
    CHECK_THAT(diagnosis->describe(), Catch::Contains("kubelet") && Catch::Contains("127.0.0.1"));
    // Once the kubelet reports the containers (creating), it is acting.
    input.new_pods[0]["status"]["containerStatuses"] =
        json::parse(R"([{"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}}])");
    CHECK_FALSE(deployapps::diagnose(input).has_value());
  }
}

TEST_CASE("conditions the controller has not caught up with do not fail a new rollout",
          "[diagnosis]") {
  // The recorded deadline, then a new apply: generation 6, still observed 5. The condition is
  // the previous rollout's (kubectl's generation <= observedGeneration guard).
  auto input = recorded("unready", std::chrono::system_clock::now());
  input.deployment = fixture("deadline-deployment.json");
  input.deployment["metadata"]["generation"] = 6;
  input.new_pods.clear();
  input.events.clear();
  input.new_replica_set.reset();
  input.applied_at = std::chrono::system_clock::now();
  CHECK_FALSE(deployapps::diagnose(input).has_value());
  // The same for a ReplicaFailure the Deployment still mirrors from before.
  input.deployment["status"]["conditions"].push_back(
      {{"type", "ReplicaFailure"}, {"status", "True"}, {"reason", "FailedCreate"}});
  CHECK_FALSE(deployapps::diagnose(input).has_value());
  // Once observed, they count again.
  input.deployment["status"]["observedGeneration"] = 6;
  const auto diagnosis = deployapps::diagnose(input);
  REQUIRE(diagnosis);
  CHECK(diagnosis->kind == FailureKind::kProgressDeadline);
}

TEST_CASE("causes that clear on a retry must persist before they count", "[diagnosis]") {
  deployapps::PersistenceFilter filter;
  const auto start = deployapps::Clock::now();
  const deployapps::Diagnosis pull{FailureKind::kImagePull, true,       "pod/go-app-1", "go-app",
                                   "ImagePullBackOff",      "back-off", std::nullopt};
  CHECK_FALSE(filter.apply(pull, start)->certain);
  CHECK_FALSE(filter.apply(pull, start + 19s)->certain);
  CHECK(filter.apply(pull, start + deployapps::kImagePullPersistence)->certain);
  // Gone (the retry worked), then back: counted again from its return.
  CHECK_FALSE(filter.apply(std::nullopt, start + 21s).has_value());
  CHECK_FALSE(filter.apply(pull, start + 22s)->certain);
  CHECK(filter.apply(pull, start + 42s)->certain);
  // Another pod's is a cause of its own.
  auto other = pull;
  other.object = "pod/go-app-2";
  CHECK_FALSE(filter.apply(other, start + 43s)->certain);
  // A crash loop and the controller's deadline have waited already; an uncertain cause stays so.
  const deployapps::Diagnosis crash{
      FailureKind::kCrashLoop, true, "pod/go-app-1", "go-app", "CrashLoopBackOff", "", 1};
  CHECK(filter.apply(crash, start + 44s)->certain);
  auto unsure = pull;
  unsure.certain = false;
  CHECK_FALSE(filter.apply(unsure, start + 100s)->certain);
  CHECK(deployapps::persistence_needed(FailureKind::kFailedCreate) == 15s);
  CHECK(deployapps::persistence_needed(FailureKind::kContainerConfig) == 15s);
  CHECK(deployapps::persistence_needed(FailureKind::kProgressDeadline) == 0s);
}

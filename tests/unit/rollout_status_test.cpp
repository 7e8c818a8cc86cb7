// Rollout judgement over objects recorded from the real local cluster
// (tests/unit/fixtures/rollout/record made them): kubectl rollout status, the ReplicaSet of the
// current template, and kubectl rollout undo's choice of template.
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "deployapps/rollout.hpp"
#include "deployapps/rollout_judge.hpp"
#include "deployapps/rollout_status.hpp"
#include "deployapps/rollout_watch.hpp"

using deployapps::RolloutPhase;
using nlohmann::json;

namespace {

std::string fixture_path(const std::string& name) {
  return std::string(DEPLOY_APPS_TEST_SOURCE_DIR) + "/tests/unit/fixtures/rollout/" + name;
}

json fixture(const std::string& name) {
  std::ifstream file(fixture_path(name));
  REQUIRE(file);
  return json::parse(file);
}

std::vector<json> items(const json& list) {
  return list.at("items").get<std::vector<json>>();
}

std::vector<json> watch_events(const std::string& name) {
  std::ifstream file(fixture_path(name));
  REQUIRE(file);
  std::vector<json> events;
  for (std::string line; std::getline(file, line);) {
    if (!line.empty()) {
      events.push_back(json::parse(line));
    }
  }
  return events;
}

}  // namespace

TEST_CASE("rollout status follows a recorded v1 -> v2 rollout like kubectl", "[rollout]") {
  std::vector<std::string> messages;
  std::vector<RolloutPhase> phases;
  for (const auto& event : watch_events("watch-v1-to-v2.jsonl")) {
    const auto status = deployapps::deployment_rollout_status(event.at("object"));
    if (messages.empty() || messages.back() != status.message) {
      messages.push_back(status.message);
      phases.push_back(status.phase);
    }
  }
  // What kubectl rollout status prints for the same states (it prints on every change).
  const std::vector<std::string> expected{
      R"(deployment "go-app" successfully rolled out)",
      "Waiting for deployment spec update to be observed...",
      R"(Waiting for deployment "go-app" rollout to finish: 1 out of 2 new replicas have been updated...)",
      R"(Waiting for deployment "go-app" rollout to finish: 1 old replicas are pending termination...)",
      R"(deployment "go-app" successfully rolled out)",
  };
  CHECK(messages == expected);
  CHECK(phases.front() == RolloutPhase::kDone);
  CHECK(phases.back() == RolloutPhase::kDone);
}

TEST_CASE("rollout status reports the progress deadline as a failure", "[rollout]") {
  const auto status = deployapps::deployment_rollout_status(fixture("deadline-deployment.json"));
  CHECK(status.phase == RolloutPhase::kFailed);
  CHECK(status.message == R"(deployment "go-app" exceeded its progress deadline)");
}

TEST_CASE("rollout status: a crashing release waits on its new replicas", "[rollout]") {
  const auto status = deployapps::deployment_rollout_status(fixture("crash-deployment.json"));
  CHECK(status.phase == RolloutPhase::kWaiting);
  CHECK(
      status.message ==
      R"(Waiting for deployment "go-app" rollout to finish: 1 out of 2 new replicas have been updated...)");
}

TEST_CASE("rollout status checks the revision when asked", "[rollout]") {
  const auto deployment = fixture("crash-deployment.json");
  CHECK_NOTHROW(deployapps::deployment_rollout_status(deployment, 3));
  CHECK_THROWS_WITH(deployapps::deployment_rollout_status(deployment, 2),
                    "desired revision (2) is different from the running revision (3)");
}

TEST_CASE("rollout status: missing counters are zero", "[rollout]") {
  auto deployment = fixture("deployment-v1-complete.json");
  deployment["status"].erase("availableReplicas");
  const auto status = deployapps::deployment_rollout_status(deployment);
  CHECK(
      status.message ==
      R"(Waiting for deployment "go-app" rollout to finish: 0 of 2 updated replicas are available...)");
}

TEST_CASE("the new ReplicaSet is the one with the Deployment's template", "[rollout]") {
  const auto deployment = fixture("crash-deployment.json");
  const auto owned =
      deployapps::owned_replica_sets(deployment, items(fixture("crash-replicasets.json")));
  CHECK(owned.size() == 3);
  const auto current = deployapps::new_replica_set(deployment, owned);
  REQUIRE(current);
  CHECK(deployapps::revision_of(*current) == 3);
  // The pod-template-hash label is the only difference between the two templates.
  CHECK(current->at("spec").at("template") != deployment.at("spec").at("template"));
}

TEST_CASE("ReplicaSets of another Deployment are not owned", "[rollout]") {
  auto deployment = fixture("crash-deployment.json");
  deployment["metadata"]["uid"] = "another-uid";
  CHECK(
      deployapps::owned_replica_sets(deployment, items(fixture("crash-replicasets.json"))).empty());
}

TEST_CASE("undo restores the previous revision's template as kubectl did", "[rollout][undo]") {
  const auto deployment = fixture("crash-deployment.json");
  const auto replica_sets = items(fixture("crash-replicasets.json"));
  const auto plan = deployapps::plan_undo(deployment, replica_sets);
  CHECK_FALSE(plan.skipped);
  CHECK(plan.revision == 2);
  CHECK(plan.message == "deployment.apps/go-app rolled back");
  // kubectl rollout undo ran on the same objects; the Deployment it left has this template.
  const auto after = fixture("undo-crash-deployment-after.json");
  CHECK(plan.template_ == after.at("spec").at("template"));
  CHECK_FALSE(plan.template_.at("metadata").at("labels").contains("pod-template-hash"));
  REQUIRE(plan.patch.size() == 2);
  CHECK(plan.patch[0]["path"] == "/spec/template");
  CHECK(plan.patch[1]["path"] == "/metadata/annotations");
  // Skipped keys keep the Deployment's values; the ReplicaSet's own skipped keys are dropped.
  const auto& annotations = plan.patch[1]["value"];
  CHECK(annotations["deployment.kubernetes.io/revision"] == "3");
  CHECK(annotations["kubectl.kubernetes.io/last-applied-configuration"] ==
        deployment["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]);
  CHECK_FALSE(annotations.contains("deployment.kubernetes.io/desired-replicas"));
  CHECK_FALSE(annotations.contains("deployment.kubernetes.io/max-replicas"));
}

TEST_CASE("undo copies the ReplicaSet's other annotations", "[rollout][undo]") {
  const auto deployment = fixture("crash-deployment.json");
  auto replica_sets = items(fixture("crash-replicasets.json"));
  for (auto& replica_set : replica_sets) {
    replica_set["metadata"]["annotations"]["example.com/owner"] = "team-a";
  }
  const auto plan = deployapps::plan_undo(deployment, replica_sets);
  CHECK(plan.patch[1]["value"]["example.com/owner"] == "team-a");
}

TEST_CASE("undo to a given revision, and its errors", "[rollout][undo]") {
  const auto deployment = fixture("crash-deployment.json");
  const auto replica_sets = items(fixture("crash-replicasets.json"));
  const auto plan = deployapps::plan_undo(deployment, replica_sets, 1);
  CHECK(plan.revision == 1);
  CHECK(plan.template_["spec"]["containers"][0]["env"][1]["value"] == "v1");
  CHECK_THROWS_WITH(deployapps::plan_undo(deployment, replica_sets, 9),
                    "unable to find specified revision 9 in history");
  CHECK_THROWS_WITH(deployapps::plan_undo(deployment, replica_sets, -1),
                    "unable to find specified revision -1 in history");
}

TEST_CASE("undo skips when the previous revision's template is already running",
          "[rollout][undo]") {
  // After kubectl's undo the Deployment runs revision 2's template again (now revision 4); the
  // previous revision is the crashing 3, so undoing to 4 itself is the skip case.
  const auto deployment = fixture("undo-crash-deployment-after.json");
  const auto replica_sets = items(fixture("undo-crash-replicasets-after.json"));
  const auto plan = deployapps::plan_undo(deployment, replica_sets, 4);
  CHECK(plan.skipped);
  CHECK(plan.message ==
        "deployment.apps/go-app skipped rollback (current template already matches revision 4)");
  CHECK(deployapps::plan_undo(deployment, replica_sets).revision == 3);
}

TEST_CASE("undo without history, and of a paused Deployment", "[rollout][undo]") {
  const auto deployment = fixture("crash-deployment.json");
  auto replica_sets = items(fixture("crash-replicasets.json"));
  // A first deploy: the Deployment's own ReplicaSet is all there is.
  std::erase_if(replica_sets, [](const json& rs) { return deployapps::revision_of(rs) != 3; });
  CHECK_THROWS_WITH(deployapps::plan_undo(deployment, replica_sets),
                    R"(no rollout history found for deployment "go-app")");
  auto paused = deployment;
  paused["spec"]["paused"] = true;
  CHECK_THROWS_WITH(
      deployapps::plan_undo(paused, items(fixture("crash-replicasets.json"))),
      "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume "
      "deployment/go-app' and try again");
}

TEST_CASE("revision annotations: missing is 0, garbage is skipped", "[rollout]") {
  json object{{"metadata", {{"annotations", {{"deployment.kubernetes.io/revision", "7"}}}}}};
  CHECK(deployapps::revision_of(object) == 7);
  object["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "x7";
  CHECK_FALSE(deployapps::revision_of(object).has_value());
  CHECK(deployapps::revision_of(json{{"metadata", json::object()}}) == 0);
}

TEST_CASE("label selectors become labelSelector queries", "[rollout]") {
  const auto deployment = fixture("deployment-v1-complete.json");
  CHECK(deployapps::selector_query(deployment["spec"]["selector"]) ==
        "app.kubernetes.io/instance=go-app,app.kubernetes.io/name=go-app");
  const json expressions{{"matchExpressions",
                          {{{"key", "tier"}, {"operator", "In"}, {"values", {"web", "api"}}},
                           {{"key", "env"}, {"operator", "NotIn"}, {"values", {"dev"}}},
                           {{"key", "canary"}, {"operator", "Exists"}},
                           {{"key", "legacy"}, {"operator", "DoesNotExist"}}}}};
  CHECK(deployapps::selector_query(expressions) ==
        "tier in (api,web),env notin (dev),canary,!legacy");
}

TEST_CASE("the version a template runs, and the live progress line", "[rollout]") {
  const auto deployment = fixture("crash-deployment.json");
  CHECK(deployapps::template_version(deployment["spec"]["template"]) == "v1");  // the label
  auto unlabelled = deployment["spec"]["template"];
  unlabelled["metadata"]["labels"].erase("app.kubernetes.io/version");
  CHECK(deployapps::template_version(unlabelled) == "v2");  // APP_VERSION
  CHECK(deployapps::progress_text(deployment, 0) == "1/2 updated, 2 available, 2 old running");
  CHECK(deployapps::progress_text(fixture("after-v2-deployment.json"), 1) ==
        "2/2 updated, 2 available, 1 old terminating");
}

TEST_CASE("a failing watch is retried while the API is unavailable, not given up after 5",
          "[rollout][watch]") {
  using deployapps::watch_retry;
  using std::chrono::seconds;
  // No answer (connect, TLS, silence), 5xx and 429 are an API that is away: keep trying.
  for (const unsigned status : {0U, 500U, 503U, 504U, 429U}) {
    CAPTURE(status);
    CHECK_FALSE(watch_retry(1, status).give_up);
    CHECK(watch_retry(1, status).delay == seconds(1));
    CHECK(watch_retry(2, status).delay == seconds(2));
    CHECK(watch_retry(3, status).delay == seconds(4));
    CHECK(watch_retry(4, status).delay == seconds(8));
    // The old watcher gave up after 5 failures in a row (about 15 s of an apiserver restart).
    CHECK_FALSE(watch_retry(6, status).give_up);
    CHECK_FALSE(watch_retry(1000, status).give_up);
    CHECK(watch_retry(1000, status).delay == seconds(8));
  }
  // Credentials, RBAC and a deleted namespace do not come back by waiting.
  for (const unsigned status : {401U, 403U, 404U}) {
    CAPTURE(status);
    CHECK(watch_retry(1, status).give_up);
  }
}

TEST_CASE("the drain check waits for each old pod's own grace period", "[rollout][drain]") {
  using deployapps::drain_until;
  using std::chrono::seconds;
  const auto now = deployapps::parse_rfc3339("2026-12-04T10:00:00Z");
  const auto margin = seconds(15);
  // Deleted at 09:59:00 with a 140 s grace: the API's deletionTimestamp is 10:01:20.
  const json deleted = {{"metadata", {{"deletionTimestamp", "2026-12-04T10:01:20Z"}}},
                        {"spec", {{"terminationGracePeriodSeconds", 140}}}};
  CHECK(drain_until({deleted}, now, margin) == deployapps::parse_rfc3339("2026-12-04T10:01:35Z"));
  // Not deleted yet: from now, on its own grace period (a new template's 30 s does not apply).
  const json running = {{"metadata", json::object()},
                        {"spec", {{"terminationGracePeriodSeconds", 140}}}};
  CHECK(drain_until({running}, now, margin) == now + seconds(155));
  // No grace period written: the API's default, 30 s.
  CHECK(drain_until({json{{"metadata", json::object()}}}, now, margin) == now + seconds(45));
  // The latest pod decides; nothing left to drain ends at once.
  const json soon = {{"metadata", {{"deletionTimestamp", "2026-12-04T10:00:05Z"}}}};
  CHECK(drain_until({soon, deleted}, now, margin) ==
        deployapps::parse_rfc3339("2026-12-04T10:01:35Z"));
  CHECK(drain_until({}, now, margin) == now);
}

TEST_CASE("the judge: the first rule that applies decides", "[rollout][judge]") {
  using deployapps::Observation;
  using Kind = deployapps::Verdict::Kind;
  // Statuses from the recorded Deployments: one still rolling out, one complete, one whose
  // controller gave up (ProgressDeadlineExceeded).
  const auto waiting = deployapps::deployment_rollout_status(fixture("unready-deployment.json"));
  const auto done = deployapps::deployment_rollout_status(fixture("deployment-v1-complete.json"));
  const auto gave_up = deployapps::deployment_rollout_status(fixture("deadline-deployment.json"));
  REQUIRE(waiting.phase == RolloutPhase::kWaiting);
  REQUIRE(done.phase == RolloutPhase::kDone);
  REQUIRE(gave_up.phase == RolloutPhase::kFailed);
  deployapps::Diagnosis crash;
  crash.kind = deployapps::FailureKind::kCrashLoop;
  crash.certain = true;
  crash.object = "pod/go-app-1";
  crash.reason = "CrashLoopBackOff";
  auto unsure = crash;
  unsure.certain = false;
  unsure.kind = deployapps::FailureKind::kNeverReady;
  unsure.reason = "NotReady";

  const auto observed = [&](deployapps::RolloutStatus status) {
    Observation observation;
    observation.status = std::move(status);
    return observation;
  };
  struct Row {
    const char* what;
    Observation observation;
    Kind kind;
    const char* why;  // a part of the verdict's reason
  };
  std::vector<Row> rows;
  rows.push_back({"rolling out with nothing wrong goes on", observed(waiting), Kind::kGoOn, ""});
  {
    auto o = observed(done);
    o.probe_failures = 3;
    o.interrupted = true;
    o.deadline_passed = true;
    rows.push_back({"done wins: the checks judge their own failures after it", o, Kind::kDone, ""});
  }
  {
    auto o = observed(waiting);
    o.diagnosis = crash;
    o.probe_failures = 1;
    rows.push_back({"a certain diagnosis fails at once", o, Kind::kFailed, "CrashLoopBackOff"});
  }
  {
    auto o = observed(waiting);
    o.diagnosis = unsure;
    rows.push_back({"an uncertain diagnosis is only shown", o, Kind::kGoOn, ""});
  }
  {
    auto o = observed(waiting);
    o.probe_failures = 1;
    rows.push_back({"one failed in-flight request fails", o, Kind::kFailed, "requests failed"});
  }
  {
    auto o = observed(waiting);
    o.drain_failure = "old pod go-app-0 exited 137";
    rows.push_back({"an old pod killed while draining fails", o, Kind::kFailed, "exited 137"});
    o.verify = false;
    rows.push_back({"with --no-verify a drain exit fails nothing", o, Kind::kGoOn, ""});
  }
  {
    auto o = observed(waiting);
    o.interrupted = true;
    o.deadline_passed = true;
    rows.push_back({"Ctrl-C comes before the deadline", o, Kind::kInterrupted, "Ctrl-C"});
  }
  rows.push_back({"the controller's progress deadline fails", observed(gave_up), Kind::kFailed,
                  "exceeded its progress deadline"});
  {
    auto o = observed(waiting);
    o.diagnosis = unsure;
    o.deadline_passed = true;
    rows.push_back({"the deadline times out and names the suspect", o, Kind::kTimedOut,
                    "timed out waiting for the rollout"});
  }
  {
    auto o = observed(gave_up);
    o.rolling_back = true;
    o.diagnosis = crash;
    o.probe_failures = 2;
    o.drain_failure = "old pod exited 1";
    rows.push_back(
        {"a rollback is judged only by done and Ctrl-C and the deadline", o, Kind::kGoOn, ""});
    o.interrupted = true;
    rows.push_back({"a further Ctrl-C stops waiting for the rollback", o, Kind::kInterrupted, ""});
    o.interrupted = false;
    o.deadline_passed = true;
    rows.push_back({"the overall deadline stops waiting for the rollback", o, Kind::kTimedOut, ""});
  }
  for (const auto& row : rows) {
    DYNAMIC_SECTION(row.what) {
      const auto verdict = deployapps::judge(row.observation);
      CHECK(verdict.kind == row.kind);
      CHECK_THAT(verdict.why, Catch::Contains(row.why));
      CHECK(verdict.from_diagnosis ==
            (row.kind == Kind::kFailed && row.observation.diagnosis &&
             row.observation.diagnosis->certain && !row.observation.rolling_back));
    }
  }
}

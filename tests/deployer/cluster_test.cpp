// The deployer against a real cluster (DEPLOY_APPS_TEST_KUBECONFIG). Everything goes into a
// namespace of its own, deleted at the end, so the apps' real namespaces are left alone.
#include <catch2/catch.hpp>
#include <cstdint>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "deployapps/cli.hpp"
#include "deployapps/discovery.hpp"
#include "deployapps/kube_client.hpp"
#include "deployapps/kubeconfig.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using deployapps::Deadline;
using deployapps::KubeClient;
using deployapps::testing::FixtureRepo;
using nlohmann::json;

namespace {

constexpr const char* kNamespace = "deployer-test";

std::string kubeconfig() {
  return std::getenv("DEPLOY_APPS_TEST_KUBECONFIG");
}

KubeClient client() {
  const auto config = deployapps::load_kubeconfig({kubeconfig()});
  return KubeClient(deployapps::resolve_context(config, std::nullopt));
}

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result deploy(const FixtureRepo& repo, std::vector<std::string> args) {
  // Applying is under test here, not building or rolling out (tests/deployer/rollout does those):
  // a fixed digest skips the image build, --no-wait the rollout.
  args.insert(args.begin(),
              {"--kubeconfig", kubeconfig(), "--namespace", kNamespace, "--tag", "cluster-test",
               "--digest", "sha256:" + std::string(64, '0'), "--no-wait", "-v"});
  std::ostringstream out;
  std::ostringstream err;
  const int code =
      deployapps::run(args, out, err,
                      deployapps::ProcessEnvironment({{"DEPLOY_APPS_ROOT", repo.root().string()},
                                                      {"HOME", (repo.root() / "home").string()}}));
  return {code, out.str(), err.str()};
}

// The Deployment's generation: it moves only when the spec changes. (Its resourceVersion also
// moves while the controller updates the status of pods still starting.)
std::int64_t deployment_generation(KubeClient& api, const std::string& app) {
  const auto deployment =
      api.get("/apis/apps/v1/namespaces/" + std::string(kNamespace) + "/deployments/" + app,
              Deadline::after(30s));
  return deployment["metadata"]["generation"].get<std::int64_t>();
}

// Starts from no test namespace (an earlier run's may still be terminating, and nothing can be
// created in it), and removes it when the run ends, whatever happened.
struct NamespaceCleanup {
  NamespaceCleanup() {
    auto api = client();
    const auto path = "/api/v1/namespaces/" + std::string(kNamespace);
    const auto deadline = Deadline::after(120s);
    while (const auto existing = api.get_if_exists(path, Deadline::after(30s))) {
      if (!existing->at("metadata").contains("deletionTimestamp")) {
        deployapps::ApiRequest request;
        request.method = "DELETE";
        request.path = path;
        (void)api.request(request, Deadline::after(30s));
      }
      if (deadline.expired()) {
        FAIL("namespace " << kNamespace << " from an earlier run is still there after 120 s");
      }
      std::this_thread::sleep_for(500ms);
    }
  }
  NamespaceCleanup(const NamespaceCleanup&) = delete;
  NamespaceCleanup& operator=(const NamespaceCleanup&) = delete;
  NamespaceCleanup(NamespaceCleanup&&) = delete;
  NamespaceCleanup& operator=(NamespaceCleanup&&) = delete;
  ~NamespaceCleanup() {
    try {
      auto api = client();
      deployapps::ApiRequest request;
      request.method = "DELETE";
      request.path = "/api/v1/namespaces/" + std::string(kNamespace);
      (void)api.request(request, Deadline::after(30s));
    } catch (const std::exception& error) {
      WARN("could not delete namespace " << kNamespace << ": " << error.what());
    }
  }
};

}  // namespace

TEST_CASE("discovery on a real cluster", "[integration]") {
  auto api = client();
  deployapps::Discovery discovery(api);
  const auto deployment = discovery.resolve("apps/v1", "Deployment", Deadline::after(30s));
  CHECK(deployment.plural == "deployments");
  CHECK(deployment.namespaced);
  const auto ns = discovery.resolve("v1", "Namespace", Deadline::after(30s));
  CHECK(ns.plural == "namespaces");
  CHECK_FALSE(ns.namespaced);
  CHECK(discovery.resolve("networking.k8s.io/v1", "Ingress", Deadline::after(30s)).plural ==
        "ingresses");
  CHECK(discovery.resolve("networking.k8s.io/v1", "NetworkPolicy", Deadline::after(30s)).plural ==
        "networkpolicies");
  CHECK(discovery.resolve("policy/v1", "PodDisruptionBudget", Deadline::after(30s)).plural ==
        "poddisruptionbudgets");
  // The Gateway API's CRDs (scripts/cluster installs them).
  const auto route =
      discovery.resolve("gateway.networking.k8s.io/v1", "HTTPRoute", Deadline::after(30s));
  CHECK(route.plural == "httproutes");
  CHECK(route.namespaced);
  CHECK_THROWS_AS(discovery.resolve("apps/v1", "NoSuchKind", Deadline::after(30s)),
                  deployapps::UsageError);
}

TEST_CASE("apply, unchanged re-apply, and a Pod Security rejection", "[integration]") {
  const NamespaceCleanup cleanup;
  const FixtureRepo repo;
  auto api = client();

  const auto first = deploy(repo, {"go-app", "node-app"});
  INFO(first.err);
  REQUIRE(first.code == 0);
  CHECK_THAT(first.out, Catch::Contains("deployment.apps/go-app") &&
                            Catch::Contains("deployment.apps/node-app"));
  const auto ns = api.get("/api/v1/namespaces/" + std::string(kNamespace), Deadline::after(30s));
  CHECK(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted");
  for (const auto* path :
       {"/apis/apps/v1/namespaces/deployer-test/deployments/go-app",
        "/apis/apps/v1/namespaces/deployer-test/deployments/node-app",
        "/api/v1/namespaces/deployer-test/services/go-app",
        "/api/v1/namespaces/deployer-test/serviceaccounts/node-app",
        "/apis/networking.k8s.io/v1/namespaces/deployer-test/ingresses/go-app",
        "/apis/networking.k8s.io/v1/namespaces/deployer-test/networkpolicies/go-app",
        "/apis/policy/v1/namespaces/deployer-test/poddisruptionbudgets/node-app"}) {
    CAPTURE(path);
    CHECK(api.get_if_exists(path, Deadline::after(30s)).has_value());
  }
  const auto deployment =
      api.get("/apis/apps/v1/namespaces/deployer-test/deployments/go-app", Deadline::after(30s));
  bool managed_by_us = false;
  for (const auto& entry : deployment["metadata"]["managedFields"]) {
    managed_by_us =
        managed_by_us || (entry["manager"] == "deploy-apps" && entry["operation"] == "Apply");
  }
  CHECK(managed_by_us);
  // The hard spread and the one-at-a-time budget, as the server stored them.
  const auto& spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"].at(0);
  CHECK(spread.at("whenUnsatisfiable") == "DoNotSchedule");
  CHECK(spread.at("minDomains") == 1);
  CHECK(spread.at("nodeTaintsPolicy") == "Honor");
  const auto budget = api.get(
      "/apis/policy/v1/namespaces/deployer-test/poddisruptionbudgets/go-app", Deadline::after(30s));
  CHECK(budget["spec"].at("maxUnavailable") == 1);

  const auto go_generation = deployment_generation(api, "go-app");
  const auto node_generation = deployment_generation(api, "node-app");
  const auto again = deploy(repo, {"-o", "json", "go-app", "node-app"});
  INFO(again.err);
  REQUIRE(again.code == 0);
  CHECK(deployment_generation(api, "go-app") == go_generation);
  CHECK(deployment_generation(api, "node-app") == node_generation);
  const auto report = json::parse(again.out);
  std::size_t objects = 0;
  for (const auto& app : report["apps"]) {
    for (const auto& object : app["objects"]) {
      CAPTURE(object);
      CHECK(object["operation"] == "unchanged");
      ++objects;
    }
  }
  CHECK(objects == 14);

  // Production's values (minDomains 2, 3 replicas) pass the server's validation and admission.
  const auto production =
      deploy(repo, {"--env", "production", "--set", "image.registry=127.0.0.1:5000", "--set",
                    "ingress.domain=example.test", "--server-dry-run", "go-app"});
  INFO(production.err);
  CHECK(production.code == 0);
  CHECK(deployment_generation(api, "go-app") == go_generation);

  // A pod spec that breaks the "restricted" profile: the server dry run must refuse it with
  // the admission message, and change nothing.
  const auto template_path = repo.root() / "manifests/templates/deployment.yaml";
  auto text = deployapps::testing::read_file(template_path);
  const std::string safe = "allowPrivilegeEscalation: false";
  REQUIRE(text.find(safe) != std::string::npos);
  text.replace(text.find(safe), safe.size(), "allowPrivilegeEscalation: true");
  repo.dir().write("manifests/templates/deployment.yaml", text);
  const auto rejected = deploy(repo, {"--server-dry-run", "go-app"});
  CHECK(rejected.code == 1);
  CHECK_THAT(rejected.err, Catch::Contains("violates PodSecurity \"restricted:latest\"") &&
                               Catch::Contains("allowPrivilegeEscalation != false"));
  CHECK(deployment_generation(api, "go-app") == go_generation);

  // Strict field validation catches a typo the server would otherwise drop.
  text = deployapps::testing::read_file(template_path);
  text.replace(text.find("minReadySeconds:"), 16, "minReadySecond:");
  repo.dir().write("manifests/templates/deployment.yaml", text);
  const auto typo = deploy(repo, {"--server-dry-run", "go-app"});
  CHECK(typo.code == 1);
  CHECK_THAT(typo.err, Catch::Contains("minReadySecond"));
  CHECK(deployment_generation(api, "go-app") == go_generation);
}

namespace {

// The objects of one app in a -o json report, as "display operation" lines.
std::vector<std::string> reported(const std::string& out) {
  std::vector<std::string> lines;
  const auto report = json::parse(out);
  for (const auto& app : report["apps"]) {
    for (const auto& object : app["objects"]) {
      lines.push_back(object["kind"].get<std::string>() + "/" + object["name"].get<std::string>() +
                      " " + object["operation"].get<std::string>());
    }
  }
  return lines;
}

}  // namespace

TEST_CASE("an HTTPRoute is applied, validated by the server and reported like the rest",
          "[integration]") {
  const NamespaceCleanup cleanup;
  const FixtureRepo repo;
  auto api = client();
  const std::string gateway = "routing.kind=gateway";
  const auto route_path = "/apis/gateway.networking.k8s.io/v1/namespaces/" +
                          std::string(kNamespace) + "/httproutes/go-app";

  const auto first = deploy(repo, {"--set", gateway, "-o", "json", "go-app"});
  INFO(first.err);
  REQUIRE(first.code == 0);
  const auto created = reported(first.out);
  CHECK(std::count(created.begin(), created.end(), "HTTPRoute/go-app created") == 1);
  CHECK(std::none_of(created.begin(), created.end(),
                     [](const auto& line) { return line.starts_with("Ingress/"); }));
  const auto route = api.get(route_path, Deadline::after(30s));
  CHECK(route["spec"]["parentRefs"][0]["name"] == "traefik");
  CHECK(route["spec"]["hostnames"] == json::array({"go-app.localhost"}));
  CHECK_FALSE(api.get_if_exists("/apis/networking.k8s.io/v1/namespaces/" + std::string(kNamespace) +
                                    "/ingresses/go-app",
                                Deadline::after(30s))
                  .has_value());

  // The server dry run validates it (it exists now, so "configured") and lists it.
  const auto dry = deploy(repo, {"--set", gateway, "--server-dry-run", "-o", "json", "go-app"});
  INFO(dry.err);
  REQUIRE(dry.code == 0);
  const auto validated = reported(dry.out);
  CHECK(std::count(validated.begin(), validated.end(), "HTTPRoute/go-app configured") == 1);

  // Re-applied unchanged, although the Gateway controller writes the route's status meanwhile.
  const auto again = deploy(repo, {"--set", gateway, "-o", "json", "go-app"});
  INFO(again.err);
  REQUIRE(again.code == 0);
  const auto unchanged = reported(again.out);
  CHECK(std::count(unchanged.begin(), unchanged.end(), "HTTPRoute/go-app unchanged") == 1);
  CHECK(unchanged.size() == 7);  // the namespace and six objects of go-app, none of them changed
  CHECK(std::all_of(unchanged.begin(), unchanged.end(),
                    [](const auto& line) { return line.ends_with(" unchanged"); }));

  // Strict field validation reaches into the CRD's schema: a typo fails the dry run.
  const auto template_path = repo.root() / "manifests/templates/httproute.yaml";
  auto text = deployapps::testing::read_file(template_path);
  REQUIRE(text.find("hostnames:") != std::string::npos);
  text.replace(text.find("hostnames:"), 10, "hostname:");
  repo.dir().write("manifests/templates/httproute.yaml", text);
  const auto typo = deploy(repo, {"--set", gateway, "--server-dry-run", "go-app"});
  CHECK(typo.code == 1);
  CHECK_THAT(typo.err, Catch::Contains("hostname") && Catch::Contains("httproute"));
}

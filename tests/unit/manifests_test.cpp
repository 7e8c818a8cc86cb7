#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "deployapps/errors.hpp"
#include "deployapps/manifests.hpp"
#include "support/temp_dir.hpp"

using deployapps::Environment;
using deployapps::render_app;
using deployapps::RenderedApp;
using deployapps::RenderError;
using deployapps::RenderRequest;
using deployapps::Repository;
using deployapps::testing::FixtureRepo;
using nlohmann::json;

namespace {

RenderRequest request_for(const std::string& app) {
  RenderRequest request;
  request.app = app;
  request.tag = "v1";
  return request;
}

const json& object_of_kind(const RenderedApp& rendered, const std::string& kind) {
  const auto it = std::find_if(rendered.objects.begin(), rendered.objects.end(),
                               [&](const auto& o) { return o.object["kind"] == kind; });
  REQUIRE(it != rendered.objects.end());
  return it->object;
}

const json& container_of(const json& deployment) {
  return deployment["spec"]["template"]["spec"]["containers"][0];
}

std::string env_value(const json& container, const std::string& name) {
  for (const auto& variable : container["env"]) {
    if (variable["name"] == name) {
      return variable["value"].get<std::string>();
    }
  }
  return "<unset>";
}

}  // namespace

TEST_CASE("apps are discovered from apps/ plus manifests/<app>/values.yaml", "[manifests]") {
  deployapps::testing::TempDir dir;
  dir.write("apps/alpha/main.go", "package main\n");
  dir.write("manifests/alpha/values.yaml", "replicas: 2\n");
  dir.write("apps/no-manifests/README", "x\n");
  dir.write("manifests/cluster/values.yaml", "not an app\n");
  const Repository repository(dir.path());
  CHECK(repository.app_names() == std::vector<std::string>{"alpha"});
  CHECK(repository.app("alpha").name == "alpha");
  CHECK_THROWS_AS(repository.app("no-manifests"), deployapps::UsageError);
  CHECK_THROWS_WITH(repository.app("nope"), Catch::Contains("unknown app \"nope\"") &&
                                                Catch::Contains("known apps: alpha"));
}

TEST_CASE("both apps render every object, namespace first", "[manifests]") {
  const FixtureRepo repo;
  const Repository repository(repo.root());
  const auto app = GENERATE(as<std::string>{}, "go-app", "node-app");
  const auto rendered = render_app(repository, request_for(app));
  std::vector<std::string> kinds;
  for (const auto& object : rendered.objects) {
    kinds.push_back(object.object["kind"].get<std::string>());
    const auto& labels = object.object["metadata"]["labels"];
    CHECK(labels["app.kubernetes.io/managed-by"] == "deploy-apps");
    if (object.object["kind"] == "Namespace") {
      // Shared by every app deployed into it: no app or version labels.
      CHECK_FALSE(labels.contains("app.kubernetes.io/name"));
      CHECK_FALSE(labels.contains("app.kubernetes.io/version"));
    } else {
      CHECK(labels["app.kubernetes.io/name"] == app);
      CHECK(labels["app.kubernetes.io/version"] == "v1");
    }
  }
  CHECK(kinds == std::vector<std::string>{"Namespace", "NetworkPolicy", "PodDisruptionBudget",
                                          "ServiceAccount", "Service", "Deployment", "Ingress"});
  CHECK(rendered.namespace_name == app);
  CHECK(object_of_kind(rendered,
                       "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] ==
        "restricted");
  CHECK(object_of_kind(rendered, "ServiceAccount")["automountServiceAccountToken"] == false);
}

TEST_CASE("the Deployment is set up for zero-downtime rollouts", "[manifests]") {
  const FixtureRepo repo;
  const auto rendered = render_app(Repository(repo.root()), request_for("go-app"));
  const auto& deployment = object_of_kind(rendered, "Deployment");
  const auto& spec = deployment["spec"];
  CHECK(spec["replicas"].get<int>() >= 2);
  CHECK(spec["strategy"]["type"] == "RollingUpdate");
  CHECK(spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0);
  CHECK(spec["strategy"]["rollingUpdate"]["maxSurge"].get<int>() >= 1);
  CHECK(spec["minReadySeconds"].get<int>() > 0);
  CHECK(spec["progressDeadlineSeconds"].get<int>() <= 120);
  const auto& pod = spec["template"]["spec"];
  // 0 s preStop + 10 s app delay + 125 s app shutdown timeout + 5 s margin.
  CHECK(pod["terminationGracePeriodSeconds"] == 140);
  const auto& container = container_of(deployment);
  CHECK(container["lifecycle"]["preStop"]["sleep"]["seconds"] == 0);
  CHECK(env_value(container, "SHUTDOWN_DELAY_SECONDS") == "10");
  // The app's timeout counts from SIGTERM: its delay, then the longest request + 5 s.
  CHECK(env_value(container, "SHUTDOWN_TIMEOUT_SECONDS") == "135");
  CHECK(env_value(container, "APP_VERSION") == "v1");
  CHECK(env_value(container, "PORT") == "8080");
  CHECK(container["startupProbe"]["httpGet"]["path"] == "/healthz");
  CHECK(container["readinessProbe"]["httpGet"]["path"] == "/readyz");
  CHECK(container["livenessProbe"]["httpGet"]["path"] == "/healthz");
  CHECK(container["resources"]["requests"].contains("cpu"));
  CHECK(container["resources"]["limits"].contains("memory"));
  CHECK(container["ports"][0] ==
        json{{"name", "http"}, {"containerPort", 8080}, {"protocol", "TCP"}});
  CHECK(container["image"] == "127.0.0.1:5000/go-app:v1");
  // Pod Security "restricted".
  CHECK(pod["securityContext"]["runAsNonRoot"] == true);
  CHECK(pod["securityContext"]["runAsUser"] == 65532);
  CHECK(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
  CHECK(container["securityContext"]["allowPrivilegeEscalation"] == false);
  CHECK(container["securityContext"]["readOnlyRootFilesystem"] == true);
  CHECK(container["securityContext"]["capabilities"]["drop"] == json::array({"ALL"}));
  CHECK(pod["topologySpreadConstraints"][0]["matchLabelKeys"] ==
        json::array({"pod-template-hash"}));
  // The selector must not carry the version label, or every deploy would orphan the old pods.
  CHECK(spec["selector"]["matchLabels"] ==
        json{{"app.kubernetes.io/instance", "go-app"}, {"app.kubernetes.io/name", "go-app"}});
  CHECK(spec["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "v1");
}

TEST_CASE("pods are steady: memory requested as limited, readiness tolerant of one slow answer",
          "[manifests]") {
  const FixtureRepo repo;
  for (const auto* app : {"go-app", "node-app"}) {
    for (const auto environment : {Environment::kLocal, Environment::kProduction}) {
      auto request = request_for(app);
      request.environment = environment;
      request.overrides.push_back(deployapps::parse_value_override("image.registry=registry.test"));
      request.overrides.push_back(deployapps::parse_value_override("ingress.domain=apps.test"));
      const auto rendered = render_app(Repository(repo.root()), request);
      const auto& container = container_of(object_of_kind(rendered, "Deployment"));
      INFO(app << " in " << environment_name(environment));
      // Requests below limits let a node overcommit memory and OOM-kill a draining pod.
      CHECK(container["resources"]["requests"]["memory"] ==
            container["resources"]["limits"]["memory"]);
      const auto& readiness = container["readinessProbe"];
      CHECK(readiness["failureThreshold"].get<int>() >= 2);
      CHECK(readiness["timeoutSeconds"].get<int>() >= 2);
      // go-app derives GOMEMLIMIT from the limit the Downward API passes.
      bool has_limit_env = false;
      for (const auto& env : container["env"]) {
        has_limit_env =
            has_limit_env || (env["name"] == "MEMORY_LIMIT_BYTES" &&
                              env["valueFrom"]["resourceFieldRef"]["resource"] == "limits.memory");
      }
      CHECK(has_limit_env);
    }
  }
}

TEST_CASE("Service, Ingress, PDB and NetworkPolicy", "[manifests]") {
  const FixtureRepo repo;
  const auto rendered = render_app(Repository(repo.root()), request_for("node-app"));
  const auto& service = object_of_kind(rendered, "Service");
  CHECK(service["spec"]["type"] == "ClusterIP");
  CHECK(service["spec"]["ports"][0]["port"] == 80);
  CHECK(service["spec"]["ports"][0]["targetPort"] == "http");
  const auto& ingress = object_of_kind(rendered, "Ingress");
  CHECK(ingress["spec"]["ingressClassName"] == "traefik");
  CHECK(ingress["spec"]["rules"][0]["host"] == "node-app.localhost");
  // A drain evicts one pod at a time whatever the replica count (minAvailable 1 would let it
  // take 2 of production's 3).
  auto budget = object_of_kind(rendered, "PodDisruptionBudget")["spec"];  // a copy: [] may add
  CHECK(budget["maxUnavailable"] == 1);
  CHECK_FALSE(budget.contains("minAvailable"));
  const auto& policy = object_of_kind(rendered, "NetworkPolicy");
  CHECK(policy["spec"]["ingress"][0]["ports"][0]["port"] == "http");
  CHECK(policy["spec"]["policyTypes"] == json::array({"Ingress", "Egress"}));
  // No empty lists: the server drops them, and re-applying one would rewrite the object.
  CHECK_FALSE(policy["spec"].contains("egress"));
  CHECK_FALSE(policy["spec"]["ingress"][0].contains("from"));
  // node-app's own values override the shared ones.
  CHECK(container_of(object_of_kind(rendered, "Deployment"))["resources"]["limits"]["memory"] ==
        "192Mi");
}

TEST_CASE("a digest pins the image; --namespace and --set override values", "[manifests]") {
  const FixtureRepo repo;
  auto request = request_for("go-app");
  request.image_digest = "sha256:" + std::string(64, 'a');
  request.namespace_name = "staging";
  request.overrides.push_back(deployapps::parse_value_override("replicas=4"));
  request.overrides.push_back(deployapps::parse_value_override("ingress.host=go.example.test"));
  const auto rendered = render_app(Repository(repo.root()), request);
  const auto& deployment = object_of_kind(rendered, "Deployment");
  CHECK(container_of(deployment)["image"] ==
        "127.0.0.1:5000/go-app@sha256:" + std::string(64, 'a'));
  CHECK(deployment["metadata"]["namespace"] == "staging");
  CHECK(object_of_kind(rendered, "Namespace")["metadata"]["name"] == "staging");
  CHECK(deployment["spec"]["replicas"] == 4);
  CHECK(object_of_kind(rendered, "Ingress")["spec"]["rules"][0]["host"] == "go.example.test");
}

TEST_CASE("each revision's pods spread hard over nodes; production needs two nodes at least",
          "[manifests]") {
  const FixtureRepo repo;
  auto request = request_for("go-app");
  const auto spread_of = [&] {
    const auto rendered = render_app(Repository(repo.root()), request);
    const auto& constraints = object_of_kind(
        rendered, "Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"];
    REQUIRE(constraints.size() == 1);
    return constraints[0];
  };
  auto local = spread_of();  // copies: a missing key reads as null
  CHECK(local["topologyKey"] == "kubernetes.io/hostname");
  CHECK(local["maxSkew"] == 1);
  CHECK(local["whenUnsatisfiable"] == "DoNotSchedule");
  CHECK(local["minDomains"] == 1);              // the local cluster may have a single node
  CHECK(local["nodeTaintsPolicy"] == "Honor");  // a cordoned node is no domain
  CHECK(local["matchLabelKeys"] == json::array({"pod-template-hash"}));
  request.environment = Environment::kProduction;
  request.overrides.push_back(deployapps::parse_value_override("image.registry=registry.test"));
  request.overrides.push_back(deployapps::parse_value_override("ingress.domain=apps.test"));
  auto production = spread_of();
  CHECK(production["whenUnsatisfiable"] == "DoNotSchedule");
  CHECK(production["minDomains"] == 2);
}

TEST_CASE("a lost node's pods are replaced after 30 s, not Kubernetes' 300 s", "[manifests]") {
  const FixtureRepo repo;
  auto request = request_for("node-app");
  const auto tolerations_of = [&] {
    const auto rendered = render_app(Repository(repo.root()), request);
    const auto& pod_spec = object_of_kind(rendered, "Deployment")["spec"]["template"]["spec"];
    return pod_spec.value("tolerations", json::array());
  };
  const auto tolerations = tolerations_of();
  REQUIRE(tolerations.size() == 2);
  std::vector<std::string> keys;
  for (const auto& toleration : tolerations) {
    keys.push_back(toleration["key"]);
    CHECK(toleration["operator"] == "Exists");
    CHECK(toleration["effect"] == "NoExecute");
    CHECK(toleration["tolerationSeconds"] == 30);
  }
  CHECK(keys ==
        std::vector<std::string>{"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"});
  request.overrides.push_back(deployapps::parse_value_override("nodeLoss.tolerationSeconds=10"));
  CHECK(tolerations_of()[0]["tolerationSeconds"] == 10);
}

TEST_CASE("production needs a registry and a domain, and gives each app its own host",
          "[manifests]") {
  const FixtureRepo repo;
  auto request = request_for("go-app");
  request.environment = Environment::kProduction;
  CHECK_THROWS_WITH(
      render_app(Repository(repo.root()), request),
      Catch::Contains("image.registry is required") && Catch::Contains("--set image.registry="));
  request.overrides.push_back(deployapps::parse_value_override("image.registry=registry.test"));
  CHECK_THROWS_WITH(render_app(Repository(repo.root()), request),
                    Catch::Contains("ingress.domain") && Catch::Contains("required"));
  request.overrides.push_back(deployapps::parse_value_override("ingress.domain=apps.test"));
  const auto rendered = render_app(Repository(repo.root()), request);
  CHECK(object_of_kind(rendered, "Deployment")["spec"]["replicas"] == 3);
  CHECK(container_of(object_of_kind(rendered, "Deployment"))["image"] == "registry.test/go-app:v1");
  CHECK(object_of_kind(rendered, "Ingress")["spec"]["rules"][0]["host"] == "go-app.apps.test");
  request.app = "node-app";
  CHECK(object_of_kind(render_app(Repository(repo.root()), request),
                       "Ingress")["spec"]["rules"][0]["host"] == "node-app.apps.test");
  // An explicit host still wins over the per-app default.
  request.overrides.push_back(deployapps::parse_value_override("ingress.host=www.test"));
  CHECK(object_of_kind(render_app(Repository(repo.root()), request),
                       "Ingress")["spec"]["rules"][0]["host"] == "www.test");
}

TEST_CASE("render errors say what is wrong", "[manifests]") {
  const FixtureRepo repo;
  const Repository repository(repo.root());
  SECTION("too few replicas") {
    auto request = request_for("go-app");
    request.overrides.push_back(deployapps::parse_value_override("replicas=1"));
    CHECK_THROWS_WITH(render_app(repository, request), Catch::Contains("at least 2"));
  }
  SECTION("a placeholder with no value") {
    repo.dir().write("manifests/templates/configmap.yaml",
                     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: "
                     "${namespace}\ndata:\n  a: ${no.such.value}\n");
    CHECK_THROWS_AS(render_app(repository, request_for("go-app")), RenderError);
    CHECK_THROWS_WITH(render_app(repository, request_for("go-app")),
                      Catch::Contains("manifests/templates/configmap.yaml") &&
                          Catch::Contains("${no.such.value}"));
  }
  SECTION("invalid YAML in a template") {
    repo.dir().write("manifests/templates/broken.yaml", "kind: [\n");
    CHECK_THROWS_WITH(render_app(repository, request_for("go-app")),
                      Catch::Contains("manifests/templates/broken.yaml"));
  }
  SECTION("a derived value set by hand") {
    auto request = request_for("go-app");
    request.overrides.push_back(
        deployapps::parse_value_override("shutdown.terminationGracePeriodSeconds=30"));
    CHECK_THROWS_WITH(render_app(repository, request), Catch::Contains("derived"));
  }
  SECTION("a bad tag") {
    auto request = request_for("go-app");
    request.tag = "bad tag!";
    CHECK_THROWS_AS(render_app(repository, request), deployapps::UsageError);
  }
  SECTION("a bad --set") {
    CHECK_THROWS_AS(deployapps::parse_value_override("novalue"), deployapps::UsageError);
    CHECK_THROWS_AS(deployapps::parse_value_override("=3"), deployapps::UsageError);
  }
}

TEST_CASE("placeholders: typed when alone and unquoted, text otherwise", "[manifests]") {
  const json values = {{"n", 3}, {"name", "web"}, {"map", {{"a", 1}}}};
  const auto documents = deployapps::render_template_text(
      "count: ${n}\nquoted: \"${n}\"\nmixed: ${name}-${n}\nwhole: ${map}\nescaped: $${n}\n", values,
      "inline");
  REQUIRE(documents.size() == 1);
  CHECK(documents[0] == json{{"count", 3},
                             {"quoted", "3"},
                             {"mixed", "web-3"},
                             {"whole", {{"a", 1}}},
                             {"escaped", "${n}"}});
  CHECK_THROWS_WITH(deployapps::render_template_text("x: a-${map}\n", values, "inline"),
                    Catch::Contains("map or list"));
  CHECK_THROWS_WITH(deployapps::render_template_text("${name}: 1\n", values, "inline"),
                    Catch::Contains("not allowed in map keys"));
}

TEST_CASE("apply order puts dependencies first", "[manifests]") {
  CHECK(deployapps::apply_rank("Namespace") < deployapps::apply_rank("ServiceAccount"));
  CHECK(deployapps::apply_rank("ServiceAccount") < deployapps::apply_rank("Deployment"));
  CHECK(deployapps::apply_rank("Service") < deployapps::apply_rank("Deployment"));
  CHECK(deployapps::apply_rank("Deployment") < deployapps::apply_rank("Ingress"));
  CHECK(deployapps::apply_rank("Ingress") < deployapps::apply_rank("HTTPRoute"));
  CHECK(deployapps::apply_rank("HTTPRoute") < deployapps::apply_rank("SomethingUnknown"));
}

TEST_CASE("a third app needs only a folder and a values file", "[manifests]") {
  const FixtureRepo repo;
  repo.dir().write("apps/third-app/Dockerfile", "FROM scratch\n");
  repo.dir().write("manifests/third-app/values.yaml", "replicas: 3\n");
  const Repository repository(repo.root());
  CHECK(repository.app_names() == std::vector<std::string>{"go-app", "node-app", "third-app"});
  const auto rendered = render_app(repository, request_for("third-app"));
  CHECK(object_of_kind(rendered, "Deployment")["spec"]["replicas"] == 3);
  CHECK(object_of_kind(rendered, "Ingress")["spec"]["rules"][0]["host"] == "third-app.localhost");
}

namespace {

bool has_kind(const RenderedApp& rendered, const std::string& kind) {
  return std::any_of(rendered.objects.begin(), rendered.objects.end(),
                     [&](const auto& o) { return o.object["kind"] == kind; });
}

RenderRequest routed(const std::string& app, const std::string& kind) {
  auto request = request_for(app);
  request.overrides.push_back(deployapps::parse_value_override("routing.kind=" + kind));
  return request;
}

}  // namespace

TEST_CASE("routing.kind picks the Ingress, a Gateway API HTTPRoute, or both", "[manifests]") {
  const FixtureRepo repo;
  const Repository repository(repo.root());
  SECTION("the default is the Ingress alone") {
    const auto rendered = render_app(repository, request_for("go-app"));
    CHECK(has_kind(rendered, "Ingress"));
    CHECK_FALSE(has_kind(rendered, "HTTPRoute"));
  }
  SECTION("gateway: an HTTPRoute on the local Gateway, and no Ingress") {
    const auto rendered = render_app(repository, routed("node-app", "gateway"));
    CHECK_FALSE(has_kind(rendered, "Ingress"));
    const auto& route = object_of_kind(rendered, "HTTPRoute");
    CHECK(route["apiVersion"] == "gateway.networking.k8s.io/v1");
    CHECK(route["metadata"]["namespace"] == "node-app");
    CHECK(route["metadata"]["labels"]["app.kubernetes.io/name"] == "node-app");
    CHECK(route["spec"]["parentRefs"] == json::array({{{"group", "gateway.networking.k8s.io"},
                                                       {"kind", "Gateway"},
                                                       {"name", "traefik"},
                                                       {"namespace", "traefik"},
                                                       {"sectionName", "web"}}}));
    // The same host as the Ingress it replaces, so the deployer's in-flight probe still finds it.
    CHECK(route["spec"]["hostnames"] == json::array({"node-app.localhost"}));
    const auto& backend = route["spec"]["rules"][0]["backendRefs"][0];
    CHECK(backend["kind"] == "Service");
    CHECK(backend["name"] == "node-app");
    CHECK(backend["port"] == object_of_kind(rendered, "Service")["spec"]["ports"][0]["port"]);
    CHECK(route["spec"]["rules"][0]["matches"][0]["path"] ==
          json{{"type", "PathPrefix"}, {"value", "/"}});
    // Routes come last: after the Service and the Deployment they send traffic to.
    CHECK(rendered.objects.back().object["kind"] == "HTTPRoute");
  }
  SECTION("both: the Ingress and the HTTPRoute, on hosts of their own") {
    auto request = routed("go-app", "both");
    request.overrides.push_back(
        deployapps::parse_value_override("gateway.host=${app}.gateway.localhost"));
    const auto rendered = render_app(repository, request);
    CHECK(object_of_kind(rendered, "Ingress")["spec"]["rules"][0]["host"] == "go-app.localhost");
    CHECK(object_of_kind(rendered, "HTTPRoute")["spec"]["hostnames"] ==
          json::array({"go-app.gateway.localhost"}));
  }
  SECTION("both on one host is refused: one host would be routed two ways") {
    CHECK_THROWS_WITH(render_app(repository, routed("go-app", "both")),
                      Catch::Contains("gateway.host to differ from ingress.host") &&
                          Catch::Contains("go-app.localhost"));
  }
  SECTION("a misspelt kind is an error, not an app without a route") {
    CHECK_THROWS_WITH(render_app(repository, routed("go-app", "gatway")),
                      Catch::Contains("routing.kind must be ingress, gateway, both") &&
                          Catch::Contains("\"gatway\""));
    CHECK_THROWS_WITH(render_app(repository, routed("go-app", "[ingress, gateway]")),
                      Catch::Contains("routing.kind must be"));
  }
  SECTION("production: the Gateway must be named") {
    auto request = routed("go-app", "gateway");
    request.environment = Environment::kProduction;
    request.overrides.push_back(deployapps::parse_value_override("image.registry=registry.test"));
    request.overrides.push_back(deployapps::parse_value_override("ingress.domain=apps.test"));
    CHECK_THROWS_WITH(render_app(repository, request),
                      Catch::Contains("gateway.name") && Catch::Contains("required"));
    request.overrides.push_back(deployapps::parse_value_override("gateway.name=public"));
    request.overrides.push_back(deployapps::parse_value_override("gateway.namespace=edge"));
    request.overrides.push_back(deployapps::parse_value_override("gateway.listener=https"));
    const auto route = object_of_kind(render_app(repository, request), "HTTPRoute");
    CHECK(route["spec"]["parentRefs"][0]["name"] == "public");
    CHECK(route["spec"]["parentRefs"][0]["namespace"] == "edge");
    CHECK(route["spec"]["hostnames"] == json::array({"go-app.apps.test"}));
  }
}

TEST_CASE("render-if: a template is rendered only when a value is one of the names listed",
          "[manifests]") {
  const FixtureRepo repo;
  const Repository repository(repo.root());
  const auto* const config_map =
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: ${namespace}\n";
  const auto with_extra = [&](const std::string& header) {
    repo.dir().write("manifests/templates/extra.yaml", header + config_map);
  };
  SECTION("listed names, spaces and a leading comment") {
    with_extra("# An extra object, see render-if below.\n\n#   render-if:   replicas in [2,3]\n");
    CHECK(has_kind(render_app(repository, request_for("go-app")), "ConfigMap"));
    auto request = request_for("go-app");
    request.overrides.push_back(deployapps::parse_value_override("replicas=4"));
    CHECK_FALSE(has_kind(render_app(repository, request), "ConfigMap"));
  }
  SECTION("every render-if must hold") {
    with_extra("# render-if: routing.kind in [ingress]\n# render-if: replicas in [3]\n");
    CHECK_FALSE(has_kind(render_app(repository, request_for("go-app")), "ConfigMap"));
  }
  SECTION("a skipped template's placeholders need no values") {
    repo.dir().write("manifests/templates/extra.yaml",
                     std::string("# render-if: routing.kind in [gateway]\n") + config_map +
                         "data:\n  a: ${no.such.value}\n");
    CHECK_FALSE(has_kind(render_app(repository, request_for("go-app")), "ConfigMap"));
  }
  SECTION("only the comment block before the first document line counts") {
    repo.dir().write("manifests/templates/extra.yaml",
                     "apiVersion: v1\n# render-if: routing.kind in [gateway]\nkind: ConfigMap\n"
                     "metadata:\n  name: extra\n  namespace: ${namespace}\n");
    CHECK(has_kind(render_app(repository, request_for("go-app")), "ConfigMap"));
  }
  SECTION("a malformed line is an error naming the file") {
    with_extra("# render-if: routing.kind == gateway\n");
    CHECK_THROWS_WITH(render_app(repository, request_for("go-app")),
                      Catch::Contains("manifests/templates/extra.yaml") &&
                          Catch::Contains("malformed") &&
                          Catch::Contains("render-if: path.to.value in [name, other]"));
    with_extra("# render-if: routing.kind in [gateway,,both]\n");
    CHECK_THROWS_WITH(render_app(repository, request_for("go-app")), Catch::Contains("empty name"));
  }
  SECTION("an unset value, or a map, is an error") {
    with_extra("# render-if: no.such.value in [a]\n");
    CHECK_THROWS_WITH(render_app(repository, request_for("go-app")),
                      Catch::Contains("manifests/templates/extra.yaml") &&
                          Catch::Contains("no.such.value to be set"));
    with_extra("# render-if: resources in [a]\n");
    CHECK_THROWS_WITH(render_app(repository, request_for("go-app")),
                      Catch::Contains("resources to be set to a name"));
  }
}

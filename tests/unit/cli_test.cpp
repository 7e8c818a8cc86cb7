// The command line, run in-process: exit codes, messages, and that bad input touches nothing.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <sstream>

#include "deployapps/cli.hpp"
#include "deployapps/object_snapshot.hpp"
#include "deployapps/rollout.hpp"
#include "deployapps/yaml_json.hpp"
#include "probe_test_server.hpp"
#include "support/fake_api.hpp"
#include "support/temp_dir.hpp"

using deployapps::ProcessEnvironment;
using deployapps::testing::FakeApiServer;
using deployapps::testing::FixtureRepo;
using deployapps::testing::TempDir;
using nlohmann::json;

namespace {

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result run_cli(std::vector<std::string> args, const FixtureRepo& repo,
               std::map<std::string, std::string> environment = {}) {
  environment.emplace("DEPLOY_APPS_ROOT", repo.root().string());
  // No kubeconfig from the machine running the tests, and no local cluster.
  environment.emplace("HOME", (repo.root() / "home").string());
  environment.emplace("DEPLOY_APPS_STATE", (repo.root() / "state").string());
  std::ostringstream out;
  std::ostringstream err;
  const int code = deployapps::run(args, out, err, ProcessEnvironment(std::move(environment)));
  return {code, out.str(), err.str()};
}

}  // namespace

TEST_CASE("CLI options bind to the options struct", "[cli]") {
  CLI::App app;
  deployapps::DeployOptions options;
  deployapps::setup_deploy_options(app, options);
  std::vector<std::string> args{"go-app",
                                "node-app",
                                "--context",
                                "kind",
                                "-n",
                                "ns",
                                "--env",
                                "production",
                                "--tag",
                                "abc",
                                "--set",
                                "replicas=3",
                                "--server-dry-run",
                                "--timeout",
                                "90s",
                                "-vv",
                                "-o",
                                "json"};
  std::reverse(args.begin(), args.end());
  app.parse(args);
  CHECK(options.apps == std::vector<std::string>{"go-app", "node-app"});
  CHECK(options.context == std::string("kind"));
  CHECK(options.namespace_name == std::string("ns"));
  CHECK(options.environment == deployapps::Environment::kProduction);
  CHECK(options.tag == std::string("abc"));
  CHECK(options.set_values == std::vector<std::string>{"replicas=3"});
  CHECK(options.server_dry_run);
  CHECK_FALSE(options.dry_run);
  CHECK(options.timeout == "90s");
  CHECK(options.verbosity == 2);
  CHECK(options.output == deployapps::OutputFormat::kJson);
  CHECK(options.probe_rate == 100);  // the default bound on the in-flight probe
}

TEST_CASE("help exits 0", "[cli]") {
  const FixtureRepo repo;
  const auto result = run_cli({"--help"}, repo);
  CHECK(result.code == 0);
  CHECK_THAT(result.out, Catch::Contains("Usage: deploy-apps") && Catch::Contains("--dry-run") &&
                             Catch::Contains("--server-dry-run") && Catch::Contains("--timeout"));
}

const std::string kDigestA = "sha256:" + std::string(64, 'a');
const std::string kDigestB = "sha256:" + std::string(64, 'b');

TEST_CASE("usage errors exit 2 with a clear message", "[cli]") {
  const FixtureRepo repo;
  const auto [args, message] = GENERATE(table<std::vector<std::string>, std::string>({
      {std::vector<std::string>{}, "no app given; known apps: go-app, node-app"},
      {{"nope"}, "unknown app \"nope\"; known apps: go-app, node-app"},
      {{"go-app", "go-app"}, "given more than once"},
      {{"--bogus", "go-app"}, "--bogus"},
      {{"--env", "staging", "go-app"}, "staging"},
      {{"--output", "xml", "go-app"}, "xml"},
      {{"--timeout", "soon", "go-app"}, "invalid duration"},
      {{"--dry-run", "--server-dry-run", "go-app"}, "excludes"},
      {{"--dry-run", "--set", "replicas=1", "go-app"}, "replicas must be at least 2"},
      {{"--dry-run", "--tag", "has space", "go-app"}, "invalid tag"},
      {{"--dry-run", "--env", "production", "go-app"}, "image.registry is required"},
      {{"--dry-run", "--set", "oops", "go-app"}, "expected path=value"},
      {{"--min-requests", "100", "--no-verify", "go-app"},
       "--min-requests needs the in-flight checks"},
      {{"--min-requests", "lots", "go-app"}, "--min-requests"},
      {{"--probe-rate", "-1", "go-app"}, "--probe-rate"},
      {{"--probe-rate", "fast", "go-app"}, "--probe-rate"},
      {{"--digest", "sha256:abc", "go-app"}, "invalid --digest \"sha256:abc\""},
      {{"--digest", "node-app=" + kDigestA, "go-app"}, "node-app is not being deployed"},
      {{"--digest", "go-app=" + kDigestA, "go-app", "node-app"},
       "--digest pins some apps but not node-app"},
      {{"--digest", "go-app=" + kDigestA, "--digest", "go-app=" + kDigestB, "go-app"},
       "--digest for go-app is given more than once"},
      {{"--digest", kDigestA, "--digest", kDigestB, "go-app"},
       "--digest without APP= is given more than once"},
  }));
  CAPTURE(args);
  const auto result = run_cli(args, repo);
  CHECK(result.code == 2);
  CHECK_THAT(result.err, Catch::Contains(message));
  CHECK(result.out.empty());
}

TEST_CASE("dry run prints every object of every app as YAML, with no cluster", "[cli]") {
  const FixtureRepo repo;
  const auto result = run_cli({"--dry-run", "--tag", "v7", "go-app", "node-app"}, repo);
  CHECK(result.code == 0);
  CAPTURE(result.err);
  const auto documents = deployapps::parse_yaml_documents(result.out, "stdout");
  REQUIRE(documents.size() == 14);
  CHECK(documents[0]["kind"] == "Namespace");
  CHECK(documents[0]["metadata"]["name"] == "go-app");
  CHECK(documents[7]["kind"] == "Namespace");
  CHECK(documents[7]["metadata"]["name"] == "node-app");
  CHECK_THAT(result.out,
             Catch::Contains("# Source: manifests/templates/deployment.yaml (app go-app)"));
}

TEST_CASE("dry run with -o json prints a List", "[cli]") {
  const FixtureRepo repo;
  const auto result = run_cli({"--dry-run", "-o", "json", "--tag", "v7", "go-app"}, repo);
  REQUIRE(result.code == 0);
  const auto list = json::parse(result.out);
  CHECK(list["kind"] == "List");
  CHECK(list["items"].size() == 7);
}

TEST_CASE("errors in json mode are also json on stdout", "[cli]") {
  const FixtureRepo repo;
  const auto result = run_cli({"-o", "json", "nope"}, repo);
  CHECK(result.code == 2);
  const auto body = json::parse(result.out);
  CHECK(body["result"] == "error");
  CHECK(body["exitCode"] == 2);
  CHECK_THAT(body["error"].get<std::string>(), Catch::Contains("unknown app"));
}

TEST_CASE("bad input touches nothing on the cluster", "[cli]") {
  const FixtureRepo repo;
  FakeApiServer api;
  TempDir dir;
  const auto kubeconfig = api.write_kubeconfig(dir).string();
  SECTION("an unknown context") {
    const auto result =
        run_cli({"--context", "nope", "go-app"}, repo, {{"KUBECONFIG", kubeconfig}});
    CHECK(result.code == 2);
    CHECK_THAT(result.err, Catch::Contains("context \"nope\" not found") &&
                               Catch::Contains("known contexts: fake"));
  }
  SECTION("an unknown context with --dry-run") {
    const auto result =
        run_cli({"--dry-run", "--context", "nope", "go-app"}, repo, {{"KUBECONFIG", kubeconfig}});
    CHECK(result.code == 2);
    CHECK(result.out.empty());
  }
  SECTION("a template that does not render") {
    repo.dir().write("manifests/templates/service.yaml", "kind: Service\nspec: ${missing}\n");
    const auto result = run_cli({"go-app", "node-app"}, repo, {{"KUBECONFIG", kubeconfig}});
    CHECK(result.code == 2);
    CHECK_THAT(result.err, Catch::Contains("manifests/templates/service.yaml"));
  }
  SECTION("one bad app among good ones") {
    const auto result = run_cli({"go-app", "nope"}, repo, {{"KUBECONFIG", kubeconfig}});
    CHECK(result.code == 2);
  }
  CHECK(api.request_count() == 0);
}

TEST_CASE("a deploy against the fake API server applies both apps", "[cli]") {
  const FixtureRepo repo;
  FakeApiServer api;
  TempDir dir;
  const std::map<std::string, std::string> environment{
      {"KUBECONFIG", api.write_kubeconfig(dir).string()}};
  // Pinned to a digest (no build) and not followed (the fake has no watches).
  const std::string digest = "sha256:" + std::string(64, 'a');
  const auto first = run_cli({"--tag", "v1", "--digest", digest, "--no-wait", "go-app", "node-app"},
                             repo, environment);
  CAPTURE(first.err);
  REQUIRE(first.code == 0);
  // The first deploy creates the namespace ahead of the rest, for the deploy lock that lives in it.
  CHECK_THAT(
      first.out,
      Catch::Contains("go-app: namespace/go-app applied first, to hold the deploy lock") &&
          Catch::Contains("go-app: took the deploy lock go-app/go-app-deploy-lock") &&
          Catch::Contains("node-app: deployment.apps/node-app created") &&
          Catch::Contains("node-app: released the deploy lock node-app/node-app-deploy-lock"));
  const auto again =
      run_cli({"--tag", "v1", "--digest", digest, "--no-wait", "-o", "json", "go-app", "node-app"},
              repo, environment);
  REQUIRE(again.code == 0);
  const auto report = json::parse(again.out);
  CHECK(report["mode"] == "apply");
  CHECK(report["result"] == "ok");
  CHECK(report["apps"][0]["lock"]["lease"] == "go-app/go-app-deploy-lock");
  CHECK(report["apps"][0]["lock"]["tookOverFrom"] == "");
  for (const auto& app : report["apps"]) {
    for (const auto& object : app["objects"]) {
      CHECK(object["operation"] == "unchanged");
    }
  }
  const auto rejected = [&] {
    api.reject_pods(deployapps::testing::status_body(
        403, "Forbidden", "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\""));
    return run_cli({"--tag", "v2", "--server-dry-run", "go-app"}, repo, environment);
  }();
  CHECK(rejected.code == 1);
  CHECK_THAT(rejected.err, Catch::Contains("violates PodSecurity"));
}

TEST_CASE("a digest per app pins each app to its own image in one run (--digest APP=DIGEST)",
          "[cli][digest]") {
  const FixtureRepo repo;
  FakeApiServer api;
  TempDir dir;
  const std::map<std::string, std::string> environment{
      {"KUBECONFIG", api.write_kubeconfig(dir).string()}};
  const auto image_of = [&](const std::string& app) {
    const auto deployment = api.stored("/apis/apps/v1/namespaces/" + app + "/deployments/" + app);
    REQUIRE(deployment);
    return deployment->at(json::json_pointer("/spec/template/spec/containers/0/image"))
        .get<std::string>();
  };
  const auto result = run_cli({"--tag", "v1", "--digest", "node-app=" + kDigestB, "--digest",
                               "go-app=" + kDigestA, "--no-wait", "go-app", "node-app"},
                              repo, environment);
  CAPTURE(result.err);
  REQUIRE(result.code == 0);
  CHECK_THAT(image_of("go-app"), Catch::EndsWith("/go-app@" + kDigestA));
  CHECK_THAT(image_of("node-app"), Catch::EndsWith("/node-app@" + kDigestB));
  // A bare digest covers the apps not named.
  const auto mixed = run_cli({"--tag", "v2", "--digest", kDigestB, "--digest",
                              "node-app=" + kDigestA, "--no-wait", "go-app", "node-app"},
                             repo, environment);
  CAPTURE(mixed.err);
  REQUIRE(mixed.code == 0);
  CHECK_THAT(image_of("go-app"), Catch::EndsWith("/go-app@" + kDigestB));
  CHECK_THAT(image_of("node-app"), Catch::EndsWith("/node-app@" + kDigestA));
  // A dry run renders the same pins.
  const auto dry = run_cli({"--dry-run", "--digest", "node-app=" + kDigestB, "--digest",
                            "go-app=" + kDigestA, "go-app", "node-app"},
                           repo);
  REQUIRE(dry.code == 0);
  CHECK_THAT(dry.out,
             Catch::Contains("/go-app@" + kDigestA) && Catch::Contains("/node-app@" + kDigestB));
}

TEST_CASE("with no kubeconfig and no local cluster, the hint says how to start one", "[cli]") {
  const FixtureRepo repo;
  const auto result = run_cli({"--tag", "v1", "go-app"}, repo);
  CHECK(result.code == 2);
  CHECK_THAT(result.err, Catch::Contains("scripts/cluster up"));
}

namespace {

// A stand-in for scripts/cluster: `status` fails until `up` ran (naming a stopped component),
// `up` takes `up_seconds` and records that it ran, `kubeconfig` prints the path.
void write_cluster_stand_in(const FixtureRepo& repo, const std::filesystem::path& kubeconfig,
                            int up_seconds = 0) {
  repo.dir().write("scripts/cluster",
                   "#!/bin/sh\n"
                   "here=\"$(dirname \"$0\")\"\n"
                   "case \"$1\" in\n"
                   "  status) echo \"etcd  running (pid 1)\"\n"
                   "    [ -f \"$here/up-ran\" ] && exit 0\n"
                   "    echo \"kube-scheduler           NOT running\"; exit 1 ;;\n"
                   "  up) sleep " +
                       std::to_string(up_seconds) +
                       "; echo started >> \"$here/up-ran\"; echo cluster is up ;;\n"
                       "  kubeconfig) echo " +
                       kubeconfig.string() +
                       " ;;\n"
                       "esac\n",
                   true);
}

// stdout holds exactly one JSON document.
json single_document(const std::string& text) {
  std::size_t documents = 0;
  json last;
  // parse() rejects trailing content; so count documents by parsing a stream.
  std::istringstream in(text);
  while (in >> std::ws, !in.eof()) {
    in >> last;
    ++documents;
  }
  CHECK(documents == 1);
  return last;
}

}  // namespace

TEST_CASE("with no cluster configured at all, the local cluster is started and used", "[cli]") {
  const FixtureRepo repo;
  FakeApiServer api;
  TempDir dir;
  write_cluster_stand_in(repo, api.write_kubeconfig(dir));
  const std::string digest = "sha256:" + std::string(64, 'b');
  const auto result = run_cli({"--tag", "v1", "--digest", digest, "--no-wait", "go-app"}, repo);
  CAPTURE(result.err);
  CHECK(result.code == 0);
  CHECK(deployapps::testing::read_file(repo.root() / "scripts" / "up-ran") == "started\n");
  CHECK_THAT(result.out, Catch::Contains("no cluster configured") &&
                             Catch::Contains("not usable: kube-scheduler NOT running") &&
                             Catch::Contains("cluster is up") &&
                             Catch::Contains("deploying to the project's local cluster"));
  CHECK(api.stored("/apis/apps/v1/namespaces/go-app/deployments/go-app").has_value());

  SECTION("a healthy local cluster is used as it is") {
    const auto again = run_cli({"--tag", "v1", "--digest", digest, "--no-wait", "go-app"}, repo);
    CHECK(again.code == 0);
    CHECK_THAT(again.out, Catch::Contains("scripts/cluster status: healthy"));
    CHECK(deployapps::testing::read_file(repo.root() / "scripts" / "up-ran") == "started\n");
  }
  SECTION("but never for a context the user named") {
    const auto named = run_cli({"--context", "fake", "--tag", "v1", "go-app"}, repo);
    CHECK(named.code == 2);
    CHECK_THAT(named.err, Catch::Contains("context \"fake\" not found"));
  }
}

TEST_CASE("a local cluster start longer than --timeout does not eat the deploy's budget",
          "[cli][budget]") {
  // A cold start builds Kubernetes for half an hour under --cluster-timeout; --timeout starts
  // after it. Seen on a cold machine: the plan's first request failed at once, "timed out".
  const FixtureRepo repo;
  FakeApiServer api;
  TempDir dir;
  write_cluster_stand_in(repo, api.write_kubeconfig(dir), 3);
  const std::string digest = "sha256:" + std::string(64, 'b');
  const auto result =
      run_cli({"--tag", "v1", "--digest", digest, "--no-wait", "--timeout", "2s", "go-app"}, repo);
  CAPTURE(result.out, result.err);
  CHECK(result.code == 0);
  CHECK(api.stored("/apis/apps/v1/namespaces/go-app/deployments/go-app").has_value());
}

TEST_CASE("with -o json, stdout holds exactly one document on every path", "[cli]") {
  const FixtureRepo repo;
  FakeApiServer api;
  TempDir dir;
  write_cluster_stand_in(repo, api.write_kubeconfig(dir));
  const std::string digest = "sha256:" + std::string(64, 'c');

  SECTION("success, with the local cluster started on the way") {
    const auto result =
        run_cli({"-o", "json", "--tag", "v1", "--digest", digest, "--no-wait", "go-app"}, repo);
    CAPTURE(result.err);
    CHECK(result.code == 0);
    CHECK(single_document(result.out)["result"] == "ok");
    CHECK_THAT(result.err, Catch::Contains("cluster is up"));
  }
  SECTION("a failed apply: the report, not a second error document") {
    api.override_path("PATCH", "/apis/apps/v1/namespaces/go-app/deployments/go-app",
                      [](const deployapps::testing::ReceivedRequest&) {
                        return deployapps::testing::json_reply(
                            422, deployapps::testing::status_body(422, "Invalid", "bad spec"));
                      });
    const auto result =
        run_cli({"-o", "json", "--tag", "v1", "--digest", digest, "--no-wait", "go-app"}, repo);
    CAPTURE(result.err);
    CHECK(result.code == 1);
    CHECK(single_document(result.out)["result"] == "failed");
    CHECK_THAT(result.err, Catch::Contains("bad spec"));
  }
  SECTION("bad input: the error document") {
    const auto result = run_cli({"-o", "json", "--timeout", "5m", "nope"}, repo);
    CHECK(result.code == 2);
    CHECK(single_document(result.out)["result"] == "error");
  }
}

TEST_CASE("a production deploy needs a probe URL for every app, unless --no-verify", "[cli]") {
  const FixtureRepo repo;
  FakeApiServer api;
  TempDir dir;
  const std::map<std::string, std::string> environment{
      {"KUBECONFIG", api.write_kubeconfig(dir).string()}};
  const std::vector<std::string> production{"--env", "production",
                                            "--set", "image.registry=registry.test",
                                            "--set", "ingress.domain=apps.test"};
  const auto with = [&](std::vector<std::string> args) {
    args.insert(args.begin(), production.begin(), production.end());
    return args;
  };
  SECTION("refused before anything is sent, naming the apps without one") {
    const auto [args, named] = GENERATE(table<std::vector<std::string>, std::string>({
        {{"go-app", "node-app"}, "no --probe-url for go-app, node-app"},
        {{"--probe-url", "go-app=http://go.apps.test", "go-app", "node-app"},
         "no --probe-url for node-app"},
    }));
    CAPTURE(args);
    const auto result = run_cli(with(args), repo, environment);
    CHECK(result.code == 2);
    CHECK_THAT(result.err, Catch::Contains(named) && Catch::Contains("--no-verify"));
    CHECK(api.request_count() == 0);
  }
  SECTION("accepted with one URL per app, one URL for all, or --no-verify") {
    // An unknown context fails right after the check, so passing it shows as that error.
    const auto args = GENERATE(
        std::vector<std::string>{"--probe-url", "go-app=http://go.apps.test", "--probe-url",
                                 "node-app=http://node.apps.test", "go-app", "node-app"},
        std::vector<std::string>{"--probe-url", "http://apps.test", "go-app", "node-app"},
        std::vector<std::string>{"--no-verify", "go-app", "node-app"});
    CAPTURE(args);
    auto full = with(args);
    full.insert(full.begin(), {"--context", "nope"});
    const auto result = run_cli(full, repo, environment);
    CHECK(result.code == 2);
    CHECK_THAT(result.err, Catch::Contains("context \"nope\" not found"));
  }
  SECTION("local deploys and dry runs do not need one") {
    CHECK(run_cli(with({"--dry-run", "go-app"}), repo, environment).code == 0);
    CHECK(run_cli({"--dry-run", "go-app"}, repo, environment).code == 0);
  }
}

TEST_CASE("an exec credential plugin runs once for a two-app deploy", "[cli][exec]") {
  const FixtureRepo repo;
  FakeApiServer api;
  TempDir dir;
  // Counts its runs in a file, like an EKS or OIDC plugin that would prompt or hit an IdP.
  const auto runs = dir.path() / "plugin-runs";
  const auto plugin =
      dir.write("plugin",
                "#!/bin/sh\necho run >> '" + runs.string() +
                    "'\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
                    "\"ExecCredential\",\"status\":{\"token\":\"fake-token\"}}'\n",
                true);
  auto kubeconfig = json::parse(deployapps::testing::read_file(api.write_kubeconfig(dir)));
  kubeconfig["users"][0]["user"] = {{"exec",
                                     {{"apiVersion", "client.authentication.k8s.io/v1"},
                                      {"command", plugin.string()},
                                      {"interactiveMode", "Never"}}}};
  const auto path = dir.write("exec-kubeconfig", kubeconfig.dump());
  const std::string digest = "sha256:" + std::string(64, 'c');
  const auto result =
      run_cli({"--tag", "v1", "--digest", digest, "--no-wait", "go-app", "node-app"}, repo,
              {{"KUBECONFIG", path.string()}});
  CAPTURE(result.err);
  REQUIRE(result.code == 0);
  // One client for the plan and one per app share one credential source.
  const auto text = deployapps::testing::read_file(runs);
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
}

namespace {

// A fake API that already holds v1 of go-app (applied, not followed), for tests of the next
// deploy over it.
struct FakeWithV1 {
  explicit FakeWithV1(const FixtureRepo& repo, char digest_fill)
      : environment{{"KUBECONFIG", api.write_kubeconfig(dir).string()}},
        digest("sha256:" + std::string(64, digest_fill)) {
    REQUIRE(run_cli({"--tag", "v1", "--digest", digest, "--no-wait", "go-app"}, repo, environment)
                .code == 0);
  }
  FakeApiServer api;
  TempDir dir;
  std::map<std::string, std::string> environment;
  std::string digest;
  const std::string path = "/apis/apps/v1/namespaces/go-app/deployments/go-app";
};

}  // namespace

TEST_CASE("a running version that already fails the probe is not deployed over", "[cli][probe]") {
  const FixtureRepo repo;
  FakeWithV1 fake(repo, 'e');
  auto& api = fake.api;
  const auto& path = fake.path;
  // v1 serves (one available replica), so the in-flight checks run; but nothing listens at the
  // probe's URL, so every request fails before v2 is applied.
  auto live = api.stored(path).value();
  live["status"] = {{"observedGeneration", 1}, {"replicas", 2}, {"availableReplicas", 2}};
  api.override_path("GET", path, [live](const deployapps::testing::ReceivedRequest&) {
    return deployapps::testing::json_reply(200, live);
  });
  const auto before = api.requests().size();
  const auto result = run_cli(
      {"--tag", "v2", "--digest", fake.digest, "--probe-url", "http://127.0.0.1:1/", "go-app"},
      repo, fake.environment);
  CAPTURE(result.out, result.err);
  CHECK(result.code == 1);
  CHECK_THAT(result.out, Catch::Contains("already fails requests, before anything was applied") &&
                             Catch::Contains("nothing was applied"));
  // Only dry runs reached the cluster (besides the deploy lock's Lease): no object was changed.
  const auto requests = api.requests();
  std::size_t dry_runs = 0;
  for (auto it = requests.begin() + static_cast<std::ptrdiff_t>(before); it != requests.end();
       ++it) {
    if (it->method != "GET" && it->path.find("/leases") == std::string::npos) {
      CAPTURE(it->method, it->path);
      CHECK(it->query.count("dryRun") == 1);
      ++dry_runs;
    }
  }
  CHECK(dry_runs >= 1);
  CHECK(deployapps::template_version(api.stored(path).value()["spec"]["template"]) == "v1");
}

TEST_CASE("an error after the Deployment was applied is a failed rollout and is rolled back",
          "[cli][rollback]") {
  const FixtureRepo repo;
  std::atomic<bool> restored{false};
  json live;
  json complete;
  FakeWithV1 fake(repo, 'f');
  // v2 applies, then following it fails: this fake cannot list or watch Deployments (404), as an
  // API that breaks after the apply would (or an RBAC Role without list and watch). The rollback
  // is then followed by reading the Deployment, which reports v1 complete once it is restored.
  live = fake.api.stored(fake.path).value();
  complete = live;
  complete["status"] = {
      {"observedGeneration", 1}, {"replicas", 2}, {"updatedReplicas", 2}, {"availableReplicas", 2}};
  fake.api.on_request([&](const deployapps::testing::ReceivedRequest& request) {
    const auto type = request.headers.find("content-type");
    if (request.method == "PATCH" && type != request.headers.end() &&
        type->second.find("json-patch") != std::string::npos) {
      restored = true;
    }
  });
  fake.api.override_path("GET", fake.path, [&](const deployapps::testing::ReceivedRequest&) {
    return deployapps::testing::json_reply(200, restored ? complete : live);
  });
  const auto result = run_cli({"--tag", "v2", "--digest", fake.digest, "--no-verify", "go-app"},
                              repo, fake.environment);
  CAPTURE(result.out, result.err);
  CHECK(result.code == 1);
  CHECK_THAT(result.out, Catch::Contains("following the rollout failed") &&
                             Catch::Contains("rolled back to the pre-apply pod template (version "
                                             "v1)") &&
                             Catch::Contains("version v1 is running and healthy"));
  // The pre-apply template is back, not v2 left rolling out unwatched.
  CHECK(deployapps::template_version(fake.api.stored(fake.path).value()["spec"]["template"]) ==
        "v1");
}

TEST_CASE("a stalled API cannot hold a deploy or its rollback past --timeout", "[cli][budget]") {
  const FixtureRepo repo;
  FakeWithV1 fake(repo, '1');
  // v2 applies; then the API stops answering the rollout's lists and the rollback's PATCH, as an
  // apiserver that stalls mid-rollout does. Before the budget, the rollback had 3 min of its own.
  fake.api.stall_when([](const deployapps::testing::ReceivedRequest& request) {
    const auto type = request.headers.find("content-type");
    return (request.method == "GET" &&
            request.path == "/apis/apps/v1/namespaces/go-app/deployments") ||
           (request.method == "PATCH" && type != request.headers.end() &&
            type->second.find("json-patch") != std::string::npos);
  });
  const auto started = std::chrono::steady_clock::now();
  const auto result =
      run_cli({"--tag", "v2", "--digest", fake.digest, "--no-verify", "--timeout", "6s", "go-app"},
              repo, fake.environment);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  CAPTURE(result.out, result.err);
  CHECK(result.code == 1);
  CHECK(elapsed < std::chrono::seconds(6 + 5));
  CHECK_THAT(result.out, Catch::Contains("failed restoring the pre-apply template") &&
                             Catch::Contains("kubectl -n go-app rollout status deployment/go-app"));
}

namespace {

// v1 serving on the fake API (its Deployment complete, as the lists report it), a Service
// template changed since v1 was applied, and a real HTTP server for the in-flight probe that
// starts failing when `breaks` is set and the changed Service is applied.
struct ServiceChangeOverV1 {
  explicit ServiceChangeOverV1(const FixtureRepo& repo, char digest_fill, bool breaks)
      : fake(repo, digest_fill), server([this](const deployapps::probe::testing::ServerRequest&) {
          return broken ? deployapps::probe::testing::Reply::status_503
                        : deployapps::probe::testing::Reply::ok;
        }) {
    auto live = fake.api.stored(fake.path).value();
    live["status"] = {{"observedGeneration", 1},
                      {"replicas", 2},
                      {"updatedReplicas", 2},
                      {"availableReplicas", 2}};
    fake.api.override_path("GET", fake.path, [live](const deployapps::testing::ReceivedRequest&) {
      return deployapps::testing::json_reply(200, live);
    });
    const json list = {{"metadata", {{"resourceVersion", "1"}}}, {"items", json::array({live})}};
    fake.api.override_path("GET", "/apis/apps/v1/namespaces/go-app/deployments",
                           [list](const deployapps::testing::ReceivedRequest&) {
                             return deployapps::testing::json_reply(200, list);
                           });
    const json empty = {{"metadata", {{"resourceVersion", "1"}}}, {"items", json::array()}};
    for (const auto* collection :
         {"/apis/apps/v1/namespaces/go-app/replicasets", "/api/v1/namespaces/go-app/pods"}) {
      fake.api.override_path("GET", collection,
                             [empty](const deployapps::testing::ReceivedRequest&) {
                               return deployapps::testing::json_reply(200, empty);
                             });
    }
    if (breaks) {
      fake.api.on_request([this](const deployapps::testing::ReceivedRequest& request) {
        if (request.method == "PATCH" && request.path == service_path &&
            request.query.count("dryRun") == 0) {
          broken = true;
        }
      });
    }
    service_before = fake.api.stored(service_path).value();
    // A change to the Service alone: the pod template stays v1's.
    const auto service = repo.root() / "manifests" / "templates" / "service.yaml";
    auto text = deployapps::testing::read_file(service);
    const std::string spec = "\nspec:\n";
    REQUIRE(text.find(spec) != std::string::npos);
    text.replace(text.find(spec), spec.size(),
                 "\n  annotations:\n    deploy-apps.test/changed: \"yes\"\nspec:\n");
    std::ofstream(service) << text;
  }

  Result run(const FixtureRepo& repo) const {
    return run_cli({"--tag", "v1", "--digest", fake.digest, "--probe-url", server.url(), "go-app"},
                   repo, fake.environment);
  }

  FakeWithV1 fake;
  std::atomic<bool> broken{false};
  deployapps::probe::testing::TestServer server;
  const std::string service_path = "/api/v1/namespaces/go-app/services/go-app";
  json service_before;
};

}  // namespace

TEST_CASE("a change to the Service alone is reported and checked by the in-flight probe",
          "[cli][objects]") {
  const FixtureRepo repo;
  ServiceChangeOverV1 change(repo, '2', false);
  const auto result = change.run(repo);
  CAPTURE(result.out, result.err);
  CHECK(result.code == 0);
  CHECK_THAT(result.out, Catch::Contains("changed without new pods: service/go-app; checking "
                                         "traffic") &&
                             !Catch::Contains("unchanged: "));
  CHECK(change.server.requests() > 0);
  const auto service = change.fake.api.stored(change.service_path).value();
  CHECK(service.value(json::json_pointer("/metadata/annotations/deploy-apps.test~1changed"),
                      std::string()) == "yes");
}

TEST_CASE("a change to the Service that breaks traffic is restored", "[cli][objects]") {
  const FixtureRepo repo;
  ServiceChangeOverV1 change(repo, '3', true);
  const auto result = change.run(repo);
  CAPTURE(result.out, result.err);
  CHECK(result.code == 1);
  CHECK(change.broken);
  CHECK_THAT(result.out, Catch::Contains("in-flight check") &&
                             Catch::Contains("service/go-app restored to its pre-apply state"));
  // The Service is exactly as before the apply; the pod template was never touched.
  CHECK(deployapps::same_object_ignoring_server_fields(
      change.fake.api.stored(change.service_path).value(), change.service_before));
  CHECK_FALSE(change.fake.api.stored(change.service_path)
                  .value()
                  .contains(json::json_pointer("/metadata/annotations")));
  CHECK(deployapps::template_version(
            change.fake.api.stored(change.fake.path).value()["spec"]["template"]) == "v1");
}

TEST_CASE("a first deploy whose apply is refused rolls nothing back", "[cli][rollback]") {
  // Seen with an RBAC Role lacking a verb: the dry run is refused, nothing exists yet, and the
  // deployer said "the apply failed after the Deployment changed" and tried to restore it (404).
  const FixtureRepo repo;
  FakeApiServer api;
  TempDir dir;
  const auto path = std::string("/apis/apps/v1/namespaces/go-app/deployments/go-app");
  api.override_path("PATCH", path, [](const deployapps::testing::ReceivedRequest&) {
    return deployapps::testing::json_reply(
        403, {{"kind", "Status"},
              {"status", "Failure"},
              {"reason", "Forbidden"},
              {"code", 403},
              {"message", "deployments.apps \"go-app\" is forbidden: cannot patch resource"}});
  });
  const std::string digest = "sha256:" + std::string(64, '4');
  const auto result = run_cli({"--tag", "v1", "--digest", digest, "--no-verify", "go-app"}, repo,
                              {{"KUBECONFIG", api.write_kubeconfig(dir).string()}});
  CAPTURE(result.out, result.err);
  CHECK(result.code == 1);
  CHECK_THAT(result.out, Catch::Contains("cannot patch resource") &&
                             !Catch::Contains("after the Deployment changed") &&
                             !Catch::Contains("rolled back") && !Catch::Contains("rollback"));
  for (const auto& request : api.requests()) {
    const auto type = request.headers.find("content-type");
    CHECK_FALSE((type != request.headers.end() && type->second == "application/json-patch+json"));
  }
}

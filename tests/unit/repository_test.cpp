// Finding the repository from the working directory, versions unique per content, and reading
// the local cluster's status.
#include <catch2/catch.hpp>

#include "deployapps/deploy.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/subprocess.hpp"
#include "support/temp_dir.hpp"

using deployapps::ProcessEnvironment;
using deployapps::testing::FixtureRepo;
using deployapps::testing::TempDir;
namespace fs = std::filesystem;

namespace {

void git(const fs::path& repo, std::vector<std::string> args) {
  deployapps::ProcessOptions options;
  options.argv = {
      "git", "-C", repo.string(), "-c", "user.name=test", "-c", "user.email=test@example.invalid"};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  const auto result = deployapps::run_process(options);
  INFO(result.stderr_text);
  REQUIRE(result.exit_code == 0);
}

std::string commit_of(const fs::path& repo) {
  deployapps::ProcessOptions options;
  options.argv = {"git", "-C", repo.string(), "rev-parse", "--short=12", "HEAD"};
  auto text = deployapps::run_process(options).stdout_text;
  return text.substr(0, text.find('\n'));
}

// A committed fixture repository.
void commit_all(const FixtureRepo& repo) {
  git(repo.root(), {"init", "-q"});
  git(repo.root(), {"add", "-A"});
  git(repo.root(), {"commit", "-q", "-m", "fixture"});
}

}  // namespace

TEST_CASE("the repository is found from the working directory upward", "[repository]") {
  const FixtureRepo repo;
  const ProcessEnvironment none(std::map<std::string, std::string>{});
  CHECK(deployapps::default_repo_root(none, repo.root()) == fs::canonical(repo.root()));
  CHECK(deployapps::default_repo_root(none, repo.root() / "apps" / "go-app") ==
        fs::canonical(repo.root()));
  const TempDir elsewhere;
  CHECK_THROWS_AS(deployapps::default_repo_root(none, elsewhere.path()), deployapps::UsageError);
  CHECK_THROWS_WITH(deployapps::default_repo_root(none, elsewhere.path()),
                    Catch::Contains("--repo"));
  const ProcessEnvironment pinned({{"DEPLOY_APPS_ROOT", repo.root().string()}});
  CHECK(deployapps::default_repo_root(pinned, elsewhere.path()) == repo.root());
}

TEST_CASE("an app's version is the commit, or names the modified content", "[repository]") {
  const FixtureRepo repo;
  commit_all(repo);
  const auto commit = commit_of(repo.root());
  REQUIRE(commit.size() == 12);
  CHECK(deployapps::default_image_tag(repo.root(), "go-app") == commit);

  SECTION("a change elsewhere keeps the commit") {
    repo.dir().write("README.md", "changed\n");
    CHECK(deployapps::default_image_tag(repo.root(), "go-app") == commit);
  }
  SECTION("two different uncommitted trees never share a version") {
    repo.dir().write("apps/go-app/main.go", "package main // one\n");
    const auto first = deployapps::default_image_tag(repo.root(), "go-app");
    CHECK(first.rfind(commit + "-dirty-", 0) == 0);
    CHECK(first.size() == commit.size() + 7 + 12);
    // Same content, same version; other content, another version.
    CHECK(deployapps::default_image_tag(repo.root(), "go-app") == first);
    repo.dir().write("apps/go-app/main.go", "package main // two\n");
    const auto second = deployapps::default_image_tag(repo.root(), "go-app");
    CHECK(second.rfind(commit + "-dirty-", 0) == 0);
    CHECK(second != first);
    // The other app's content did not change.
    CHECK(deployapps::default_image_tag(repo.root(), "node-app") == commit);
  }
  SECTION("an untracked file and a manifest change count") {
    repo.dir().write("apps/go-app/new.txt", "x\n");
    const auto untracked = deployapps::default_image_tag(repo.root(), "go-app");
    CHECK(untracked != commit);
    fs::remove(repo.root() / "apps" / "go-app" / "new.txt");
    repo.dir().write("manifests/values.yaml", "# changed\n");
    const auto manifests = deployapps::default_image_tag(repo.root(), "go-app");
    CHECK(manifests != commit);
    CHECK(manifests != untracked);
  }
}

TEST_CASE("outside git the version is dev", "[repository]") {
  const FixtureRepo repo;
  CHECK(deployapps::default_image_tag(repo.root(), "go-app") == "dev");
}

TEST_CASE("the local cluster's status names what is down", "[repository]") {
  const std::string healthy =
      "etcd                     running (pid 10)\n"
      "kube-scheduler           running (pid 12)\n"
      "ingress: http://127.0.0.1:8088 answers\n";
  CHECK(deployapps::local_cluster_problems(healthy).empty());
  const std::string broken =
      "etcd                     running (pid 10)\n"
      "kube-controller-manager  NOT running\n"
      "kube-scheduler           NOT running\n"
      "NAME        STATUS     ROLES    AGE   VERSION\n"
      "127.0.0.1   NotReady   <none>   5m    v1.35.4\n"
      "ingress: http://127.0.0.1:8088 does NOT answer\n";
  const auto problems = deployapps::local_cluster_problems(broken);
  REQUIRE(problems.size() == 4);
  CHECK(problems[0] == "kube-controller-manager NOT running");
  CHECK(problems[1] == "kube-scheduler NOT running");
  CHECK(problems[2].find("NotReady") != std::string::npos);
  CHECK(problems[3] == "ingress: http://127.0.0.1:8088 does NOT answer");
}

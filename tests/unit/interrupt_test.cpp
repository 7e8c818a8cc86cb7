// Ctrl-C against the real binary, as a user presses it: the process gets SIGINT while it waits
// on a stalled API server. In-process tests cannot do this (the handler ends the process).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "support/fake_api.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using deployapps::testing::FakeApiServer;
using deployapps::testing::FixtureRepo;
using deployapps::testing::ReceivedRequest;
using deployapps::testing::ServerReply;
using deployapps::testing::TempDir;

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX, for posix_spawn

namespace {

ServerReply stall(const ReceivedRequest& /*request*/) {
  ServerReply reply;
  reply.hang = true;
  return reply;
}

struct Exit {
  bool exited = false;  // false: killed by a signal, or still running at the limit
  int code = -1;
  std::chrono::steady_clock::duration after_last_signal{};
  std::string err;
  std::string out;
};

struct Signal {
  std::chrono::milliseconds at;  // from the start
  int number = SIGINT;
};

// Runs deploy-apps with `args`, sends each of `signals`, and waits at most `limit` after the
// last one for it to end (then kills it).
Exit run_interrupted(const std::vector<std::string>& args, const FixtureRepo& repo,
                     const std::filesystem::path& kubeconfig, const std::vector<Signal>& signals,
                     std::chrono::seconds limit) {
  const TempDir dir;
  const auto out_path = dir.path() / "stdout";
  const auto err_path = dir.path() / "stderr";
  std::vector<std::string> argv_text{DEPLOY_APPS_BINARY};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& arg : argv_text) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  std::vector<std::string> env_text{"DEPLOY_APPS_ROOT=" + repo.root().string(),
                                    "HOME=" + (repo.root() / "home").string(),
                                    "DEPLOY_APPS_STATE=" + (repo.root() / "state").string(),
                                    "KUBECONFIG=" + kubeconfig.string(), "PATH=/usr/bin:/bin"};
  std::vector<char*> envp;
  for (auto& variable : env_text) {
    envp.push_back(variable.data());
  }
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  const int spawned =
      posix_spawn(&pid, argv_text.front().c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(spawned == 0);
  const auto started = std::chrono::steady_clock::now();
  for (const auto& signal : signals) {
    std::this_thread::sleep_until(started + signal.at);
    ::kill(pid, signal.number);
  }
  const auto last = std::chrono::steady_clock::now();
  Exit result;
  int status = 0;
  for (;;) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      result.exited = WIFEXITED(status);
      result.code = result.exited ? WEXITSTATUS(status) : -WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() - last > limit) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  result.after_last_signal = std::chrono::steady_clock::now() - last;
  result.err = deployapps::testing::read_file(err_path);
  result.out = deployapps::testing::read_file(out_path);
  return result;
}

const std::string kDigest = "sha256:" + std::string(64, 'd');

}  // namespace

TEST_CASE("Ctrl-C before anything is applied ends the command at once, exit 130",
          "[interrupt][cli]") {
  // SIGTERM and SIGHUP (a supervisor, a closed terminal) too.
  const int number = GENERATE(SIGINT, SIGTERM, SIGHUP);
  CAPTURE(number);
  const FixtureRepo repo;
  FakeApiServer api;
  const TempDir dir;
  // Discovery stalls: the deploy waits on the API, with --timeout 60s to spare.
  api.override_path("GET", "/api/v1", stall);
  const auto result = run_interrupted(
      {"--tag", "v1", "--digest", kDigest, "--timeout", "60s", "-o", "json", "go-app"}, repo,
      api.write_kubeconfig(dir), {{1500ms, number}}, 10s);
  CAPTURE(result.err, result.out);
  CHECK(result.exited);  // not killed by the signal's default action
  CHECK(result.code == 130);
  CHECK(result.after_last_signal < 3s);
  CHECK_THAT(result.err, Catch::Contains("nothing changed"));
  const auto document = nlohmann::json::parse(result.out);  // -o json: one document, still
  CHECK(document["result"] == "interrupted");
}

TEST_CASE("a second Ctrl-C exits 130 at once, naming what may be left", "[interrupt][cli]") {
  const FixtureRepo repo;
  FakeApiServer api;
  const TempDir dir;
  // The rollout's first read of the live Deployment stalls: the first Ctrl-C is only noted (the
  // deploy would stop cleanly once the API answers); the second must not wait for that.
  api.override_path("GET", "/apis/apps/v1/namespaces/go-app/deployments/go-app", stall);
  const auto result =
      run_interrupted({"--tag", "v1", "--digest", kDigest, "--timeout", "60s", "go-app"}, repo,
                      api.write_kubeconfig(dir), {{1500ms}, {2500ms}}, 10s);
  CAPTURE(result.err);
  CHECK(result.exited);
  CHECK(result.code == 130);
  CHECK(result.after_last_signal < 3s);  // not the 60 s --timeout
  CHECK_THAT(result.err, Catch::Contains("second Ctrl-C") &&
                             Catch::Contains("kubectl -n go-app rollout status deployment/go-app"));
}

TEST_CASE("a SIGTERM after a Ctrl-C does not end the deploy at once", "[interrupt][cli]") {
  const FixtureRepo repo;
  FakeApiServer api;
  const TempDir dir;
  // As GitHub cancels a job: SIGINT, then SIGTERM (7.5 s later there; 1 s here). The read of
  // the live Deployment stalls, so the deploy is still stopping when the SIGTERM comes; it must
  // go on until that read's deadline (the rollout's 8 s of --timeout 12s), not exit at once as
  // after a second Ctrl-C.
  api.override_path("GET", "/apis/apps/v1/namespaces/go-app/deployments/go-app", stall);
  const auto result =
      run_interrupted({"--tag", "v1", "--digest", kDigest, "--timeout", "12s", "go-app"}, repo,
                      api.write_kubeconfig(dir), {{1500ms, SIGINT}, {2500ms, SIGTERM}}, 20s);
  CAPTURE(result.err, result.out);
  CHECK(result.exited);
  CHECK(result.code != 0);
  CHECK(result.after_last_signal > 3s);  // the budget ended it, about 5.5 s after the SIGTERM
  CHECK_THAT(result.err, !Catch::Contains("second Ctrl-C"));
  // A Ctrl-C after the SIGTERM still ends it at once.
  const auto insisted = run_interrupted(
      {"--tag", "v1", "--digest", kDigest, "--timeout", "60s", "go-app"}, repo,
      api.write_kubeconfig(dir), {{1500ms, SIGINT}, {2500ms, SIGTERM}, {3500ms, SIGINT}}, 10s);
  CAPTURE(insisted.err);
  CHECK(insisted.code == 130);
  CHECK(insisted.after_last_signal < 3s);
  CHECK_THAT(insisted.err, Catch::Contains("second Ctrl-C"));
}

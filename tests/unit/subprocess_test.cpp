#include <catch2/catch.hpp>

#include "deployapps/subprocess.hpp"

using namespace std::chrono_literals;
using deployapps::Deadline;
using deployapps::ProcessOptions;
using deployapps::run_process;

TEST_CASE("a child's output, exit code and environment", "[subprocess]") {
  ProcessOptions options;
  options.argv = {"sh", "-c", "echo out1; echo err1 >&2; printf 'x=%s' \"$EXTRA\"; exit 3"};
  options.environment = {{"EXTRA", "value"}};
  std::vector<std::string> lines;
  options.on_stdout_line = [&](std::string_view line) { lines.emplace_back(line); };
  const auto result = run_process(options);
  CHECK(result.exit_code == 3);
  CHECK_FALSE(result.timed_out);
  CHECK(result.stdout_text == "out1\nx=value");
  CHECK(result.stderr_text == "err1\n");
  CHECK(lines == std::vector<std::string>{"out1", "x=value"});
}

TEST_CASE("a child past its deadline is killed", "[subprocess]") {
  ProcessOptions options;
  options.argv = {"sleep", "30"};
  options.deadline = Deadline::after(200ms);
  const auto started = std::chrono::steady_clock::now();
  const auto result = run_process(options);
  CHECK(result.timed_out);
  CHECK(result.exit_code == 128 + 9);
  CHECK(std::chrono::steady_clock::now() - started < 10s);
}

TEST_CASE("a missing command is a SpawnError", "[subprocess]") {
  ProcessOptions options;
  options.argv = {"deploy-apps-no-such-command"};
  CHECK_THROWS_AS(run_process(options), deployapps::SpawnError);
  try {
    (void)run_process(options);
  } catch (const deployapps::SpawnError& error) {
    CHECK(error.error_number() == ENOENT);
  }
}

TEST_CASE("stdin is /dev/null unless inherited", "[subprocess]") {
  ProcessOptions options;
  options.argv = {"sh", "-c", "cat; echo done"};
  options.deadline = Deadline::after(10s);
  const auto result = run_process(options);
  CHECK(result.stdout_text == "done\n");
}

// `deploy-apps probe URL`: the subcommand's wiring and exit codes, against a real local server.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <sstream>

#include "deployapps/cli.hpp"
#include "probe_test_server.hpp"
#include "support/temp_dir.hpp"

using deployapps::probe::testing::Reply;
using deployapps::probe::testing::ServerRequest;
using deployapps::probe::testing::TestServer;
using deployapps::testing::read_file;
using deployapps::testing::TempDir;

namespace {

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result run_cli(std::vector<std::string> args) {
  std::ostringstream out;
  std::ostringstream err;
  const int code = deployapps::run(
      args, out, err, deployapps::ProcessEnvironment(std::map<std::string, std::string>{}));
  return {code, out.str(), err.str()};
}

// A short run: the test server paces stream lines 5 ms apart and honours ?sleep=.
std::vector<std::string> quick_probe(const std::string& url) {
  return {"probe", url, "--duration", "1s", "--long-sleep", "100ms", "--stream-seconds", "2"};
}

}  // namespace

TEST_CASE("probe: a clean run exits 0 and writes the JSON report", "[cli][probe-cli]") {
  TestServer server;
  server.set_version("v1");
  const TempDir dir;
  auto args = quick_probe(server.url());
  const auto report_path = dir.path() / "probe.json";
  args.insert(args.end(), {"--host", "go-app.localhost", "--json", report_path.string()});
  const auto result = run_cli(args);
  CAPTURE(result.err);
  CHECK(result.code == 0);
  CHECK_THAT(result.out, Catch::Contains("0 failed") && Catch::Contains("v1"));
  CHECK(server.last_host_header() == "go-app.localhost");
  const auto report = nlohmann::json::parse(read_file(report_path));
  CHECK(report["records"].size() == server.requests());
  CHECK(report["probe"]["host_header"] == "go-app.localhost");
}

TEST_CASE("probe: failed requests exit 1", "[cli][probe-cli]") {
  TestServer server([](const ServerRequest& request) {
    return request.on_connection == 2 ? Reply::status_503 : Reply::ok;
  });
  const auto result = run_cli(quick_probe(server.url()));
  CHECK(result.code == 1);
  CHECK_THAT(result.err, Catch::Contains("requests failed"));
}

TEST_CASE("probe: bad input exits 2 before any traffic", "[cli][probe-cli]") {
  TestServer server;
  const auto [args, message] = GENERATE_REF(table<std::vector<std::string>, std::string>({
      {{"probe", "ftp://127.0.0.1"}, "must start with http://"},
      {{"probe"}, "URL is required"},
      {{"probe", "http://127.0.0.1:1", "--duration", "soon"}, "invalid duration"},
      {{"probe", "http://127.0.0.1:1", "--chart", "x.gif"}, ".png or .svg"},
      {{"probe", "http://127.0.0.1:1", "--stream-seconds", "500"}, "500"},
      {{"go-app", "probe", "http://127.0.0.1:1"}, "probe takes no app names"},
  }));
  CAPTURE(args);
  const auto result = run_cli(args);
  CHECK(result.code == 2);
  CHECK_THAT(result.err, Catch::Contains(message));
  CHECK(server.requests() == 0);
}

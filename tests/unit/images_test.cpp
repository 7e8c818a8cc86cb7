// Image builds and digests: build-app-images run as a subprocess (a stand-in script here, the
// real one on the cluster stage), and the outputs of the real tools recorded on this machine.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "deployapps/images.hpp"
#include "support/temp_dir.hpp"

using deployapps::BuildError;
using deployapps::testing::read_file;
using deployapps::testing::TempDir;
using nlohmann::json;

namespace {

std::string fixture(const std::string& name) {
  return read_file(std::string(DEPLOY_APPS_TEST_SOURCE_DIR) + "/tests/unit/fixtures/images/" +
                   name);
}

constexpr const char* kDigest =
    "sha256:66a2de9b7368f5c25cac8b1012c3f6577c2505f5e354a32601950a250ed8fd2f";

}  // namespace

TEST_CASE("the digest comes from build-app-images' output", "[images]") {
  // Its real output (stderr and stdout) from a push to the local registry.
  const auto output = fixture("build-app-images-go-app.log");
  CHECK(deployapps::digest_from_build_output(output, "go-app") == kDigest);
  CHECK_FALSE(deployapps::digest_from_build_output(output, "node-app"));
  CHECK_FALSE(deployapps::digest_from_build_output("go-app=deploy-apps/go-app:abc\n", "go-app"));
}

TEST_CASE("the digest comes from docker manifest inspect", "[images]") {
  const auto inspected = json::parse(fixture("manifest-inspect-go-app.json"));
  CHECK(deployapps::digest_from_manifest_inspect(inspected, "x") == kDigest);
  // A multi-platform tag lists one descriptor per platform.
  auto other = inspected;
  other["Descriptor"]["platform"]["architecture"] = "arm64";
  other["Descriptor"]["digest"] = "sha256:" + std::string(64, 'a');
  CHECK(deployapps::digest_from_manifest_inspect(json::array({other, inspected}), "x") == kDigest);
  CHECK_THROWS_AS(deployapps::digest_from_manifest_inspect(json::object(), "x"), BuildError);
}

TEST_CASE("loopback registries", "[images]") {
  CHECK(deployapps::is_loopback_registry("127.0.0.1:5000"));
  CHECK(deployapps::is_loopback_registry("localhost:5000/team"));
  CHECK(deployapps::is_loopback_registry("[::1]:5000"));
  CHECK_FALSE(deployapps::is_loopback_registry("registry.example.com"));
  CHECK_FALSE(deployapps::is_loopback_registry("10.0.0.1:5000"));
}

TEST_CASE("a build streams its output and returns the pushed digest", "[images]") {
  const TempDir dir;
  const auto script = dir.write("build",
                                fmt::format(R"(#!/bin/sh
echo "step 1 for $1" >&2
echo "tag is $APP_TAG" >&2
echo "$1=127.0.0.1:5000/$1@{}"
)",
                                            kDigest),
                                true);
  deployapps::ImageRequest request;
  request.app = "go-app";
  request.tag = "abc123-dirty";
  request.build_command = {script.string()};
  std::vector<std::string> lines;
  const auto digest = deployapps::build_and_push_image(
      request, [&](std::string_view line) { lines.emplace_back(line); });
  CHECK(digest == kDigest);
  CHECK(std::find(lines.begin(), lines.end(), "step 1 for go-app") != lines.end());
  CHECK(std::find(lines.begin(), lines.end(), "tag is abc123-dirty") != lines.end());
}

TEST_CASE("a failed build ends with the tail of its output", "[images]") {
  const TempDir dir;
  const auto script = dir.write("build", R"(#!/bin/sh
i=0
while [ $i -lt 40 ]; do echo "line $i" >&2; i=$((i + 1)); done
echo "npm ERR! missing package" >&2
exit 3
)",
                                true);
  deployapps::ImageRequest request;
  request.app = "node-app";
  request.tag = "t";
  request.build_command = {script.string()};
  CHECK_THROWS_AS(deployapps::build_and_push_image(request, {}), BuildError);
  try {
    (void)deployapps::build_and_push_image(request, {});
  } catch (const BuildError& error) {
    const std::string message = error.what();
    CHECK_THAT(message, Catch::Contains("node-app: the image build failed (exit 3)"));
    CHECK_THAT(message, Catch::Contains("npm ERR! missing package") && Catch::Contains("line 39"));
    CHECK_THAT(message, !Catch::Contains("line 10\n"));  // only the last lines
  }
}

TEST_CASE("a build that prints no digest is an error", "[images]") {
  const TempDir dir;
  const auto script = dir.write("build", "#!/bin/sh\necho built\n", true);
  deployapps::ImageRequest request;
  request.app = "go-app";
  request.build_command = {script.string()};
  CHECK_THROWS_WITH(deployapps::build_and_push_image(request, {}),
                    Catch::Contains("printed no \"go-app=<registry>/go-app@sha256:...\" line"));
}

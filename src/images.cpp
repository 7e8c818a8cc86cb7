#include "deployapps/images.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/asio/ip/address.hpp>
#include <deque>
#include <nlohmann/json.hpp>
#include <regex>

#include "deployapps/encoding.hpp"
#include "deployapps/subprocess.hpp"

namespace deployapps {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::regex& digest_pattern() {
  static const std::regex pattern("sha256:[0-9a-f]{64}");
  return pattern;
}

std::string docker_command(const ImageRequest& request) {
  if (!request.docker.empty()) {
    return request.docker;
  }
  return fs::exists("/usr/bin/docker") ? "/usr/bin/docker" : "docker";
}

// Keeps the last lines of a process's output for the error message.
class OutputTail {
 public:
  void add(std::string_view line) {
    lines_.emplace_back(line);
    if (lines_.size() > kBuildErrorTailLines) {
      lines_.pop_front();
    }
  }
  [[nodiscard]] std::string text() const {
    std::string result;
    for (const auto& line : lines_) {
      result += "\n  | " + line;
    }
    return result;
  }

 private:
  std::deque<std::string> lines_;
};

}  // namespace

std::vector<std::string> default_build_command(const fs::path& repo_root,
                                               const std::string& registry) {
  return {(repo_root / "scripts" / "build-app-images").string(), "--push", registry};
}

bool is_loopback_registry(std::string_view registry) {
  auto host = registry.substr(0, registry.find('/'));
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.find(']') - 1);
  } else if (const auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host == "localhost") {
    return true;
  }
  boost::system::error_code error;
  const auto address = boost::asio::ip::make_address(std::string(host), error);
  return !error && address.is_loopback();
}

std::optional<std::string> digest_from_build_output(std::string_view output, std::string_view app) {
  const std::string prefix = std::string(app) + "=";
  std::optional<std::string> digest;
  while (!output.empty()) {
    const auto newline = output.find('\n');
    const auto line = trim(output.substr(0, newline));
    output = newline == std::string_view::npos ? std::string_view{} : output.substr(newline + 1);
    if (line.substr(0, prefix.size()) != prefix) {
      continue;
    }
    const auto at = line.rfind('@');
    if (at == std::string_view::npos) {
      continue;
    }
    const std::string candidate(line.substr(at + 1));
    if (std::regex_match(candidate, digest_pattern())) {
      digest = candidate;  // the last one wins
    }
  }
  return digest;
}

std::string build_and_push_image(const ImageRequest& request, const OutputLineHandler& on_line) {
  ProcessOptions options;
  options.argv = request.build_command;
  options.argv.push_back(request.app);
  options.environment = {{"APP_TAG", request.tag}};
  options.deadline = request.deadline;
  OutputTail tail;
  const auto forward = [&](std::string_view line) {
    tail.add(line);
    if (on_line) {
      on_line(line);
    }
  };
  options.on_stdout_line = forward;
  options.on_stderr_line = forward;
  ProcessResult result;
  try {
    result = run_process(options);
  } catch (const SpawnError& error) {
    throw BuildError(fmt::format("{}: cannot run the image build ({}): {}", request.app,
                                 fmt::join(options.argv, " "), error.what()));
  }
  if (result.timed_out) {
    throw BuildError(fmt::format("{}: the image build ran past the deadline; last output:{}",
                                 request.app, tail.text()));
  }
  if (result.exit_code != 0) {
    throw BuildError(fmt::format("{}: the image build failed (exit {}); last output:{}",
                                 request.app, result.exit_code, tail.text()));
  }
  const auto digest = digest_from_build_output(result.stdout_text, request.app);
  if (!digest) {
    throw BuildError(fmt::format(
        "{}: the image build printed no \"{}=<registry>/{}@sha256:...\" line; last output:{}",
        request.app, request.app, request.app, tail.text()));
  }
  return *digest;
}

std::string digest_from_manifest_inspect(const json& inspected, std::string_view reference) {
  const auto digest_of = [](const json& entry) {
    return entry.value(json::json_pointer("/Descriptor/digest"), std::string());
  };
  std::string digest;
  if (inspected.is_object()) {
    digest = digest_of(inspected);
  } else if (inspected.is_array()) {
    for (const auto& entry : inspected) {
      const auto platform = entry.value(json::json_pointer("/Descriptor/platform"), json::object());
      if ((platform.value("os", "") == "linux" && platform.value("architecture", "") == "amd64") ||
          inspected.size() == 1) {
        digest = digest_of(entry);
        break;
      }
    }
  }
  if (!std::regex_match(digest, digest_pattern())) {
    throw BuildError(fmt::format("no image digest for {} in the registry's answer", reference));
  }
  return digest;
}

std::string resolve_image_digest(const ImageRequest& request) {
  const auto reference = fmt::format("{}/{}:{}", request.registry, request.app, request.tag);
  ProcessOptions options;
  options.argv = {docker_command(request), "manifest", "inspect", "--verbose"};
  if (is_loopback_registry(request.registry)) {
    options.argv.emplace_back("--insecure");  // a local registry speaks plain HTTP
  }
  options.argv.push_back(reference);
  options.deadline = request.deadline;
  ProcessResult result;
  try {
    result = run_process(options);
  } catch (const SpawnError& error) {
    throw BuildError(fmt::format("cannot run docker to look up {}: {}", reference, error.what()));
  }
  if (result.exit_code != 0) {
    const auto message = std::string(trim(result.stderr_text));
    if (message.find("no such manifest") != std::string::npos ||
        message.find("manifest unknown") != std::string::npos) {
      throw UsageError(fmt::format(
          "--no-build: the registry has no image {} (build it first, or drop --no-build)",
          reference));
    }
    throw BuildError(fmt::format("cannot look up {} in the registry: {}", reference, message));
  }
  const auto inspected = json::parse(result.stdout_text, nullptr, false);
  return digest_from_manifest_inspect(inspected, reference);
}

}  // namespace deployapps

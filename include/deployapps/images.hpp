// The apps' images: built with BuildKit and pushed by scripts/build-app-images (a subprocess),
// or, with --no-build, an existing tag looked up in the registry. Either way the deploy pins the
// image by its digest.
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "deployapps/errors.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

// The build or push failed; the message ends with the last lines of its output.
class BuildError : public Error {
 public:
  using Error::Error;
};

// Receives each line of a build's output (stdout and stderr) as it arrives.
using OutputLineHandler = std::function<void(std::string_view line)>;

struct ImageRequest {
  std::string app;
  std::string registry;  // host[:port][/path], e.g. 127.0.0.1:5000
  std::string tag;
  // The build command; the app is appended. Default: scripts/build-app-images --push REGISTRY.
  std::vector<std::string> build_command;
  // The docker CLI for registry lookups: $DOCKER when set, else Debian's /usr/bin/docker (it has
  // BuildKit), else the one on PATH (as scripts/lib/common.sh picks it).
  std::string docker;
  Deadline deadline = Deadline::never();
};

// How many lines of output a failed build's error message ends with.
inline constexpr std::size_t kBuildErrorTailLines = 25;

// The build command of a repository: <root>/scripts/build-app-images --push <registry>.
[[nodiscard]] std::vector<std::string> default_build_command(const std::filesystem::path& repo_root,
                                                             const std::string& registry);

// Builds and pushes the image tagged request.tag (APP_TAG) and returns its digest
// ("sha256:..."). Every output line goes to `on_line`. Throws BuildError.
[[nodiscard]] std::string build_and_push_image(const ImageRequest& request,
                                               const OutputLineHandler& on_line);

// The digest of REGISTRY/APP:TAG as the registry reports it (docker manifest inspect). Throws
// UsageError when the registry does not have the tag, BuildError when it cannot be asked.
[[nodiscard]] std::string resolve_image_digest(const ImageRequest& request);

// The digest in build-app-images' "<app>=<registry>/<app>@sha256:..." line, if any.
[[nodiscard]] std::optional<std::string> digest_from_build_output(std::string_view output,
                                                                  std::string_view app);

// The digest in `docker manifest inspect -v` output: one descriptor, or a list of per-platform
// ones (then linux/amd64 or the only one). Throws BuildError when there is none.
[[nodiscard]] std::string digest_from_manifest_inspect(const nlohmann::json& inspected,
                                                       std::string_view reference);

// True for registries on this machine (127.0.0.0/8, localhost, ::1): plain HTTP is fine there.
[[nodiscard]] bool is_loopback_registry(std::string_view registry);

}  // namespace deployapps

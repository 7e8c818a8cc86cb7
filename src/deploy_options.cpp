#include "deployapps/deploy_options.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <algorithm>
#include <regex>
#include <set>

#include "deployapps/errors.hpp"

namespace deployapps {

void validate_deploy_options(const DeployOptions& options) {
  if (options.min_requests > 0 && (options.no_verify || options.no_wait)) {
    throw UsageError(fmt::format("--min-requests needs the in-flight checks; drop {}",
                                 options.no_verify ? "--no-verify" : "--no-wait"));
  }
  // Without a probe URL outside --env local the rollout would be judged by readiness alone.
  if (options.environment != Environment::kProduction || options.no_verify || options.no_wait ||
      options.dry_run || options.server_dry_run) {
    return;
  }
  const auto& urls = options.probe_urls;
  if (std::any_of(urls.begin(), urls.end(),
                  [](const std::string& url) { return url.find('=') == std::string::npos; })) {
    return;  // one URL for every app
  }
  std::vector<std::string> missing;
  for (const auto& app : options.apps) {
    const auto prefix = app + "=";
    if (std::none_of(urls.begin(), urls.end(),
                     [&](const std::string& url) { return url.starts_with(prefix); })) {
      missing.push_back(app);
    }
  }
  if (!missing.empty()) {
    throw UsageError(fmt::format(
        "--env production needs the in-flight checks: no --probe-url for {} (give --probe-url "
        "APP=URL for each app, or --no-verify to deploy without the checks)",
        fmt::join(missing, ", ")));
  }
}

std::map<std::string, std::string> pinned_digests(const DeployOptions& options) {
  static const std::regex kDigest("sha256:[0-9a-f]{64}");
  std::optional<std::string> for_every_app;
  std::map<std::string, std::string> pinned;
  const std::set<std::string> deployed(options.apps.begin(), options.apps.end());
  for (const auto& text : options.digests) {
    const auto equals = text.find('=');
    const auto digest = equals == std::string::npos ? text : text.substr(equals + 1);
    if (!std::regex_match(digest, kDigest)) {
      throw UsageError(
          fmt::format("invalid --digest \"{}\": expected [APP=]sha256:<64 hex digits>", text));
    }
    if (equals == std::string::npos) {
      if (for_every_app) {
        throw UsageError("--digest without APP= is given more than once");
      }
      for_every_app = digest;
      continue;
    }
    const auto app = text.substr(0, equals);
    if (!deployed.contains(app)) {
      throw UsageError(fmt::format("--digest {}: {} is not being deployed", text, app));
    }
    if (!pinned.emplace(app, digest).second) {
      throw UsageError(fmt::format("--digest for {} is given more than once", app));
    }
  }
  if (options.digests.empty()) {
    return pinned;
  }
  std::vector<std::string> missing;
  for (const auto& app : options.apps) {
    if (!pinned.contains(app)) {
      if (for_every_app) {
        pinned.emplace(app, *for_every_app);
      } else {
        missing.push_back(app);
      }
    }
  }
  if (!missing.empty()) {
    throw UsageError(fmt::format(
        "--digest pins some apps but not {}: give --digest APP=sha256:... for each app (or a "
        "bare --digest for all), or deploy those apps in a run of their own",
        fmt::join(missing, ", ")));
  }
  return pinned;
}

}  // namespace deployapps

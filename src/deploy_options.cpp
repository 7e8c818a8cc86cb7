#include "deployapps/deploy_options.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <algorithm>

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

}  // namespace deployapps

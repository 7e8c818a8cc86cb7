// The deploy command: validate and render everything, then (unless --dry-run) resolve the
// cluster, plan against discovery and server-side apply each app.
//
// Part 2 adds image builds between rendering and applying, and rollout watching after it; part
// 3 adds the in-flight probe around the rollout. Each is a step of DeployCommand.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "deployapps/apply.hpp"
#include "deployapps/cli.hpp"
#include "deployapps/environment.hpp"
#include "deployapps/kubeconfig.hpp"
#include "deployapps/manifests.hpp"

namespace deployapps {

struct AppReport {
  std::string app;
  std::string namespace_name;
  std::string image;
  ApplyResult apply;
};

struct DeployReport {
  std::string mode;    // "apply", "server-dry-run"
  std::string target;  // the cluster, as described by its config
  std::vector<AppReport> apps;
};

[[nodiscard]] nlohmann::json to_json(const DeployReport& report);
void print_text(const DeployReport& report, std::ostream& out);

// The repository the apps come from: $DEPLOY_APPS_ROOT, else the source tree this binary was
// built from.
[[nodiscard]] std::filesystem::path default_repo_root(const ProcessEnvironment& environment);

// The image tag when --tag is not given: the short git commit, with "-dirty" when the working
// tree has changes; "dev" outside a git checkout.
[[nodiscard]] std::string default_image_tag(const std::filesystem::path& repo_root);

// Where the cluster comes from: --kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster, and
// last the project's local cluster (${DEPLOY_APPS_STATE}/cluster/kubeconfig).
[[nodiscard]] TargetOptions target_options(const DeployOptions& options,
                                           const ProcessEnvironment& environment);

class DeployCommand {
 public:
  DeployCommand(const DeployOptions& options, const ProcessEnvironment& environment,
                std::ostream& out)
      : options_(options), environment_(environment), out_(out) {}

  // Runs every step; throws deployapps::Error.
  void run();

 private:
  // Validates the options and renders every app; touches nothing.
  void prepare();
  void print_rendered() const;
  void apply_to_cluster();

  const DeployOptions& options_;
  const ProcessEnvironment& environment_;
  std::ostream& out_;
  Duration timeout_{};
  Deadline deadline_ = Deadline::never();
  std::vector<RenderedApp> rendered_;
};

}  // namespace deployapps

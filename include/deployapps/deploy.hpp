// The deploy command: validate and render everything, then (unless --dry-run) resolve the
// cluster, plan against discovery and server-side apply each app.
//
// Part 2 adds image builds between rendering and applying, and rollout watching after it; part
// 3 adds the in-flight probe around the rollout. Each is a step of DeployCommand.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "deployapps/apply.hpp"
#include "deployapps/budget.hpp"
#include "deployapps/deploy_lock.hpp"
#include "deployapps/deploy_options.hpp"
#include "deployapps/environment.hpp"
#include "deployapps/kubeconfig.hpp"
#include "deployapps/manifests.hpp"
#include "deployapps/rollout.hpp"

namespace deployapps {

struct AppReport {
  std::string app;
  std::string namespace_name;
  std::string image;
  ApplyResult apply;
  std::optional<RolloutReport> rollout;  // unset for a server dry run
  std::optional<LockOutcome> lock;       // unset when no lock was taken (a build failed)
};

struct DeployReport {
  std::string mode;    // "apply", "server-dry-run"
  std::string target;  // the cluster, as described by its config
  std::vector<AppReport> apps;
};

[[nodiscard]] nlohmann::json to_json(const DeployReport& report);
void print_text(const DeployReport& report, std::ostream& out);
// The table at the end of a deploy: app, old -> new version, result, duration, rolled back.
void print_summary(const DeployReport& report, std::ostream& out);

// The lines of `scripts/cluster status` output that name something down, e.g.
// "kube-scheduler NOT running"; empty when none does.
[[nodiscard]] std::vector<std::string> local_cluster_problems(std::string_view status_output);

// True when `dir` holds apps/ and manifests/values.yaml.
[[nodiscard]] bool is_deploy_apps_repository(const std::filesystem::path& dir);

// The repository the apps come from: $DEPLOY_APPS_ROOT, else `start` or its nearest parent that
// is one (as git finds its repository). Throws UsageError when there is none.
[[nodiscard]] std::filesystem::path default_repo_root(
    const ProcessEnvironment& environment,
    const std::filesystem::path& start = std::filesystem::current_path());

// An app's version (its image tag) when --tag is not given: the short git commit when the app's
// build context (apps/APP) and manifests/ are as committed, else
// "<commit>-dirty-<12 hex of SHA-256 over their files>", so two different trees never share a
// version; "dev" outside a git checkout.
[[nodiscard]] std::string default_image_tag(const std::filesystem::path& repo_root,
                                            const std::string& app);

// Where the cluster comes from: --kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster, and
// last the project's local cluster (${DEPLOY_APPS_STATE}/cluster/kubeconfig).
[[nodiscard]] TargetOptions target_options(const DeployOptions& options,
                                           const ProcessEnvironment& environment);

// True when nothing points at a cluster: no --kubeconfig, $KUBECONFIG, ~/.kube/config or
// in-cluster environment. Only then is the project's local cluster used (and started).
[[nodiscard]] bool no_cluster_configured(const TargetOptions& options);

// This run's name on the deploy locks: $USER (else the uid) at this host, with its pid.
[[nodiscard]] std::string run_identity(const ProcessEnvironment& environment);

class DeployCommand {
 public:
  // `out` gets the result (rendered manifests, the report); `err` the progress when the result
  // is JSON, so that stdout holds one JSON document.
  DeployCommand(const DeployOptions& options, const ProcessEnvironment& environment,
                std::ostream& out, std::ostream& err)
      : options_(options), environment_(environment), out_(out), err_(err) {}

  // Runs every step; throws deployapps::Error.
  void run();
  // True once the report went to `out` (a failure after it must not print a second document).
  [[nodiscard]] bool report_written() const noexcept { return report_written_; }

 private:
  // Validates the options and renders every app; touches nothing.
  void prepare();
  void print_rendered() const;
  void apply_to_cluster();
  // scripts/cluster status; when anything is down, says what and runs the idempotent `up`
  // (bounded by --cluster-timeout). Its kubeconfig becomes the target's last resort.
  void ensure_local_cluster(TargetOptions& target);
  void server_dry_run(KubeClient& client, const std::vector<std::vector<PlannedObject>>& plans,
                      const std::string& target);
  // Builds (or, with --no-build, looks up) every app's image and renders it pinned by digest.
  // Returns the apps whose build failed, with why.
  std::map<std::string, std::string> pin_images(Console& console);
  [[nodiscard]] std::optional<probe::Config> probe_config(const RenderedApp& app) const;
  [[nodiscard]] std::optional<IngressCheckSettings> ingress_check_settings(
      const RenderedApp& app) const;
  [[nodiscard]] RenderRequest render_request(const std::string& app) const;

  // Where progress goes: `out`, or `err` with -o json.
  [[nodiscard]] std::ostream& progress() const;

  const DeployOptions& options_;
  const ProcessEnvironment& environment_;
  std::ostream& out_;
  std::ostream& err_;
  bool report_written_ = false;
  Duration timeout_{};
  Duration cluster_timeout_{};
  Budget budget_ = Budget::unbounded();
  std::vector<RenderedApp> rendered_;
  std::unique_ptr<Repository> repository_;
  std::vector<ValueOverride> overrides_;
  std::map<std::string, std::string> tags_;            // app -> version (image tag)
  std::map<std::string, std::string> pinned_digests_;  // app -> --digest, when given
};

}  // namespace deployapps

// What one `deploy-apps` run is asked to do, as the core sees it: the CLI (cli.hpp) fills it
// in, and the deploy (deploy.hpp) reads it.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "deployapps/manifests.hpp"

namespace deployapps {

enum class OutputFormat { kText, kJson };

struct DeployOptions {
  std::vector<std::string> apps;
  std::optional<std::string> context;
  std::optional<std::string> kubeconfig;
  std::optional<std::string> namespace_name;
  Environment environment = Environment::kLocal;
  std::optional<std::string> tag;
  std::vector<std::string> set_values;
  bool dry_run = false;
  bool server_dry_run = false;
  std::string timeout = "5m";
  // Starting the project's local cluster: a first run builds Kubernetes (measured 20-40 min on
  // 2 cores), so it has its own budget, apart from --timeout and image builds.
  std::string cluster_timeout = "90m";
  int verbosity = 0;
  OutputFormat output = OutputFormat::kText;
  std::optional<std::string> repo_root;
  // Images (issue 5): built and pushed unless --no-build, which deploys an existing tag.
  bool no_build = false;
  std::optional<std::string> registry;
  // --digest: deploy these digests as they are, no build and no lookup. "DIGEST" for every app,
  // or "APP=DIGEST" each (CI promotes each app's tested image index in one run).
  std::vector<std::string> digests;
  // In-flight checks (issue 6): on when a probe URL is known, unless --no-verify.
  // The flags side by side: clang-analyzer's padding check counts the holes between them.
  bool no_verify = false;
  bool no_probe = false;        // --no-probe: no synthetic traffic; other checks stay
  bool no_drain_check = false;  // --no-drain-check: the drain race is not judged
  bool no_wait = false;         // apply and return: no rollout watch, no rollback
  bool wait_for_lock = false;   // another deploy of an app holds its lock: wait for it
  // --probe-rate: short requests per second the in-flight probe sends per app (0: no bound). The
  // probe shares the ingress and the node's CPU with the traffic it judges; at its uncapped pace
  // (about 600/s) it raised the p99 it measured from 1.99 to 3.50 x steady state (issue 16). 100/s
  // judges 6,000 requests a minute.
  int probe_rate = 100;
  std::size_t min_requests = 0;         // --min-requests: 0 = no minimum
  std::vector<std::string> probe_urls;  // "URL" for every app, or "APP=URL"
  // --ingress-metrics: the ingress controller's Prometheus endpoint for the real-traffic check;
  // "none" turns it off. Default for --env local: the local Traefik's.
  std::optional<std::string> ingress_metrics_url;
  std::optional<std::string> report_dir;
};

// Checks what the option parser cannot: a production deploy (--env production) that applies and
// follows a rollout must name a probe URL for every app (one URL, or APP=URL each), so that the
// in-flight checks run, unless --no-verify turns them off on purpose. Throws UsageError.
void validate_deploy_options(const DeployOptions& options);

// The digest each app is pinned to by --digest (empty when none is given): a bare DIGEST applies
// to every app without an APP=DIGEST of its own. Each must be sha256:<64 hex digits>, name an
// app being deployed at most once, and, once any is given, every app must get one (a run that
// builds some apps and promotes others is a mistake, not a plan). Throws UsageError.
std::map<std::string, std::string> pinned_digests(const DeployOptions& options);

}  // namespace deployapps

#include "deployapps/deploy.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <unistd.h>
#include <array>
#include <fstream>
#include <iostream>
#include <mutex>
#include <ostream>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "deployapps/budget.hpp"
#include "deployapps/console.hpp"
#include "deployapps/credentials.hpp"
#include "deployapps/discovery.hpp"
#include "deployapps/drain_timeline.hpp"
#include "deployapps/encoding.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/images.hpp"
#include "deployapps/interrupts.hpp"
#include "deployapps/kube_client.hpp"
#include "deployapps/subprocess.hpp"
#include "deployapps/yaml_json.hpp"

namespace deployapps {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Where the local cluster's ingress controller listens on the host (scripts/cluster).
constexpr std::string_view kLocalIngressUrl = "http://127.0.0.1:8088";
// Its Prometheus endpoint (manifests/cluster/traefik.yaml: the "traefik" entry point).
constexpr std::string_view kLocalIngressMetricsUrl = "http://127.0.0.1:8089/metrics";

}  // namespace

bool is_deploy_apps_repository(const fs::path& dir) {
  std::error_code error;
  return fs::is_directory(dir / "apps", error) &&
         fs::is_regular_file(dir / "manifests" / "values.yaml", error);
}

fs::path default_repo_root(const ProcessEnvironment& environment, const fs::path& start) {
  if (const auto root = environment.get("DEPLOY_APPS_ROOT"); root && !root->empty()) {
    return *root;
  }
  // As git finds its repository: the working directory, then each parent.
  std::error_code error;
  auto dir = fs::weakly_canonical(start, error);
  if (error) {
    dir = start;
  }
  for (;;) {
    if (is_deploy_apps_repository(dir)) {
      return dir;
    }
    if (!dir.has_parent_path() || dir.parent_path() == dir) {
      break;
    }
    dir = dir.parent_path();
  }
  throw UsageError(
      fmt::format("no deploy-apps repository in {} or any parent (one holds apps/ and "
                  "manifests/values.yaml); run inside a clone, or give --repo DIR",
                  start.string()));
}

namespace {

ProcessResult run_git(const fs::path& repo_root, const std::vector<std::string>& args) {
  ProcessOptions options;
  options.argv = {"git", "-C", repo_root.string()};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.deadline = Deadline::after(kGitTimeout);
  return run_process(options);
}

// Paths that decide what an app's deploy holds: its build context (the image) and manifests/
// (its objects).
std::vector<std::string> app_content_paths(const std::string& app) {
  return {"apps/" + app, "manifests"};
}

// SHA-256 over each file's path and bytes. Hand-written over OpenSSL's EVP (already linked for
// TLS) rather than a new dependency for one digest.
std::string content_hash(const fs::path& repo_root, const std::vector<std::string>& files) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  &EVP_MD_CTX_free);
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    throw Error("cannot start a SHA-256 digest (OpenSSL)");
  }
  const auto update = [&](std::string_view bytes) {
    EVP_DigestUpdate(context.get(), bytes.data(), bytes.size());
  };
  std::vector<char> buffer(std::size_t{64} * 1024);
  for (const auto& file : files) {
    update(file);
    update(std::string_view("\0", 1));
    std::ifstream in(repo_root / file, std::ios::binary);
    if (!in) {
      update("(deleted)");  // tracked but removed from the working tree
    }
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      update(std::string_view(buffer.data(), static_cast<std::size_t>(in.gcount())));
    }
    update(std::string_view("\0", 1));
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  EVP_DigestFinal_ex(context.get(), digest.data(), &length);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += fmt::format("{:02x}", digest.at(i));
  }
  return hex;
}

}  // namespace

std::string default_image_tag(const fs::path& repo_root, const std::string& app) {
  try {
    const auto commit = run_git(repo_root, {"rev-parse", "--short=12", "HEAD"});
    if (commit.exit_code != 0) {
      return "dev";
    }
    std::string tag(trim(commit.stdout_text));
    std::vector<std::string> status_args{"status", "--porcelain", "--untracked-files=all", "--"};
    const auto paths = app_content_paths(app);
    status_args.insert(status_args.end(), paths.begin(), paths.end());
    const auto status = run_git(repo_root, status_args);
    if (status.exit_code == 0 && !trim(status.stdout_text).empty()) {
      // Modified: the version names the content, so two different trees never share one.
      std::vector<std::string> list_args{"ls-files",           "-z", "--cached", "--others",
                                         "--exclude-standard", "--"};
      list_args.insert(list_args.end(), paths.begin(), paths.end());
      const auto listed = run_git(repo_root, list_args);
      std::set<std::string> files;
      std::string_view rest = listed.stdout_text;
      while (!rest.empty()) {
        const auto end = rest.find('\0');
        if (end != 0) {
          files.emplace(rest.substr(0, end));
        }
        if (end == std::string_view::npos) {
          break;
        }
        rest.remove_prefix(end + 1);
      }
      tag +=
          "-dirty-" + content_hash(repo_root, std::vector<std::string>(files.begin(), files.end()))
                          .substr(0, 12);
    }
    return tag;
  } catch (const SpawnError&) {
    return "dev";  // no git
  }
}

TargetOptions target_options(const DeployOptions& options, const ProcessEnvironment& environment) {
  TargetOptions target;
  if (options.kubeconfig) {
    target.kubeconfig_flag = *options.kubeconfig;
  }
  target.kubeconfig_env = environment.get("KUBECONFIG");
  if (const auto home = environment.get("HOME"); home && !home->empty()) {
    target.home = *home;
  }
  target.context = options.context;
  target.in_cluster.service_host = environment.get("KUBERNETES_SERVICE_HOST").value_or("");
  target.in_cluster.service_port = environment.get("KUBERNETES_SERVICE_PORT").value_or("");
  target.in_cluster.pod_namespace = environment.get("POD_NAMESPACE").value_or("");
  const auto state = environment.get("DEPLOY_APPS_STATE").value_or("/var/lib/deploy-apps");
  target.local_cluster_kubeconfig = fs::path(state) / "cluster" / "kubeconfig";
  return target;
}

namespace {

// What the drain-race timeline watches for one app (its drain pause is the live one's).
DrainTimelineSettings drain_timeline_settings(const RenderedApp& app, const json& deployment,
                                              const std::optional<IngressCheckSettings>& ingress) {
  DrainTimelineSettings settings;
  settings.namespace_name = app.namespace_name;
  settings.pod_selector = match_labels_selector(deployment);
  settings.service = app.app;  // manifests/templates/service.yaml names it after the app
  settings.container =
      deployment.value(json::json_pointer("/spec/template/spec/containers/0/name"), std::string());
  if (ingress) {
    settings.ingress_api_url = traefik_services_url(ingress->metrics_url);
  }
  return settings;
}

json rollout_json(const RolloutReport& rollout) {
  const auto millis = [](const std::optional<Duration>& value) {
    return value ? json(value->count()) : json(nullptr);
  };
  return {{"oldVersion", rollout.old_version},
          {"newVersion", rollout.new_version},
          {"result", result_name(rollout.result)},
          {"rolledBack", rollout.rolled_back},
          {"failure", rollout.failure},
          {"stateLeft", rollout.state_left},
          {"durationMs", rollout.duration.count()},
          {"apiRequests", rollout.api_requests},
          {"completeToReportedMs", millis(rollout.complete_to_reported)},
          {"eventToReportedMs", millis(rollout.event_to_reported)},
          {"oldPods", old_pods_json(rollout.old_pods)},
          {"probeRequests", rollout.probe_requests},
          {"probeFailures", rollout.probe_failures},
          {"ingressCheck", rollout.ingress_check},
          {"drainTimelines", rollout.drain_timelines},
          {"reports", rollout.reports_written}};
}

}  // namespace

json to_json(const DeployReport& report) {
  bool failed = false;
  json apps = json::array();
  for (const auto& app : report.apps) {
    json objects = json::array();
    for (const auto& object : app.apply.objects) {
      objects.push_back({{"apiVersion", object.api_version},
                         {"kind", object.kind},
                         {"namespace", object.namespace_name},
                         {"name", object.name},
                         {"operation", operation_name(object.operation)},
                         {"resourceVersion", object.resource_version},
                         {"warnings", object.warnings},
                         {"note", object.note}});
    }
    json entry{{"app", app.app},
               {"namespace", app.namespace_name},
               {"image", app.image},
               {"objects", objects},
               {"notes", app.apply.notes}};
    if (app.lock) {
      entry["lock"] = {{"lease", app.lock->lease},
                       {"waitedMs", app.lock->waited.count()},
                       {"waitedFor", app.lock->waited_for},
                       {"tookOverFrom", app.lock->took_over_from},
                       {"lost", app.lock->lost}};
    }
    if (app.rollout) {
      entry["rollout"] = rollout_json(*app.rollout);
      if (app.rollout->result != RolloutResult::kSucceeded &&
          app.rollout->result != RolloutResult::kUnchanged &&
          app.rollout->result != RolloutResult::kApplied) {
        failed = true;
      }
    }
    apps.push_back(std::move(entry));
  }
  return {{"mode", report.mode},
          {"target", report.target},
          {"apps", apps},
          {"result", failed ? "failed" : "ok"}};
}

void print_summary(const DeployReport& report, std::ostream& out) {
  const auto version = [](const std::string& text) { return text.empty() ? "-" : text; };
  std::vector<std::array<std::string, 5>> rows{
      {"APP", "VERSION", "RESULT", "DURATION", "ROLLED BACK"}};
  for (const auto& app : report.apps) {
    if (!app.rollout) {
      continue;
    }
    const auto& rollout = *app.rollout;
    rows.push_back(
        {app.app,
         fmt::format("{} -> {}", version(rollout.old_version), version(rollout.new_version)),
         std::string(result_name(rollout.result)), format_duration(rollout.duration),
         rollout.rolled_back ? "yes" : "no"});
  }
  std::array<std::size_t, 5> widths{};
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      widths.at(i) = std::max(widths.at(i), row.at(i).size());
    }
  }
  out << '\n';
  for (const auto& row : rows) {
    out << fmt::format("{:<{}}  {:<{}}  {:<{}}  {:<{}}  {}\n", row[0], widths[0], row[1], widths[1],
                       row[2], widths[2], row[3], widths[3], row[4]);
  }
  for (const auto& app : report.apps) {
    if (!app.rollout) {
      continue;
    }
    const auto& rollout = *app.rollout;
    if (!rollout.failure.empty()) {
      out << fmt::format("{}: failed: {}\n", app.app, rollout.failure);
    }
    if (!rollout.state_left.empty()) {
      out << fmt::format("{}: left: {}\n", app.app, rollout.state_left);
    }
    for (const auto& path : rollout.reports_written) {
      out << fmt::format("{}: report: {}\n", app.app, path);
    }
  }
}

void print_text(const DeployReport& report, std::ostream& out) {
  const bool dry = report.mode == "server-dry-run";
  for (const auto& app : report.apps) {
    for (const auto& object : app.apply.objects) {
      out << fmt::format("{}: {} {}{}", app.app, object.display, operation_name(object.operation),
                         dry ? " (server dry run)" : "");
      if (object.operation == ApplyOperation::kSkipped && !object.note.empty()) {
        out << ": " << object.note;
      }
      out << '\n';
      for (const auto& warning : object.warnings) {
        out << fmt::format("{}:   warning: {}\n", app.app, warning);
      }
    }
    for (const auto& note : app.apply.notes) {
      out << fmt::format("{}: note: {}\n", app.app, note);
    }
  }
}

void DeployCommand::run() {
  timeout_ = parse_duration(options_.timeout);
  cluster_timeout_ = parse_duration(options_.cluster_timeout);
  prepare();
  if (options_.dry_run) {
    // No cluster is needed, but an explicit --context must still exist.
    if (options_.context) {
      (void)resolve_target(target_options(options_, environment_));
    }
    print_rendered();
    return;
  }
  apply_to_cluster();
}

RenderRequest DeployCommand::render_request(const std::string& app) const {
  RenderRequest request;
  request.app = app;
  request.environment = options_.environment;
  request.tag = tags_.at(app);
  request.namespace_name = options_.namespace_name;
  request.overrides = overrides_;
  // A dry run shows the image a --digest deploy would apply.
  if (const auto pinned = pinned_digests_.find(app); pinned != pinned_digests_.end()) {
    request.image_digest = pinned->second;
  }
  return request;
}

void DeployCommand::prepare() {
  repository_ = std::make_unique<Repository>(options_.repo_root ? fs::path(*options_.repo_root)
                                                                : default_repo_root(environment_));
  const Repository& repository = *repository_;
  if (options_.apps.empty()) {
    const auto known = repository.app_names();
    throw UsageError(fmt::format(
        "no app given; known apps: {}",
        known.empty() ? std::string("none") : fmt::format("{}", fmt::join(known, ", "))));
  }
  std::set<std::string> seen;
  for (const auto& app : options_.apps) {
    if (!seen.insert(app).second) {
      throw UsageError(fmt::format("app \"{}\" is given more than once", app));
    }
    (void)repository.app(app);  // unknown apps fail here, listing the known ones
  }
  for (const auto& text : options_.set_values) {
    overrides_.push_back(parse_value_override(text));
  }
  if (options_.registry) {
    if (options_.registry->empty() ||
        options_.registry->find_first_of(" \t@") != std::string::npos) {
      throw UsageError(fmt::format("invalid --registry \"{}\"", *options_.registry));
    }
    overrides_.push_back({"image.registry", *options_.registry});
  }
  for (const auto& text : options_.probe_urls) {
    const auto equals = text.find('=');
    const auto app = equals == std::string::npos ? std::string() : text.substr(0, equals);
    if (!app.empty() && !seen.contains(app)) {
      throw UsageError(fmt::format("--probe-url {}: {} is not being deployed", text, app));
    }
    try {
      (void)probe::Target::parse(equals == std::string::npos ? text : text.substr(equals + 1));
    } catch (const probe::ConfigError& error) {
      throw UsageError(fmt::format("--probe-url: {}", error.what()));
    }
  }
  pinned_digests_ = pinned_digests(options_);
  for (const auto& app : options_.apps) {
    tags_[app] = options_.tag.value_or(default_image_tag(repository.root(), app));
  }
  for (const auto& app : options_.apps) {
    rendered_.push_back(render_app(repository, render_request(app)));
  }
}

void DeployCommand::print_rendered() const {
  if (options_.output == OutputFormat::kJson) {
    json items = json::array();
    for (const auto& app : rendered_) {
      for (const auto& object : app.objects) {
        items.push_back(object.object);
      }
    }
    out_ << json{{"apiVersion", "v1"}, {"kind", "List"}, {"items", items}}.dump(2) << '\n';
    return;
  }
  for (const auto& app : rendered_) {
    for (const auto& object : app.objects) {
      out_ << "---\n# Source: " << object.source << " (app " << app.app << ")\n"
           << json_to_yaml(object.object);
    }
  }
}

bool no_cluster_configured(const TargetOptions& options) {
  const bool home_config = options.home && fs::exists(*options.home / ".kube" / "config");
  return !options.kubeconfig_flag && (!options.kubeconfig_env || options.kubeconfig_env->empty()) &&
         !home_config && !options.in_cluster.available();
}

std::ostream& DeployCommand::progress() const {
  return options_.output == OutputFormat::kJson ? err_ : out_;
}

std::vector<std::string> local_cluster_problems(std::string_view status_output) {
  // scripts/cluster status: "NAME  NOT running", "kube-apiserver is not ready",
  // "ingress: ... does NOT answer", "native cluster: not created", nodes "NotReady".
  static const std::regex problem(
      R"((NOT running|not ready|does NOT answer|not created|NotReady))");
  std::vector<std::string> problems;
  std::string_view rest = status_output;
  while (!rest.empty()) {
    const auto end = rest.find('\n');
    const auto line = trim(rest.substr(0, end));
    if (!line.empty() && std::regex_search(line.begin(), line.end(), problem)) {
      // Collapse the status table's column padding.
      problems.push_back(std::regex_replace(std::string(line), std::regex(" {2,}"), " "));
    }
    if (end == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(end + 1);
  }
  return problems;
}

void DeployCommand::ensure_local_cluster(TargetOptions& target) {
  const auto script = repository_->root() / "scripts" / "cluster";
  auto& out = progress();
  // Checked on every deploy: a half-started cluster (an interrupted "up", a stopped component)
  // takes a deploy but never rolls it out.
  ProcessOptions status;
  status.argv = {script.string(), "status"};
  status.deadline = Deadline::after(kLocalClusterStatusTimeout);
  ProcessResult checked;
  try {
    checked = run_process(status);
  } catch (const SpawnError& error) {
    throw ConfigError(
        fmt::format("no cluster configured, and {} cannot run: {}", script.string(), error.what()));
  }
  if (checked.exit_code == 0) {
    out << "deploy-apps: no cluster configured (no --kubeconfig, $KUBECONFIG or ~/.kube/config): "
           "using the project's local cluster (scripts/cluster status: healthy)\n"
        << std::flush;
  } else {
    const auto problems = local_cluster_problems(checked.stdout_text + checked.stderr_text);
    out << fmt::format(
               "deploy-apps: no cluster configured (no --kubeconfig, $KUBECONFIG or "
               "~/.kube/config): using the project's local cluster, which is not usable: {}; "
               "running 'scripts/cluster up' (idempotent; up to {} for a first run that builds "
               "Kubernetes)\n",
               problems.empty() ? fmt::format("status exited {}", checked.exit_code)
                                : fmt::format("{}", fmt::join(problems, "; ")),
               format_duration(cluster_timeout_))
        << std::flush;
    const auto started = Clock::now();
    ProcessOptions up;
    up.argv = {script.string(), "up"};
    up.deadline = Deadline::after(cluster_timeout_);
    up.on_stdout_line = [&](std::string_view line) {
      out << fmt::format(
                 "cluster: [{} of {}] {}\n",
                 format_duration(std::chrono::duration_cast<Duration>(Clock::now() - started)),
                 format_duration(cluster_timeout_), line)
          << std::flush;
    };
    up.on_stderr_line = up.on_stdout_line;
    ProcessResult result;
    try {
      result = run_process(up);
    } catch (const SpawnError& error) {
      throw ConfigError(fmt::format("no cluster configured, and {} cannot run: {}", script.string(),
                                    error.what()));
    }
    if (result.timed_out) {
      throw Error(fmt::format(
          "the local cluster did not start within --cluster-timeout {} ({} up was stopped); "
          "what it started stays and the next run resumes it",
          format_duration(cluster_timeout_), script.string()));
    }
    if (result.exit_code != 0) {
      throw Error(
          fmt::format("no cluster configured, and starting the local cluster failed ({} up "
                      "exited {}); see 'scripts/cluster status' and 'scripts/cluster logs NAME'",
                      script.string(), result.exit_code));
    }
  }
  ProcessOptions kubeconfig;
  kubeconfig.argv = {script.string(), "kubeconfig"};
  kubeconfig.deadline = Deadline::after(kLocalClusterStatusTimeout);
  const auto path = run_process(kubeconfig);
  if (path.exit_code == 0 && !trim(path.stdout_text).empty()) {
    target.local_cluster_kubeconfig = std::string(trim(path.stdout_text));
  }
}

namespace {

// What the process writes when a Ctrl-C ends it at once: `message` on stderr, and with -o json
// the one document stdout must hold.
std::string interrupted_document(const std::string& message, bool json_output) {
  if (!json_output) {
    return {};
  }
  return json{{"mode", "apply"},
              {"result", "interrupted"},
              {"exitCode", kInterruptedExitCode},
              {"error", message}}
             .dump(2) +
         "\n";
}

}  // namespace

std::string run_identity(const ProcessEnvironment& environment) {
  auto user = environment.get("USER").value_or("");
  if (user.empty()) {
    std::array<char, 1024> buffer{};
    passwd entry{};
    passwd* found = nullptr;
    if (getpwuid_r(getuid(), &entry, buffer.data(), buffer.size(), &found) == 0 &&
        found != nullptr) {
      user = found->pw_name;
    } else {
      user = fmt::format("uid-{}", getuid());
    }
  }
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) {
    host[0] = '\0';
  }
  std::random_device entropy;
  return lock_identity(user, host.data(), static_cast<long>(getpid()), entropy());
}

void DeployCommand::apply_to_cluster() {
  // From here to the first apply nothing changes in the cluster, so a Ctrl-C ends the command
  // at once, whatever it is waiting for (a local cluster start, a build, a stalled API).
  const bool json_output = options_.output == OutputFormat::kJson;
  InterruptCounter interrupts;
  const std::string before_apply = "interrupted before anything was applied: nothing changed";
  interrupts.exit_at(1, "\ndeploy-apps: " + before_apply + "\n",
                     interrupted_document(before_apply, json_output));
  auto options = target_options(options_, environment_);
  // A context the user named must come from their configuration; the local cluster is only the
  // fallback when nothing is configured and no context is asked for.
  if (no_cluster_configured(options) && !options.context &&
      fs::exists(repository_->root() / "scripts" / "cluster")) {
    ensure_local_cluster(options);
  }
  auto target = resolve_target(options);
  // --timeout starts now: a local cluster start (a cold one builds Kubernetes for half an hour)
  // had its own budget, --cluster-timeout.
  budget_ = Budget::starting_now(timeout_);
  // One credential source for every client of this deploy: an exec plugin (EKS, GKE, OIDC) runs
  // once, not once per client and watch.
  target.config.credentials = make_credential_source(target.config);
  // The console says it to the user below; this is for -v logs (and --server-dry-run).
  if (target.source == TargetSource::kLocalCluster) {
    spdlog::info("no kubeconfig found: using the project's local cluster");
  }
  spdlog::info("target: {} at {}", target.config.description, target.config.server);
  KubeClient client(target.config);
  Discovery discovery(client);
  const auto target_text = fmt::format("{} ({})", target.config.description, target.config.server);

  // Every kind of every app is resolved before the first change (and before any build).
  std::vector<std::vector<PlannedObject>> plans;
  plans.reserve(rendered_.size());
  for (const auto& app : rendered_) {
    plans.push_back(plan_objects(discovery, app.objects, budget_.overall));
  }
  if (options_.server_dry_run) {
    server_dry_run(client, plans, target_text);
    return;
  }

  // With -o json, stdout carries only the report; progress goes to stderr.
  const auto term = environment_.get("TERM");
  Console console(json_output ? err_ : out_,
                  json_output
                      ? is_interactive_terminal(STDERR_FILENO, term)
                      : &out_ == &std::cout && is_interactive_terminal(STDOUT_FILENO, term));
  if (target.source == TargetSource::kLocalCluster) {
    console.line("deploy-apps", "no kubeconfig found: deploying to the project's local cluster");
  }
  console.line("deploy-apps", "target: " + target_text);
  if (options_.no_verify && !options_.no_wait) {
    console.line("deploy-apps",
                 "warning: --no-verify: in-flight checks are off; a rollout that drops requests "
                 "or cuts connections will not be caught");
  }
  const auto build_failures = pin_images(console);
  // One deploy at a time per app: its lock is taken before the first change and released after
  // its rollout or rollback. Waiting for one (--wait-for-lock) is bounded by --timeout.
  std::vector<LockTarget> lock_targets;
  for (std::size_t i = 0; i < rendered_.size(); ++i) {
    if (build_failures.contains(rendered_[i].app)) {
      continue;
    }
    LockTarget lock_target{rendered_[i].app, rendered_[i].namespace_name, std::nullopt};
    for (const auto& object : plans[i]) {
      if (object.resource.kind == "Namespace") {
        lock_target.namespace_object = object;
      }
    }
    lock_targets.push_back(std::move(lock_target));
  }
  DeployLocks locks(target.config, run_identity(environment_), console);
  locks.acquire(lock_targets, options_.wait_for_lock, Deadline::after(timeout_));
  // The budget covers applying, rolling out and rolling back; builds and locks had their own.
  budget_ = Budget::starting_now(timeout_);
  // Now a first Ctrl-C stops the rollouts and rolls back; a second one exits at once, saying
  // what may be left half-done.
  std::string left =
      "second Ctrl-C: exited without waiting; these may be left mid-rollout or "
      "mid-rollback:";
  for (const auto& app : rendered_) {
    left += fmt::format("\n  {}: kubectl -n {} rollout status deployment/{}", app.app,
                        app.namespace_name, app.app);
  }
  interrupts.exit_at(2, "\ndeploy-apps: " + left + "\n", interrupted_document(left, json_output));

  DeployReport report;
  report.mode = "apply";
  report.target = target_text;
  report.apps.resize(rendered_.size());
  std::vector<std::thread> threads;
  std::mutex errors_mutex;
  std::vector<std::string> errors;
  for (std::size_t i = 0; i < rendered_.size(); ++i) {
    auto& app = rendered_[i];
    auto& entry = report.apps[i];
    entry.app = app.app;
    entry.namespace_name = app.namespace_name;
    entry.image = app.image;
    if (const auto failed = build_failures.find(app.app); failed != build_failures.end()) {
      RolloutReport rollout;
      rollout.app = app.app;
      rollout.new_version = tags_.at(app.app);
      rollout.result = RolloutResult::kFailed;
      rollout.failure = failed->second;
      rollout.state_left = "nothing was applied";
      entry.rollout = rollout;
      continue;
    }
    // The re-rendered objects carry the digest; the plan's kinds are those already resolved.
    for (std::size_t j = 0; j < plans[i].size() && j < app.objects.size(); ++j) {
      if (plans[i][j].resource.kind == "Deployment") {
        plans[i][j].object = app.objects[j].object;
      }
    }
    threads.emplace_back([&, i] {
      const auto& rendered = rendered_[i];
      RolloutTarget rollout_target;
      rollout_target.app = rendered.app;
      rollout_target.namespace_name = rendered.namespace_name;
      rollout_target.new_version = tags_.at(rendered.app);
      for (const auto& object : plans[i]) {
        if (object.resource.kind == "Deployment") {
          rollout_target.deployment = object.object;
        } else if (object.resource.kind != "Namespace") {  // shared by apps: never restored
          rollout_target.others.push_back({object.display(), object.path, object.object});
        }
      }
      RolloutSettings settings;
      settings.interrupts = &interrupts.count();
      settings.wait = !options_.no_wait;
      settings.verify = !options_.no_verify;
      settings.min_requests = options_.min_requests;
      if (!options_.no_verify && !options_.no_wait) {
        settings.ingress = ingress_check_settings(rendered);
        if (!options_.no_drain_check) {
          settings.drain =
              drain_timeline_settings(rendered, rollout_target.deployment, settings.ingress);
        }
        settings.probe = options_.no_probe ? std::nullopt : probe_config(rendered);
        if (!settings.probe && !options_.no_probe) {
          console.line(rendered.app,
                       "in-flight checks off: no probe URL is known outside --env local (give "
                       "--probe-url)");
        }
      }
      settings.report_dir = options_.report_dir
                                ? fs::path(*options_.report_dir) / rendered.app
                                : repository_->root() / "out" / "deploy" / rendered.app;
      try {
        AppRollout rollout(target.config, rollout_target, settings, console);
        report.apps[i].rollout = rollout.run(
            [&](KubeClient& app_client) {
              Applier applier(app_client, ApplyOptions{DryRun::kNone, std::string(kFieldManager)});
              report.apps[i].apply = applier.apply(plans[i], budget_.rollout);
              for (const auto& object : report.apps[i].apply.objects) {
                console.line(rendered.app, fmt::format("{} {}", object.display,
                                                       operation_name(object.operation)));
                for (const auto& warning : object.warnings) {
                  console.line(rendered.app, "  warning: " + warning);
                }
              }
              for (const auto& note : report.apps[i].apply.notes) {
                console.line(rendered.app, "note: " + note);
              }
            },
            budget_);
      } catch (const std::exception& error) {
        // Failed before the Deployment changed (e.g. the apply was rejected): nothing to roll
        // back. Failures after it are the rollout's, and rolled back there.
        RolloutReport failed;
        failed.app = rendered.app;
        failed.new_version = tags_.at(rendered.app);
        failed.result = RolloutResult::kFailed;
        failed.failure = error.what();
        failed.state_left =
            "the Deployment was not changed; objects applied before the error keep their new "
            "state";
        report.apps[i].rollout = failed;
        console.line(rendered.app, fmt::format("FAILED: {}", error.what()));
        const std::lock_guard lock(errors_mutex);
        errors.emplace_back(error.what());
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  locks.release(budget_.overall);
  for (const auto& outcome : locks.outcomes()) {
    for (auto& app : report.apps) {
      if (app.app == outcome.app) {
        app.lock = outcome;
      }
    }
  }
  spdlog::info("{} API requests on the main connection", client.requests_sent());
  if (options_.output == OutputFormat::kJson) {
    out_ << to_json(report).dump(2) << '\n';
  } else {
    print_summary(report, out_);
  }
  report_written_ = true;
  std::vector<std::string> failed;
  bool interrupted = false;
  for (const auto& app : report.apps) {
    const auto result = app.rollout->result;
    if (result == RolloutResult::kInterrupted) {
      interrupted = true;
    }
    if (result != RolloutResult::kSucceeded && result != RolloutResult::kUnchanged &&
        result != RolloutResult::kApplied) {
      failed.push_back(fmt::format("{} ({})", app.app, result_name(result)));
    }
  }
  if (interrupted) {
    throw InterruptedError(fmt::format("interrupted: {}", fmt::join(failed, ", ")));
  }
  if (!failed.empty()) {
    throw DeployFailed(fmt::format("{} of {} app(s) failed: {}", failed.size(), report.apps.size(),
                                   fmt::join(failed, ", ")));
  }
}

void DeployCommand::server_dry_run(KubeClient& client,
                                   const std::vector<std::vector<PlannedObject>>& plans,
                                   const std::string& target) {
  DeployReport report;
  report.mode = "server-dry-run";
  report.target = target;
  Applier applier(client, ApplyOptions{DryRun::kServer, std::string(kFieldManager)});
  for (std::size_t i = 0; i < rendered_.size(); ++i) {
    const auto& app = rendered_[i];
    AppReport entry{app.app, app.namespace_name, app.image, {}, std::nullopt, std::nullopt};
    entry.apply = applier.apply(plans[i], budget_.overall);
    report.apps.push_back(std::move(entry));
  }
  spdlog::info("{} API requests on {} connection(s)", client.requests_sent(),
               client.connections_opened());
  if (options_.output == OutputFormat::kJson) {
    out_ << to_json(report).dump(2) << '\n';
  } else {
    print_text(report, out_);
  }
  report_written_ = true;
}

std::map<std::string, std::string> DeployCommand::pin_images(Console& console) {
  std::map<std::string, std::string> digests;
  std::map<std::string, std::string> failures;
  std::mutex mutex;
  const auto build_deadline = Deadline::after(kBuildTimeout);
  const auto request_for = [&](const RenderedApp& app) {
    ImageRequest request;
    request.app = app.app;
    request.registry = app.values.value(nlohmann::json::json_pointer("/image/registry"), "");
    request.tag = tags_.at(app.app);
    request.build_command = default_build_command(repository_->root(), request.registry);
    request.docker = environment_.get("DOCKER").value_or("");
    request.deadline = build_deadline;
    return request;
  };
  if (!pinned_digests_.empty()) {
    for (const auto& app : rendered_) {
      digests[app.app] = pinned_digests_.at(app.app);
      console.line(app.app,
                   fmt::format("image pinned to {} as given (not looked up)", digests[app.app]));
    }
  } else if (options_.no_build) {
    // Looked up before anything changes: a missing tag is bad input.
    for (const auto& app : rendered_) {
      const auto request = request_for(app);
      digests[app.app] = resolve_image_digest(request);
      console.line(app.app, fmt::format("image {}/{}:{} is {}", request.registry, app.app,
                                        request.tag, digests[app.app]));
    }
  } else {
    std::vector<std::thread> builds;
    for (const auto& app : rendered_) {
      builds.emplace_back([&, request = request_for(app)] {
        console.line(request.app, fmt::format("building image {}/{}:{}", request.registry,
                                              request.app, request.tag));
        try {
          const auto digest = build_and_push_image(
              request, [&](std::string_view line) { console.line(request.app, line); });
          console.line(request.app,
                       fmt::format("pushed {}/{}@{}", request.registry, request.app, digest));
          const std::lock_guard lock(mutex);
          digests[request.app] = digest;
        } catch (const Error& error) {
          console.line(request.app, fmt::format("FAILED: {}", error.what()));
          const std::lock_guard lock(mutex);
          failures[request.app] = error.what();
        }
      });
    }
    for (auto& build : builds) {
      build.join();
    }
  }
  for (auto& app : rendered_) {
    if (const auto digest = digests.find(app.app); digest != digests.end()) {
      auto request = render_request(app.app);
      request.image_digest = digest->second;
      app = render_app(*repository_, request);
    }
  }
  return failures;
}

std::optional<IngressCheckSettings> DeployCommand::ingress_check_settings(
    const RenderedApp& app) const {
  IngressCheckSettings settings;
  settings.namespace_name = app.namespace_name;
  settings.service = app.app;  // manifests/templates/service.yaml names it after the app
  if (options_.ingress_metrics_url) {
    if (*options_.ingress_metrics_url == "none") {
      return std::nullopt;
    }
    settings.metrics_url = *options_.ingress_metrics_url;
    settings.required = true;
  } else if (options_.environment == Environment::kLocal) {
    settings.metrics_url = std::string(kLocalIngressMetricsUrl);
  } else {
    return std::nullopt;
  }
  return settings;
}

std::optional<probe::Config> DeployCommand::probe_config(const RenderedApp& app) const {
  std::optional<std::string> url;
  for (const auto& text : options_.probe_urls) {
    const auto equals = text.find('=');
    if (equals == std::string::npos) {
      url = text;
    } else if (text.substr(0, equals) == app.app) {
      url = text.substr(equals + 1);
      break;
    }
  }
  probe::Config config;
  if (url) {
    config.url = *url;
  } else if (options_.environment == Environment::kLocal) {
    // The local cluster's ingress answers on the host's port 8088 for every app's host name.
    config.url = std::string(kLocalIngressUrl);
    config.host_header = app.values.value(nlohmann::json::json_pointer("/ingress/host"), "");
  } else {
    return std::nullopt;
  }
  config.max_short_requests_per_second = options_.probe_rate;
  return config;
}

}  // namespace deployapps

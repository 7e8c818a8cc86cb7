#include "deployapps/deploy.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <ostream>
#include <set>

#include "deployapps/discovery.hpp"
#include "deployapps/encoding.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/kube_client.hpp"
#include "deployapps/subprocess.hpp"
#include "deployapps/yaml_json.hpp"

namespace deployapps {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr Duration kGitTimeout = std::chrono::seconds(10);

}  // namespace

fs::path default_repo_root(const ProcessEnvironment& environment) {
  if (const auto root = environment.get("DEPLOY_APPS_ROOT"); root && !root->empty()) {
    return *root;
  }
  return DEPLOY_APPS_SOURCE_DIR;
}

std::string default_image_tag(const fs::path& repo_root) {
  const auto git = [&](std::vector<std::string> args) {
    ProcessOptions options;
    options.argv = {"git", "-C", repo_root.string()};
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.deadline = Deadline::after(kGitTimeout);
    return run_process(options);
  };
  try {
    const auto commit = git({"rev-parse", "--short=12", "HEAD"});
    if (commit.exit_code != 0) {
      return "dev";
    }
    std::string tag(trim(commit.stdout_text));
    const auto status = git({"status", "--porcelain", "--untracked-files=no"});
    if (status.exit_code == 0 && !trim(status.stdout_text).empty()) {
      tag += "-dirty";
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

json to_json(const DeployReport& report) {
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
    apps.push_back({{"app", app.app},
                    {"namespace", app.namespace_name},
                    {"image", app.image},
                    {"objects", objects},
                    {"notes", app.apply.notes}});
  }
  return {{"mode", report.mode}, {"target", report.target}, {"apps", apps}, {"result", "ok"}};
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
  deadline_ = Deadline::after(timeout_);
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

void DeployCommand::prepare() {
  const Repository repository(options_.repo_root ? fs::path(*options_.repo_root)
                                                 : default_repo_root(environment_));
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
  std::vector<ValueOverride> overrides;
  for (const auto& text : options_.set_values) {
    overrides.push_back(parse_value_override(text));
  }
  const auto tag = options_.tag.value_or(default_image_tag(repository.root()));
  for (const auto& app : options_.apps) {
    RenderRequest request;
    request.app = app;
    request.environment = options_.environment;
    request.tag = tag;
    request.namespace_name = options_.namespace_name;
    request.overrides = overrides;
    rendered_.push_back(render_app(repository, request));
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

void DeployCommand::apply_to_cluster() {
  const auto target = resolve_target(target_options(options_, environment_));
  if (target.source == TargetSource::kLocalCluster) {
    spdlog::warn("no kubeconfig found: using the project's local cluster ({})",
                 target.config.description);
  }
  spdlog::info("target: {} at {}", target.config.description, target.config.server);
  KubeClient client(target.config);
  Discovery discovery(client);

  // Every kind of every app is resolved before the first change.
  std::vector<std::vector<PlannedObject>> plans;
  plans.reserve(rendered_.size());
  for (const auto& app : rendered_) {
    plans.push_back(plan_objects(discovery, app.objects, deadline_));
  }

  DeployReport report;
  report.mode = options_.server_dry_run ? "server-dry-run" : "apply";
  report.target = fmt::format("{} ({})", target.config.description, target.config.server);
  Applier applier(client, ApplyOptions{options_.server_dry_run ? DryRun::kServer : DryRun::kNone,
                                       std::string(kFieldManager)});
  for (std::size_t i = 0; i < rendered_.size(); ++i) {
    const auto& app = rendered_[i];
    AppReport entry{app.app, app.namespace_name, app.image, {}};
    entry.apply = applier.apply(plans[i], deadline_);
    report.apps.push_back(std::move(entry));
  }
  spdlog::info("{} API requests on {} connection(s)", client.requests_sent(),
               client.connections_opened());
  if (options_.output == OutputFormat::kJson) {
    out_ << to_json(report).dump(2) << '\n';
  } else {
    print_text(report, out_);
  }
}

}  // namespace deployapps

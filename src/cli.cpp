#include "deployapps/cli.hpp"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "deployapps/deploy.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/interrupts.hpp"
#include "deployapps/probe_command.hpp"
#include "deployapps/version.hpp"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX, not in any header

namespace deployapps {

ProcessEnvironment ProcessEnvironment::current() {
  std::map<std::string, std::string> variables;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const auto equals = text.find('=');
    if (equals != std::string_view::npos) {
      variables.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
    }
  }
  return ProcessEnvironment(std::move(variables));
}

std::optional<std::string> ProcessEnvironment::get(const std::string& name) const {
  const auto it = variables_.find(name);
  if (it == variables_.end()) {
    return std::nullopt;
  }
  return it->second;
}

void setup_deploy_options(CLI::App& app, DeployOptions& options) {
  const auto valid_duration = [](const std::string& text) {
    try {
      (void)parse_duration(text);
      return std::string();
    } catch (const UsageError& error) {
      return std::string(error.what());
    }
  };
  app.add_option("APP", options.apps,
                 "Apps to deploy: folders under apps/ with manifests/<app>/values.yaml");
  app.add_option("--context", options.context,
                 "kubeconfig context to use (default: the current context)");
  app.add_option("--kubeconfig", options.kubeconfig,
                 "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster, then the "
                 "project's local cluster)");
  app.add_option("-n,--namespace", options.namespace_name,
                 "Namespace to deploy into (default: one named after each app)");
  app.add_option("--env", options.environment,
                 "Environment whose values to use: local or production")
      ->transform(CLI::CheckedTransformer(
                      std::map<std::string, Environment>{{"local", Environment::kLocal},
                                                         {"production", Environment::kProduction}},
                      CLI::ignore_case)
                      .description(""))
      ->type_name("ENV")
      ->default_str("local");
  app.add_option("--tag", options.tag,
                 "Image tag and app version (default: the git commit, -dirty when modified)");
  app.add_option("--set", options.set_values,
                 "Override a manifest value, e.g. --set replicas=3 (repeatable)")
      ->type_name("PATH=VALUE")
      ->allow_extra_args(false);  // one value per --set; what follows is an APP
  auto* dry_run = app.add_flag("--dry-run", options.dry_run,
                               "Print the rendered manifests as YAML; no cluster is needed");
  auto* server_dry_run = app.add_flag(
      "--server-dry-run", options.server_dry_run,
      "Validate against the cluster (dryRun=All: real schemas and admission); change nothing");
  dry_run->excludes(server_dry_run);
  app.add_option("--timeout", options.timeout,
                 "Deadline for applying and rolling out, e.g. 90s, 5m, 1h (image builds have "
                 "their own 20 min limit)")
      ->type_name("DURATION")
      ->check(valid_duration)
      ->default_str("5m");
  app.add_option("--cluster-timeout", options.cluster_timeout,
                 "Deadline for starting the project's local cluster when it is used and not "
                 "healthy (a first start builds Kubernetes)")
      ->type_name("DURATION")
      ->check(valid_duration)
      ->default_str("90m");
  app.add_flag("-v,--verbose", options.verbosity,
               "More logging on stderr: -v info, -vv debug, -vvv trace");
  app.add_option("-o,--output", options.output, "Output format: text, or json for CI")
      ->transform(CLI::CheckedTransformer(
                      std::map<std::string, OutputFormat>{{"text", OutputFormat::kText},
                                                          {"json", OutputFormat::kJson}},
                      CLI::ignore_case)
                      .description(""))
      ->type_name("FORMAT")
      ->default_str("text");
  app.add_flag("--no-build", options.no_build,
               "Deploy an existing image tag (--tag, default the git commit) instead of building");
  app.add_option("--digest", options.digests,
                 "Deploy this image digest from the registry as is, no build and no lookup (e.g. "
                 "the image index CI tested): DIGEST for every app, or APP=DIGEST for each")
      ->type_name("[APP=]sha256:HEX")
      ->allow_extra_args(false);
  app.add_option("--registry", options.registry,
                 "Registry to push to and pull from (default: image.registry of the values, "
                 "127.0.0.1:5000 for the local cluster)")
      ->type_name("HOST[:PORT][/PATH]");
  app.add_flag("--no-wait", options.no_wait,
               "Apply and return without following the rollout (so no rollback and no checks)");
  app.add_flag("--wait-for-lock", options.wait_for_lock,
               "When another deploy of an app is in progress, wait for it to end (within "
               "--timeout) instead of refusing at once");
  app.add_flag("--no-verify", options.no_verify,
               "Turn off the in-flight checks (traffic probe, real traffic, the old pods' drain "
               "race and exit codes)");
  app.add_option("--probe-url", options.probe_urls,
                 "Where the in-flight checks send traffic: URL for every app, or APP=URL "
                 "(default for --env local: the app's ingress through http://127.0.0.1:8088)")
      ->type_name("[APP=]URL")
      ->allow_extra_args(false);
  app.add_flag("--no-probe", options.no_probe,
               "Send no synthetic traffic: only real traffic (--ingress-metrics), the old pods' "
               "drain race and their exit codes are checked");
  app.add_option("--probe-rate", options.probe_rate,
                 "Short requests per second the in-flight probe sends per app, all its "
                 "keep-alive and new-connection workers together; long requests and streams "
                 "are not counted (0: no bound)")
      ->type_name("N")
      ->check(CLI::Range(0, 100000))
      ->default_str(std::to_string(options.probe_rate));
  app.add_flag("--no-drain-check", options.no_drain_check,
               "Do not record and judge the old pods' drain race (when routers stop sending to "
               "an old pod against when it stops listening); for controls that isolate another "
               "check");
  app.add_option("--ingress-metrics", options.ingress_metrics_url,
                 "The ingress controller's Prometheus endpoint: its counters of 5xx and 499 "
                 "answers judge real traffic during the rollout (default for --env local: "
                 "http://127.0.0.1:8089/metrics, Traefik's; none: off)")
      ->type_name("URL");
  app.add_option("--min-requests", options.min_requests,
                 "Fail (and roll back) a rollout whose in-flight probe judged fewer requests: 0 "
                 "failures in N bound the failure rate below about 3/N (95 %)")
      ->type_name("N");
  app.add_option("--report-dir", options.report_dir,
                 "Where each app's reports, chart and zero-failure certificate go (default: "
                 "out/deploy/<app>/)")
      ->type_name("DIR");
  app.add_option("--repo,--repo-root", options.repo_root,
                 "Repository holding apps/ and manifests/ (default: $DEPLOY_APPS_ROOT, else the "
                 "working directory or its nearest parent that is one, as git finds its own)")
      ->check(CLI::ExistingDirectory);
}

namespace {

void configure_logging(std::ostream& err, int verbosity) {
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(err, true);
  auto logger = std::make_shared<spdlog::logger>("deploy-apps", std::move(sink));
  logger->set_pattern("[%H:%M:%S] %l: %v");
  logger->set_level(verbosity >= 3   ? spdlog::level::trace
                    : verbosity == 2 ? spdlog::level::debug
                    : verbosity == 1 ? spdlog::level::info
                                     : spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

int report_error(const std::string& message, ExitCode code, OutputFormat output, std::ostream& out,
                 std::ostream& err) {
  err << "deploy-apps: error: " << message << '\n';
  if (output == OutputFormat::kJson) {
    out << nlohmann::json{{"result", "error"},
                          {"error", message},
                          {"exitCode", static_cast<int>(code)}}
               .dump(2)
        << '\n';
  }
  return static_cast<int>(code);
}

}  // namespace

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
        const ProcessEnvironment& environment) {
  CLI::App app("Deploys the apps in this repository to Kubernetes with server-side apply.",
               "deploy-apps");
  app.set_version_flag("--version", std::string(kVersion));
  app.footer(
      "Exit codes: 0 success, 1 the deploy failed, 2 bad usage (nothing was changed).\n"
      "Examples:\n"
      "  deploy-apps go-app node-app\n"
      "  deploy-apps probe http://127.0.0.1:8088 --host go-app.localhost --duration 60s\n"
      "  deploy-apps --dry-run go-app > go-app.yaml\n"
      "  deploy-apps --server-dry-run --context prod --env production --set "
      "image.registry=REGISTRY --set ingress.host=HOST go-app");
  DeployOptions options;
  setup_deploy_options(app, options);
  ProbeOptions probe_options;
  auto* probe = setup_probe_command(app, probe_options);
  probe->add_flag("-v,--verbose", options.verbosity, "More logging on stderr");
  app.require_subcommand(0, 1);

  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 pops from the back
    app.parse(reversed);
  } catch (const CLI::ParseError& error) {
    // Prints help or version to `out`, or the error (and a pointer to --help) to `err`.
    const int code = app.exit(error, out, err);
    return code == 0 ? code : static_cast<int>(ExitCode::kUsage);
  }
  // The logger writes to `err`, which may not outlive this call (tests pass a string stream):
  // the previous default logger comes back on return.
  struct RestoreLogger {
    std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
    RestoreLogger() = default;
    RestoreLogger(const RestoreLogger&) = delete;
    RestoreLogger& operator=(const RestoreLogger&) = delete;
    RestoreLogger(RestoreLogger&&) = delete;
    RestoreLogger& operator=(RestoreLogger&&) = delete;
    ~RestoreLogger() { spdlog::set_default_logger(previous); }
  } restore_logger;
  configure_logging(err, options.verbosity);
  if (probe->parsed()) {
    if (!options.apps.empty()) {
      return report_error("probe takes no app names (give them before `probe` to deploy)",
                          ExitCode::kUsage, OutputFormat::kText, out, err);
    }
    const InterruptCounter interrupts;
    return run_probe_command(probe_options, out, err, &interrupts.count());
  }
  DeployCommand command(options, environment, out, err);
  // -o json: stdout holds exactly one document, the report when it was written, else the error.
  const auto error_output = [&] {
    return command.report_written() ? OutputFormat::kText : options.output;
  };
  try {
    validate_deploy_options(options);
    command.run();
    return static_cast<int>(ExitCode::kOk);
  } catch (const Error& error) {
    return report_error(error.what(), exit_code_for(error), error_output(), out, err);
  } catch (const std::exception& error) {
    // A bug or an environment failure we did not foresee; still one clear line.
    return report_error(fmt::format("internal error: {}", error.what()), ExitCode::kFailed,
                        error_output(), out, err);
  }
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return run(args, std::cout, std::cerr, ProcessEnvironment::current());
}

}  // namespace deployapps

// The command line: `deploy-apps [options] APP...`. run() is the whole program; main() only calls
// it. Subcommands (part 3: `deploy-apps probe URL`) are added next to the deploy options.
#pragma once

#include <CLI/CLI.hpp>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "deployapps/deploy_options.hpp"
#include "deployapps/environment.hpp"
#include "deployapps/manifests.hpp"

namespace deployapps {

// Binds the deploy options to the top-level command.
void setup_deploy_options(CLI::App& app, DeployOptions& options);

// Runs the program; returns the exit code (0 ok, 1 failed, 2 usage error).
[[nodiscard]] int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                      const ProcessEnvironment& environment);
[[nodiscard]] int run(int argc, char** argv);

}  // namespace deployapps

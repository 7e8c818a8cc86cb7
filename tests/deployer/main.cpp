// Catch2 main for the cluster tests: skips (exit 77, for ctest) when no cluster is given.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
  const char* kubeconfig = std::getenv("DEPLOY_APPS_TEST_KUBECONFIG");
  if (kubeconfig == nullptr || *kubeconfig == '\0') {
    std::cerr << "skipped: set DEPLOY_APPS_TEST_KUBECONFIG to a cluster's kubeconfig\n";
    return 77;
  }
  return Catch::Session().run(argc, argv);
}

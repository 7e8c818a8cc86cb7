// Catch2's main for the probe tests (Catch2 v2). The probe logs through spdlog; the tests keep it
// quiet unless PROBE_TEST_LOG names a level (e.g. PROBE_TEST_LOG=debug).
#define CATCH_CONFIG_RUNNER
#include <cstdlib>

#include <spdlog/spdlog.h>
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) {
  const char* level = std::getenv("PROBE_TEST_LOG");
  spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::off);
  return Catch::Session().run(argc, argv);
}

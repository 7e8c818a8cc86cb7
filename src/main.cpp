// deploy-apps: everything lives in the deployapps_core library; see deployapps/cli.hpp.
#include <malloc.h>

#include "deployapps/cli.hpp"

int main(int argc, char** argv) {
  // glibc gives threads their own malloc arenas (up to 8 per core). The deployer runs about 11
  // threads per app (probe, watches, log readers), each allocating little, so spare arenas cost
  // memory and buy nothing: 2 arenas cut an 8-app rollout's peak RSS from 48.6 to 44.5 MB
  // (scripts/bench-scale). Best effort: a libc without the knob keeps its default. Called before
  // any thread starts, so mallopt's thread safety does not matter.
  static_cast<void>(mallopt(M_ARENA_MAX, 2));  // NOLINT(concurrency-mt-unsafe)
  return deployapps::run(argc, argv);
}

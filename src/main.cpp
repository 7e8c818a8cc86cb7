// deploy-apps: everything lives in the deployapps_core library; see deployapps/cli.hpp.
#include "deployapps/cli.hpp"

int main(int argc, char** argv) {
  return deployapps::run(argc, argv);
}

// The deployer's own version, from the CMake project version.
#pragma once

#include <string_view>

namespace deployapps {

#ifndef DEPLOY_APPS_VERSION
#error "DEPLOY_APPS_VERSION is set by CMakeLists.txt"
#endif
inline constexpr std::string_view kVersion = DEPLOY_APPS_VERSION;

}  // namespace deployapps

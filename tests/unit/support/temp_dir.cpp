#include "support/temp_dir.hpp"

#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace deployapps::testing {
namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "deploy-apps-test-XXXXXX").string();
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  path_ = buffer.data();
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

fs::path TempDir::write(const fs::path& relative, std::string_view content, bool executable) const {
  const auto file = path_ / relative;
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (executable) {
    fs::permissions(file, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec,
                    fs::perm_options::replace);
  }
  return file;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

FixtureRepo::FixtureRepo() {
  fs::create_directories(dir_.path() / "apps" / "go-app");
  fs::create_directories(dir_.path() / "apps" / "node-app");
  fs::copy(fs::path(DEPLOY_APPS_TEST_SOURCE_DIR) / "manifests", dir_.path() / "manifests",
           fs::copy_options::recursive);
}

}  // namespace deployapps::testing

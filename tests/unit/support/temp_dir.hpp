// A temporary directory removed with everything in it when the test ends.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace deployapps::testing {

class TempDir {
 public:
  TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  // Writes a file (creating parent folders) and returns its path.
  std::filesystem::path write(const std::filesystem::path& relative, std::string_view content,
                              bool executable = false) const;

 private:
  std::filesystem::path path_;
};

// Reads a whole file.
std::string read_file(const std::filesystem::path& path);

// A repository with apps/go-app, apps/node-app and a copy of this source tree's manifests/.
class FixtureRepo {
 public:
  FixtureRepo();
  [[nodiscard]] const std::filesystem::path& root() const noexcept { return dir_.path(); }
  [[nodiscard]] const TempDir& dir() const noexcept { return dir_; }

 private:
  TempDir dir_;
};

}  // namespace deployapps::testing

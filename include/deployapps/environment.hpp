// A snapshot of the environment variables the program reads, so tests can pass their own.
#pragma once

#include <map>
#include <optional>
#include <string>

namespace deployapps {

class ProcessEnvironment {
 public:
  ProcessEnvironment() = default;
  explicit ProcessEnvironment(std::map<std::string, std::string> variables)
      : variables_(std::move(variables)) {}
  // The environment of this process.
  static ProcessEnvironment current();

  // The value, or nullopt when unset (an empty value is returned as set).
  [[nodiscard]] std::optional<std::string> get(const std::string& name) const;

 private:
  std::map<std::string, std::string> variables_;
};

}  // namespace deployapps

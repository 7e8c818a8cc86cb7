// Catch2 v2 matchers shared by the probe tests.
#pragma once

#include <exception>
#include <string>

#include <catch2/catch.hpp>

namespace deployapps::probe::testing {

// Matches an exception whose what() contains `part` (Catch2 v2 only has an exact-message matcher).
class MessageContains : public Catch::MatcherBase<std::exception> {
 public:
  explicit MessageContains(std::string part) : part_(std::move(part)) {}
  bool match(const std::exception& error) const override {
    return std::string(error.what()).find(part_) != std::string::npos;
  }
  std::string describe() const override { return "message contains \"" + part_ + "\""; }

 private:
  std::string part_;
};

}  // namespace deployapps::probe::testing

// Deadlines, durations and timestamps.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace deployapps {

using Clock = std::chrono::steady_clock;
// Wall-clock time, for what the API and other processes timestamp.
using WallTime = std::chrono::system_clock::time_point;
using Duration = std::chrono::milliseconds;

// A point in time after which an operation must give up. Passed down to every network call;
// budget.hpp derives a deploy's deadlines from --timeout.
class Deadline {
 public:
  static Deadline after(Duration duration) { return Deadline(Clock::now() + duration); }
  static Deadline never() { return Deadline(Clock::time_point::max()); }
  static Deadline at(Clock::time_point when) { return Deadline(when); }

  [[nodiscard]] Clock::time_point when() const noexcept { return when_; }
  [[nodiscard]] bool is_never() const noexcept { return when_ == Clock::time_point::max(); }
  [[nodiscard]] bool expired() const { return Clock::now() >= when_; }
  // Time left, never negative.
  [[nodiscard]] Duration remaining() const;
  // The earlier of this deadline and now + duration.
  [[nodiscard]] Deadline at_most(Duration duration) const;

 private:
  explicit Deadline(Clock::time_point when) : when_(when) {}
  Clock::time_point when_;
};

// Parses a Go-style duration: "90", "90s", "1500ms", "5m", "1h30m". A bare number means seconds.
// Throws UsageError on anything else, or on a zero or negative value.
[[nodiscard]] Duration parse_duration(std::string_view text);

// Formats a duration for people, e.g. "2m5s", "350ms".
[[nodiscard]] std::string format_duration(Duration duration);

// Parses an RFC 3339 timestamp ("2026-01-02T03:04:05Z", fractions and offsets allowed).
// Throws ConfigError when malformed.
[[nodiscard]] std::chrono::system_clock::time_point parse_rfc3339(std::string_view text);

// Formats a wall-clock time as RFC 3339 in UTC with milliseconds: "2026-01-02T03:04:05.678Z".
[[nodiscard]] std::string format_rfc3339(WallTime when);

}  // namespace deployapps

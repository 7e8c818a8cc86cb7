#include "deployapps/time.hpp"

#include <fmt/format.h>
#include <cctype>
#include <cstdint>
#include <ctime>

#include "deployapps/errors.hpp"

namespace deployapps {

Duration Deadline::remaining() const {
  if (is_never()) {
    return Duration::max();
  }
  const auto left = when_ - Clock::now();
  return left <= Clock::duration::zero() ? Duration::zero() : std::chrono::ceil<Duration>(left);
}

Deadline Deadline::at_most(Duration duration) const {
  const auto now = Clock::now();
  if (!is_never() && when_ - now <= duration) {
    return *this;
  }
  return Deadline(now + duration);
}

namespace {

std::int64_t unit_millis(std::string_view unit) {
  if (unit.empty() || unit == "s") {
    return 1000;
  }
  if (unit == "ms") {
    return 1;
  }
  if (unit == "m") {
    return 60'000;
  }
  if (unit == "h") {
    return 3'600'000;
  }
  return -1;
}

}  // namespace

Duration parse_duration(std::string_view text) {
  const auto invalid = [&] {
    return UsageError(fmt::format(
        "invalid duration \"{}\": use a positive number with a unit, e.g. 90s, 5m, 1h30m", text));
  };
  if (text.empty()) {
    throw invalid();
  }
  std::int64_t total = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t number_start = pos;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos])) != 0) {
      ++pos;
    }
    if (pos == number_start || pos - number_start > 9) {
      throw invalid();
    }
    const auto number = std::stoll(std::string(text.substr(number_start, pos - number_start)));
    const std::size_t unit_start = pos;
    while (pos < text.size() && std::isalpha(static_cast<unsigned char>(text[pos])) != 0) {
      ++pos;
    }
    const auto unit = text.substr(unit_start, pos - unit_start);
    // A bare number is only allowed as the whole text ("90"), not inside "1h30".
    if (unit.empty() && (number_start != 0 || pos != text.size())) {
      throw invalid();
    }
    const auto millis = unit_millis(unit);
    if (millis < 0) {
      throw invalid();
    }
    total += number * millis;
  }
  if (total <= 0) {
    throw invalid();
  }
  return Duration(total);
}

std::string format_duration(Duration duration) {
  const auto millis = duration.count();
  if (millis < 1000) {
    return fmt::format("{}ms", millis);
  }
  if (millis < 60'000) {
    return millis % 1000 == 0 ? fmt::format("{}s", millis / 1000)
                              : fmt::format("{:.1f}s", static_cast<double>(millis) / 1000.0);
  }
  const auto seconds = millis / 1000;
  const auto hours = seconds / 3600;
  const auto minutes = (seconds % 3600) / 60;
  const auto rest = seconds % 60;
  std::string out;
  if (hours > 0) {
    out += fmt::format("{}h", hours);
  }
  if (minutes > 0) {
    out += fmt::format("{}m", minutes);
  }
  if (rest > 0 || out.empty()) {
    out += fmt::format("{}s", rest);
  }
  return out;
}

std::chrono::system_clock::time_point parse_rfc3339(std::string_view text) {
  const auto invalid = [&] {
    return ConfigError(fmt::format("invalid RFC 3339 timestamp \"{}\"", text));
  };
  // YYYY-MM-DDTHH:MM:SS then optional .fraction, then Z or +HH:MM / -HH:MM.
  if (text.size() < 20) {
    throw invalid();
  }
  std::tm parts{};
  const std::string head(text.substr(0, 19));
  const char* end = strptime(head.c_str(), "%Y-%m-%dT%H:%M:%S", &parts);
  if (end == nullptr || *end != '\0') {
    // strptime is case-sensitive about 'T'; RFC 3339 allows 't' too.
    std::string lowered = head;
    if (lowered.size() > 10 && (lowered[10] == 't' || lowered[10] == ' ')) {
      lowered[10] = 'T';
      end = strptime(lowered.c_str(), "%Y-%m-%dT%H:%M:%S", &parts);
    }
    if (end == nullptr || *end != '\0') {
      throw invalid();
    }
  }
  std::size_t pos = 19;
  Duration fraction{0};
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    std::int64_t scale = 100;
    const std::size_t digits_start = pos;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos])) != 0) {
      fraction += Duration((text[pos] - '0') * scale);
      scale /= 10;
      ++pos;
    }
    if (pos == digits_start) {
      throw invalid();
    }
  }
  std::int64_t offset_seconds = 0;
  const auto zone = text.substr(pos);
  if (zone == "Z" || zone == "z") {
    offset_seconds = 0;
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':' &&
             std::isdigit(static_cast<unsigned char>(zone[1])) != 0 &&
             std::isdigit(static_cast<unsigned char>(zone[2])) != 0 &&
             std::isdigit(static_cast<unsigned char>(zone[4])) != 0 &&
             std::isdigit(static_cast<unsigned char>(zone[5])) != 0) {
    const std::int64_t hours = (zone[1] - '0') * 10 + (zone[2] - '0');
    const std::int64_t minutes = (zone[4] - '0') * 10 + (zone[5] - '0');
    offset_seconds = (hours * 3600 + minutes * 60) * (zone[0] == '-' ? -1 : 1);
  } else {
    throw invalid();
  }
  const std::time_t utc = timegm(&parts);
  if (utc == static_cast<std::time_t>(-1)) {
    throw invalid();
  }
  return std::chrono::system_clock::from_time_t(utc - offset_seconds) + fraction;
}

std::string format_rfc3339(WallTime when) {
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
  const auto seconds = static_cast<std::time_t>(millis / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                     millis % 1000);
}

}  // namespace deployapps

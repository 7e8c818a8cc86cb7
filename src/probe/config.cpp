#include "deployapps/probe/config.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <string>

namespace deployapps::probe {
namespace {

constexpr std::string_view kScheme = "http://";

std::uint16_t parse_port(std::string_view text, std::string_view url) {
  unsigned value = 0;
  const auto* first = text.data();
  const auto* last = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(first, last, value);
  if (text.empty() || ec != std::errc{} || ptr != last || value == 0 || value > 65535) {
    throw ConfigError("probe URL " + std::string(url) + ": invalid port '" + std::string(text) +
                      "'");
  }
  return static_cast<std::uint16_t>(value);
}

void require_positive(std::chrono::milliseconds value, std::string_view name) {
  if (value <= std::chrono::milliseconds::zero()) {
    throw ConfigError("probe: " + std::string(name) + " must be positive");
  }
}

void require_non_negative(int value, std::string_view name) {
  if (value < 0) {
    throw ConfigError("probe: " + std::string(name) + " must not be negative");
  }
}

}  // namespace

Target Target::parse(std::string_view url) {
  const std::string quoted = "probe URL '" + std::string(url) + "'";
  if (url.substr(0, kScheme.size()) != kScheme) {
    throw ConfigError(quoted + " must start with http:// (the probe speaks plain HTTP)");
  }
  std::string_view rest = url.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) {
    throw ConfigError(quoted + " must not have a query or fragment");
  }
  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  while (!path.empty() && path.back() == '/') {
    path.remove_suffix(1);
  }
  if (authority.empty() || authority.find('@') != std::string_view::npos) {
    throw ConfigError(quoted + " needs a host (and no user info)");
  }

  Target target;
  std::string_view port_text;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos || close == 1) {
      throw ConfigError(quoted + " has a malformed IPv6 literal");
    }
    target.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        throw ConfigError(quoted + " has junk after the IPv6 literal");
      }
      port_text = after.substr(1);
      target.port = parse_port(port_text, url);
    }
  } else {
    const auto colon = authority.rfind(':');
    target.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      target.port = parse_port(port_text, url);
    }
    if (target.host.empty() || target.host.find(':') != std::string::npos) {
      throw ConfigError(quoted + " has an invalid host");
    }
  }
  target.path_prefix = std::string(path);
  // RFC 9110 7.2: the Host header omits the scheme's default port.
  target.authority = std::string(authority);
  if (target.port == 80 && !port_text.empty()) {
    target.authority.resize(target.authority.size() - port_text.size() - 1);
  }
  return target;
}

void Config::validate() const {
  (void)Target::parse(url);
  if (host_header.find_first_of("\r\n") != std::string::npos) {
    throw ConfigError("probe: the Host header must not contain line breaks");
  }
  require_positive(duration, "duration");
  require_positive(connect_timeout, "connect timeout");
  require_positive(request_timeout, "request timeout");
  require_positive(long_sleep, "long request sleep");
  require_positive(stream_length, "stream length");
  if (short_sleep.count() < 0 || request_interval.count() < 0) {
    throw ConfigError("probe: short sleep and request interval must not be negative");
  }
  if (max_short_requests_per_second < 0) {
    throw ConfigError("probe: the short request rate must not be negative (0: no bound)");
  }
  const std::array counts = {
      keepalive_get_workers, keepalive_post_workers, fresh_connection_workers,
      initial_long_requests, long_request_workers,   initial_streams,
      stream_workers};
  const std::array names = {
      "keep-alive GET workers", "keep-alive POST workers", "fresh-connection workers",
      "initial long requests",  "long request workers",    "initial streams",
      "stream workers"};
  int total = 0;
  static_assert(counts.size() == names.size());
  for (std::size_t i = 0; i < counts.size(); ++i) {
    require_non_negative(counts.at(i), names.at(i));
    total += counts.at(i);
  }
  if (total == 0) {
    throw ConfigError("probe: the mix has no workers; nothing would be measured");
  }
  // One connection per worker; keep a typo from opening thousands of sockets.
  constexpr int kMaxConnections = 1000;
  if (total > kMaxConnections) {
    throw ConfigError("probe: the mix opens " + std::to_string(total) +
                      " connections at once; the limit is " + std::to_string(kMaxConnections));
  }
}

std::chrono::milliseconds Config::short_request_interval() const {
  const int short_workers =
      keepalive_get_workers + keepalive_post_workers + fresh_connection_workers;
  if (max_short_requests_per_second <= 0 || short_workers <= 0) {
    return request_interval;
  }
  // Rounded up, so that the bound holds.
  const auto per_worker = std::chrono::milliseconds(
      (1000LL * short_workers + max_short_requests_per_second - 1) / max_short_requests_per_second);
  return std::max(request_interval, per_worker);
}

}  // namespace deployapps::probe

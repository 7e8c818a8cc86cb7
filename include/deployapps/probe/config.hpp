// Configuration of the client-side traffic probe (issue 6): where to send traffic and which mix.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace spdlog {
class logger;
}

namespace deployapps::probe {

// Every failure the probe library throws. The probe never throws for a failed *request*: those are
// recorded, because they are the measurement.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad input (URL, mix, durations): detected before any traffic is sent.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// The chart could not be drawn (gnuplot missing or failing, unwritable path).
class ChartError : public Error {
 public:
  using Error::Error;
};

// A parsed base URL: http://host[:port][/prefix].
struct Target {
  std::string host;  // name or IP literal, without IPv6 brackets
  std::uint16_t port = 80;
  std::string path_prefix;  // "" or "/something", never ending in '/'
  std::string authority;    // host[:port] as written for a Host header (default port omitted)

  // Throws ConfigError unless `url` is an absolute http:// URL without query or fragment.
  [[nodiscard]] static Target parse(std::string_view url);
};

struct Config {
  // Base URL of the app, e.g. http://127.0.0.1:8088 (an ingress) or http://10.96.0.12 (a Service).
  std::string url;
  // Host header to send; empty means the URL's authority. Ingress routing needs e.g.
  // "go-app.localhost".
  std::string host_header;

  // The probe stops starting requests after this long (or at stop_and_wait(), whichever is first),
  // then waits for the requests in flight.
  std::chrono::milliseconds duration = std::chrono::seconds(60);

  // The mix. Every worker is one coroutine, so these bound the number of open connections.
  int keepalive_get_workers = 4;     // persistent connection each, back-to-back GET /?sleep=short
  int keepalive_post_workers = 2;    // persistent connection each, back-to-back POST /?sleep=short
  int fresh_connection_workers = 2;  // a new connection per GET, with Connection: close
  int initial_long_requests = 2;     // GET /?sleep=long started at once, before any rollout
  int long_request_workers = 2;      // back-to-back long GETs, starts staggered over long_sleep
  int initial_streams = 2;           // GET /stream started at once
  int stream_workers = 1;            // back-to-back streams, starts staggered over stream_length

  // ?sleep= of short requests; always sent, because the apps otherwise sleep a random time.
  std::chrono::milliseconds short_sleep = std::chrono::milliseconds(0);
  std::chrono::milliseconds long_sleep = std::chrono::seconds(5);  // ?sleep= of long requests
  // /stream?seconds=; the apps send one line per second, so that many lines are expected.
  std::chrono::seconds stream_length = std::chrono::seconds(10);
  // Minimum time between the starts of two requests of one short worker (0 = truly back-to-back).
  // Keeps a 60 s run at a few hundred requests per second instead of saturating a shared machine.
  std::chrono::milliseconds request_interval = std::chrono::milliseconds(10);
  // Upper bound on the short requests (keep-alive GETs and POSTs, new connections) started per
  // second, all short workers together; 0 = no bound beyond request_interval. It spreads the
  // workers further apart instead of dropping any, so every kind and connection stays covered.
  int max_short_requests_per_second = 0;

  std::chrono::milliseconds connect_timeout = std::chrono::seconds(2);
  // Allowed on top of the server's expected time (the sleep, the stream length) for one exchange.
  std::chrono::milliseconds request_timeout = std::chrono::seconds(5);

  // Where progress and the first failures are logged; null means spdlog's default logger.
  std::shared_ptr<spdlog::logger> logger;

  // Time between the starts of two requests of one short worker: request_interval, or longer
  // when max_short_requests_per_second would otherwise be exceeded.
  [[nodiscard]] std::chrono::milliseconds short_request_interval() const;

  // Throws ConfigError on a bad URL, negative counts, a mix with no worker, or non-positive
  // durations and timeouts.
  void validate() const;
};

}  // namespace deployapps::probe

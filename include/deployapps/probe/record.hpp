// One request as the probe saw it: its kind, timing, outcome and the pod that answered.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace deployapps::probe {

// Microseconds since the probe started (steady clock). Every time in a report uses this base.
using Offset = std::chrono::microseconds;

enum class RequestKind {
  keepalive_get,   // short GET on a persistent connection
  keepalive_post,  // short POST on a persistent connection
  fresh_get,       // short GET on a connection opened for it alone
  long_get,        // GET /?sleep=long
  stream,          // GET /stream?seconds=N
};

enum class ErrorClass {
  none,
  refused,    // connect refused
  reset,      // connection reset (or broken pipe) before the response headers
  eof,        // the server closed the connection before the response headers
  timeout,    // the probe's deadline ran out
  truncated,  // headers arrived, the body did not complete (or a stream missed lines)
  http_5xx,
  http_4xx,
  other,      // anything else: unexpected status, malformed response, unreachable network
  cancelled,  // the probe itself was cancelled (Probe::cancel); not a server failure
};

[[nodiscard]] std::string_view to_string(RequestKind kind) noexcept;
[[nodiscard]] std::string_view to_string(ErrorClass error) noexcept;
// Parse the names to_string produces; throw std::invalid_argument otherwise.
[[nodiscard]] RequestKind request_kind_from_string(std::string_view name);
[[nodiscard]] ErrorClass error_class_from_string(std::string_view name);

// True for the classes that count as a failed request (everything but none and cancelled).
[[nodiscard]] bool is_failure(ErrorClass error) noexcept;

struct Record {
  std::uint64_t id = 0;  // also sent as X-Request-Id: probe-<id>, to find it in app logs
  RequestKind kind = RequestKind::keepalive_get;
  int worker = 0;                  // index of the worker of that kind
  std::uint64_t connection = 0;    // probe-wide id of the TCP connection used (0: none opened)
  bool connection_reused = false;  // sent on a connection that had already served a response
  bool stale_connection_replaced = false;  // the kept-alive connection was found closed by the
                                           // server before sending, so a new one was opened
  Offset start{0};
  std::optional<Offset> response;  // when the response headers arrived
  Offset end{0};
  int status = 0;  // HTTP status, 0 when no headers arrived
  ErrorClass error = ErrorClass::none;
  std::string detail;                // the underlying error message for failures
  std::string version;               // X-App-Version
  std::string served_by;             // X-Served-By
  std::string connection_served_by;  // X-Served-By of the previous response on this connection:
                                     // the pod a reused connection was pinned to
  bool server_closed = false;        // the response carried Connection: close
  std::uint32_t stream_lines = 0;    // lines received (streams only)

  [[nodiscard]] bool failed() const noexcept { return is_failure(error); }
  [[nodiscard]] Offset latency() const noexcept { return end - start; }
  bool operator==(const Record&) const = default;
};

}  // namespace deployapps::probe

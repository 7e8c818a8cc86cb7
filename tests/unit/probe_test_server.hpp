// A real HTTP/1.1 server on 127.0.0.1:0 for the probe's tests, speaking the apps' contract
// (GET|POST /?sleep=MS, GET /stream?seconds=N) and misbehaving on demand.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace deployapps::probe::testing {

struct ServerRequest {
  std::string method;
  std::string target;
  std::uint64_t connection = 0;  // 1-based, in accept order
  unsigned on_connection = 0;    // 1 for the first request on its connection
};

enum class Reply {
  ok,                // 200 "Hi!" (or the stream), keep-alive as the client asked
  connection_close,  // 200 with Connection: close, then close
  status_503,
  status_404,
  drop,                // close the connection without a response (client sees EOF)
  reset,               // abort the connection with a RST (client sees a reset)
  hang,                // never answer
  truncate,            // stream: half the lines then close; other: short body then close
  short_stream,        // stream: half the lines, then a clean end (chunked terminator)
  ok_then_close_idle,  // 200 keep-alive, then close the idle connection right after
};

using Policy = std::function<Reply(const ServerRequest&)>;

class TestServer {
 public:
  // `line_interval` paces /stream lines (the tests don't wait a real second per line).
  explicit TestServer(Policy policy = {},
                      std::chrono::milliseconds line_interval = std::chrono::milliseconds(5));
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] std::string url() const;  // http://127.0.0.1:<port>

  void set_version(std::string version);  // X-App-Version of responses from now on
  [[nodiscard]] std::size_t connections() const;
  [[nodiscard]] std::size_t requests() const;
  [[nodiscard]] std::string last_host_header() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// A port on 127.0.0.1 that nothing listens on (bound, then closed).
[[nodiscard]] std::uint16_t closed_port();

}  // namespace deployapps::probe::testing

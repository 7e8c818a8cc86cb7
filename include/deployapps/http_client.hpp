// An HTTPS/1.1 client on Boost.Beast with a deadline on every operation, full certificate and
// host name verification, keep-alive, and line-by-line streaming for watches.
//
// The API is synchronous, but every socket operation runs asynchronously on a private
// io_context with tcp_stream::expires_at, because blocking Beast calls cannot time out.
// One client is used by one thread at a time.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "deployapps/credentials.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

struct TlsOptions {
  std::optional<std::string> ca_pem;  // trust only this CA; system roots when unset
  std::string ca_source;              // where the CA came from, for messages
  bool insecure_skip_verify = false;
  std::string server_name;  // the name verified in the certificate and sent as SNI; empty = host
  std::optional<ClientCertificate> client_certificate;
};

struct HttpHeader {
  std::string name;
  std::string value;
};

struct HttpRequest {
  std::string method = "GET";
  std::string target;  // path and query, already escaped
  std::vector<HttpHeader> headers;
  std::string body;
  // Whether the request may be sent again on a fresh connection when a kept-alive one turns out
  // to have been closed by the server.
  bool idempotent = true;
};

struct HttpResponse {
  unsigned status = 0;
  std::string reason;
  std::vector<HttpHeader> headers;
  std::string body;

  // The first header with this name (case-insensitive).
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
  [[nodiscard]] std::vector<std::string> headers_named(std::string_view name) const;
};

// Receives each line of a streamed body (without its '\n'); returns false to stop reading.
using LineHandler = std::function<bool(std::string_view line)>;

// The largest whole response kept in memory (a big list); streams have no limit.
inline constexpr std::uint64_t kMaxResponseBodyBytes = std::uint64_t{256} * 1024 * 1024;
// The longest line a stream may carry (one watch event).
inline constexpr std::size_t kMaxStreamLineBytes = std::size_t{64} * 1024 * 1024;

class HttpsClient {
 public:
  // Throws ConfigError when the CA or client certificate cannot be loaded.
  HttpsClient(std::string host, std::string port, TlsOptions tls);
  HttpsClient(const HttpsClient&) = delete;
  HttpsClient& operator=(const HttpsClient&) = delete;
  HttpsClient(HttpsClient&& other) noexcept;
  HttpsClient& operator=(HttpsClient&& other) noexcept;
  ~HttpsClient();

  // Sends a request on the kept-alive connection (opening one if needed) and reads the whole
  // response. Throws TlsError, TimeoutError or NetworkError.
  HttpResponse send(const HttpRequest& request, Deadline deadline);

  // Sends a request on a connection of its own and hands the body to `on_line` as it arrives,
  // split on '\n' whatever the chunking. For a 200 it returns the head (empty body) when the
  // server ends the stream or on_line returns false; any other status is returned whole.
  // `idle_timeout` bounds each wait for data; `deadline` bounds the whole stream.
  HttpResponse stream_lines(const HttpRequest& request, const LineHandler& on_line,
                            Duration idle_timeout, Deadline deadline);

  // Switches the client certificate (an exec plugin rotated it); open connections are closed.
  void set_client_certificate(std::optional<ClientCertificate> certificate);

  // Closes the kept-alive connection, if any.
  void close();

  // Thread-safe, the one method another thread may call: makes a stream_lines in progress (or
  // any later one) return at once, as if on_line had returned false. For ending watches.
  void cancel_stream();

  [[nodiscard]] std::size_t connections_opened() const noexcept;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace deployapps

// A real HTTPS server on 127.0.0.1, port 0, for tests: it answers each request with whatever a
// handler returns, as raw bytes, so tests control chunking, keep-alive, hangs and resets.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/test_pki.hpp"

namespace deployapps::testing {

struct ReceivedRequest {
  std::string method;
  std::string target;  // path and query
  std::string path;    // without the query
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string sni;  // the server name the client sent, empty when none
};

struct ServerReply {
  std::vector<std::string> pieces;     // raw bytes, written (and flushed) one after another
  std::chrono::milliseconds pause{0};  // between pieces
  bool close_after = false;            // close the connection after writing
  bool hang = false;   // after the pieces (if any), stay silent until the server stops
  bool reset = false;  // close at once without answering
};

using ServerHandler = std::function<ServerReply(const ReceivedRequest&)>;

// A complete response with Content-Length.
ServerReply http_reply(unsigned status, const std::string& body,
                       const std::vector<std::pair<std::string, std::string>>& headers = {},
                       const std::string& content_type = "application/json");
ServerReply json_reply(unsigned status, const nlohmann::json& body,
                       const std::vector<std::pair<std::string, std::string>>& headers = {});
// A chunked 200 whose chunks are exactly `chunks` (the lines may cross chunk boundaries).
ServerReply chunked_reply(const std::vector<std::string>& chunks,
                          std::chrono::milliseconds pause = {});
// A Kubernetes Status error.
nlohmann::json status_body(unsigned code, const std::string& reason, const std::string& message,
                           const nlohmann::json& causes = nullptr);

struct ServerTls {
  CertifiedKey server;
  std::optional<std::string> client_ca_pem;  // when set, clients must present a certificate
};

class TlsTestServer {
 public:
  TlsTestServer(ServerTls tls, ServerHandler handler);
  TlsTestServer(const TlsTestServer&) = delete;
  TlsTestServer& operator=(const TlsTestServer&) = delete;
  ~TlsTestServer();

  [[nodiscard]] unsigned short port() const noexcept { return port_; }
  [[nodiscard]] std::string port_string() const { return std::to_string(port_); }
  [[nodiscard]] std::size_t connections() const noexcept { return connections_; }
  [[nodiscard]] std::vector<ReceivedRequest> requests() const;
  [[nodiscard]] std::size_t request_count() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  unsigned short port_ = 0;
  std::atomic<std::size_t> connections_{0};
};

}  // namespace deployapps::testing

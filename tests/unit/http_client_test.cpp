// The HTTPS client against a real local TLS server with certificates made at test time.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "deployapps/errors.hpp"
#include "deployapps/http_client.hpp"
#include "support/test_pki.hpp"
#include "support/tls_server.hpp"

using namespace std::chrono_literals;
using deployapps::Deadline;
using deployapps::HttpRequest;
using deployapps::HttpsClient;
using deployapps::TlsError;
using deployapps::TlsOptions;
using deployapps::testing::CertifiedKey;
using deployapps::testing::LeafSpec;
using deployapps::testing::ReceivedRequest;
using deployapps::testing::ServerReply;
using deployapps::testing::TestCa;
using deployapps::testing::TlsTestServer;

namespace {

const TestCa& cluster_ca() {
  static const TestCa ca("test cluster CA");
  return ca;
}

CertifiedKey server_certificate(LeafSpec spec = {}) {
  if (spec.dns_names.empty() && spec.ip_addresses.empty()) {
    spec.dns_names = {"localhost", "kubernetes.default.svc"};
    spec.ip_addresses = {"127.0.0.1"};
  }
  return cluster_ca().issue(spec);
}

ServerReply hello(const ReceivedRequest& /*request*/) {
  return deployapps::testing::json_reply(200, {{"hello", "world"}});
}

TlsOptions trusting(const TestCa& ca) {
  TlsOptions tls;
  tls.ca_pem = ca.ca().certificate_pem;
  tls.ca_source = "the test CA file";
  return tls;
}

HttpRequest get(const std::string& target) {
  HttpRequest request;
  request.target = target;
  return request;
}

}  // namespace

TEST_CASE("TLS: the right CA connects, with the IP SAN checked and no SNI for an IP", "[tls]") {
  TlsTestServer server({server_certificate(), std::nullopt}, hello);
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  const auto response = client.send(get("/version"), Deadline::after(10s));
  CHECK(response.status == 200);
  CHECK(response.body == R"({"hello":"world"})");
  REQUIRE(server.request_count() == 1);
  CHECK(server.requests()[0].sni.empty());
  CHECK(server.requests()[0].target == "/version");
}

TEST_CASE("TLS: tls-server-name is verified and sent as SNI", "[tls]") {
  TlsTestServer server({server_certificate(), std::nullopt}, hello);
  auto tls = trusting(cluster_ca());
  tls.server_name = "kubernetes.default.svc";
  HttpsClient client("127.0.0.1", server.port_string(), tls);
  CHECK(client.send(get("/"), Deadline::after(10s)).status == 200);
  CHECK(server.requests()[0].sni == "kubernetes.default.svc");
}

TEST_CASE("TLS: a server signed by another CA is rejected", "[tls]") {
  const TestCa other("some other CA");
  TlsTestServer server({server_certificate(), std::nullopt}, hello);
  HttpsClient client("127.0.0.1", server.port_string(), trusting(other));
  CHECK_THROWS_AS(client.send(get("/"), Deadline::after(10s)), TlsError);
  CHECK_THROWS_WITH(client.send(get("/"), Deadline::after(10s)),
                    Catch::Contains("certificate verify failed") &&
                        Catch::Contains("not signed by the certificate authority from the test CA "
                                        "file"));
  CHECK(server.request_count() == 0);
}

TEST_CASE("TLS: a wrong host name is rejected", "[tls]") {
  TlsTestServer server({server_certificate(), std::nullopt}, hello);
  auto tls = trusting(cluster_ca());
  tls.server_name = "api.wrong.example";
  HttpsClient client("127.0.0.1", server.port_string(), tls);
  CHECK_THROWS_WITH(client.send(get("/"), Deadline::after(10s)),
                    Catch::Contains("hostname mismatch") &&
                        Catch::Contains("not valid for the name \"api.wrong.example\""));
  CHECK(server.request_count() == 0);
}

TEST_CASE("TLS: an IP address missing from the certificate's SANs is rejected", "[tls]") {
  LeafSpec spec;
  spec.dns_names = {"localhost"};
  TlsTestServer server({server_certificate(spec), std::nullopt}, hello);
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  CHECK_THROWS_WITH(client.send(get("/"), Deadline::after(10s)),
                    Catch::Contains("IP address mismatch") && Catch::Contains("127.0.0.1"));
}

TEST_CASE("TLS: an expired certificate is rejected", "[tls]") {
  LeafSpec spec;
  spec.ip_addresses = {"127.0.0.1"};
  spec.not_before = -48h;
  spec.not_after = -24h;
  TlsTestServer server({server_certificate(spec), std::nullopt}, hello);
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  CHECK_THROWS_WITH(client.send(get("/"), Deadline::after(10s)),
                    Catch::Contains("certificate has expired"));
}

TEST_CASE("TLS: system roots do not trust a private CA", "[tls]") {
  TlsTestServer server({server_certificate(), std::nullopt}, hello);
  HttpsClient client("127.0.0.1", server.port_string(), TlsOptions{});
  CHECK_THROWS_WITH(client.send(get("/"), Deadline::after(10s)),
                    Catch::Contains("the system's trusted certificates"));
}

TEST_CASE("TLS: insecure-skip-tls-verify connects to anything", "[tls]") {
  const TestCa other("some other CA");
  TlsTestServer server({other.issue(LeafSpec{}), std::nullopt}, hello);
  TlsOptions tls;
  tls.insecure_skip_verify = true;
  HttpsClient client("127.0.0.1", server.port_string(), tls);
  CHECK(client.send(get("/"), Deadline::after(10s)).status == 200);
}

TEST_CASE("TLS: client certificates", "[tls]") {
  const TestCa client_ca("client CA");
  TlsTestServer server({server_certificate(), client_ca.ca().certificate_pem}, hello);
  SECTION("with a certificate the server trusts") {
    LeafSpec spec;
    spec.common_name = "admin";
    spec.client = true;
    const auto identity = client_ca.issue(spec);
    auto tls = trusting(cluster_ca());
    tls.client_certificate =
        deployapps::ClientCertificate{identity.certificate_pem, identity.key_pem};
    HttpsClient client("127.0.0.1", server.port_string(), tls);
    CHECK(client.send(get("/"), Deadline::after(10s)).status == 200);
  }
  SECTION("without one, the server refuses") {
    HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
    CHECK_THROWS_AS(client.send(get("/"), Deadline::after(10s)), deployapps::NetworkError);
  }
  SECTION("a broken key is a configuration error") {
    auto tls = trusting(cluster_ca());
    tls.client_certificate = deployapps::ClientCertificate{"not pem", "not pem"};
    CHECK_THROWS_AS(HttpsClient("127.0.0.1", server.port_string(), tls), deployapps::ConfigError);
  }
}

TEST_CASE("keep-alive: one connection for several requests", "[http]") {
  TlsTestServer server({server_certificate(), std::nullopt}, hello);
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  for (int i = 0; i < 3; ++i) {
    CHECK(client.send(get("/"), Deadline::after(10s)).status == 200);
  }
  CHECK(client.connections_opened() == 1);
  CHECK(server.connections() == 1);
}

TEST_CASE("a kept-alive connection the server closed is replaced", "[http]") {
  TlsTestServer server({server_certificate(), std::nullopt}, [](const ReceivedRequest&) {
    auto reply = deployapps::testing::json_reply(200, {{"ok", true}});
    reply.close_after = true;  // without saying "Connection: close"
    return reply;
  });
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  CHECK(client.send(get("/"), Deadline::after(10s)).status == 200);
  std::this_thread::sleep_for(50ms);  // let the close arrive
  CHECK(client.send(get("/"), Deadline::after(10s)).status == 200);
  CHECK(client.connections_opened() == 2);
}

TEST_CASE("a server that never answers runs into the deadline", "[http]") {
  TlsTestServer server({server_certificate(), std::nullopt}, [](const ReceivedRequest&) {
    ServerReply reply;
    reply.hang = true;
    return reply;
  });
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  const auto started = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(client.send(get("/"), Deadline::after(300ms)), deployapps::TimeoutError);
  CHECK(std::chrono::steady_clock::now() - started < 5s);
}

TEST_CASE("connection refused is a network error", "[http]") {
  std::string port;
  {
    TlsTestServer server({server_certificate(), std::nullopt}, hello);
    port = server.port_string();
  }
  HttpsClient client("127.0.0.1", port, trusting(cluster_ca()));
  CHECK_THROWS_AS(client.send(get("/"), Deadline::after(5s)), deployapps::NetworkError);
}

TEST_CASE("streams are split into lines whatever the chunking", "[http][watch]") {
  TlsTestServer server({server_certificate(), std::nullopt}, [](const ReceivedRequest&) {
    return deployapps::testing::chunked_reply({R"({"type":"ADDED"})"
                                               "\n"
                                               R"({"ty)",
                                               R"(pe":"MODIFIED"})", "\n\n",
                                               R"({"type":"DELETED"})"
                                               "\r\n"},
                                              5ms);
  });
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  std::vector<std::string> lines;
  const auto head = client.stream_lines(
      get("/watch"),
      [&](std::string_view line) {
        lines.emplace_back(line);
        return true;
      },
      5s, Deadline::after(10s));
  CHECK(head.status == 200);
  CHECK(lines == std::vector<std::string>{R"({"type":"ADDED"})", R"({"type":"MODIFIED"})",
                                          R"({"type":"DELETED"})"});
}

TEST_CASE("a stream may carry more than the parser's default 8 MB", "[http][watch]") {
  const std::string line(1000, 'x');
  TlsTestServer server({server_certificate(), std::nullopt}, [&](const ReceivedRequest&) {
    std::vector<std::string> chunks;
    for (int i = 0; i < 100; ++i) {
      std::string chunk;
      for (int j = 0; j < 100; ++j) {
        chunk += line + "\n";
      }
      chunks.push_back(std::move(chunk));
    }
    return deployapps::testing::chunked_reply(chunks);  // 10 MB in total
  });
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  std::size_t count = 0;
  bool all_whole = true;
  (void)client.stream_lines(
      get("/watch"),
      [&](std::string_view received) {
        ++count;
        all_whole = all_whole && received.size() == line.size();
        return true;
      },
      10s, Deadline::after(60s));
  CHECK(count == 10000);
  CHECK(all_whole);
}

TEST_CASE("a stream stops when the handler says so", "[http][watch]") {
  TlsTestServer server({server_certificate(), std::nullopt}, [](const ReceivedRequest&) {
    return deployapps::testing::chunked_reply({"one\n", "two\n", "three\n"}, 20ms);
  });
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  std::vector<std::string> lines;
  (void)client.stream_lines(
      get("/watch"),
      [&](std::string_view line) {
        lines.emplace_back(line);
        return line != "two";
      },
      5s, Deadline::after(10s));
  CHECK(lines == std::vector<std::string>{"one", "two"});
}

// A stream that sends one line, then nothing: no terminating chunk, and the connection stays open.
static deployapps::testing::ServerReply silent_after_first_line(
    const ReceivedRequest& /*request*/) {
  auto reply = deployapps::testing::chunked_reply({"first\n"});
  reply.pieces.pop_back();
  reply.hang = true;
  return reply;
}

TEST_CASE("a silent stream hits the idle timeout", "[http][watch]") {
  TlsTestServer server({server_certificate(), std::nullopt}, silent_after_first_line);
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  std::vector<std::string> lines;
  CHECK_THROWS_WITH(client.stream_lines(
                        get("/watch"),
                        [&](std::string_view line) {
                          lines.emplace_back(line);
                          return true;
                        },
                        300ms, Deadline::after(10s)),
                    Catch::Contains("no data for 300ms"));
  CHECK(lines == std::vector<std::string>{"first"});
}

TEST_CASE("another thread can end a silent stream at once", "[http][watch]") {
  TlsTestServer server({server_certificate(), std::nullopt}, silent_after_first_line);
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  std::vector<std::string> lines;
  std::atomic<bool> got_first{false};
  std::thread canceller([&] {
    while (!got_first) {
      std::this_thread::sleep_for(5ms);
    }
    client.cancel_stream();
  });
  const auto began = std::chrono::steady_clock::now();
  const auto head = client.stream_lines(
      get("/watch"),
      [&](std::string_view line) {
        lines.emplace_back(line);
        got_first = true;
        return true;
      },
      30s, Deadline::after(60s));
  canceller.join();
  CHECK(head.status == 200);
  CHECK(lines == std::vector<std::string>{"first"});
  CHECK(std::chrono::steady_clock::now() - began < 10s);  // not the 30 s idle timeout
  // Cancelling is sticky: a later stream returns without connecting.
  const auto connections = server.connections();
  (void)client.stream_lines(
      get("/watch"), [](std::string_view) { return true; }, 30s, Deadline::after(60s));
  CHECK(server.connections() == connections);
}

TEST_CASE("a stream that is refused comes back whole", "[http][watch]") {
  TlsTestServer server({server_certificate(), std::nullopt}, [](const ReceivedRequest&) {
    return deployapps::testing::json_reply(
        410, deployapps::testing::status_body(410, "Expired", "too old resource version: 1 (5)"));
  });
  HttpsClient client("127.0.0.1", server.port_string(), trusting(cluster_ca()));
  const auto head = client.stream_lines(
      get("/watch"), [](std::string_view) { return true; }, 5s, Deadline::after(10s));
  CHECK(head.status == 410);
  CHECK(head.body.find("too old resource version") != std::string::npos);
}

namespace {

// Accepts TCP connections and never says a word (an apiserver whose TLS stalls), for at most
// `hold`; then closes them, so a client that ignores its timeouts fails late instead of hanging.
class SilentTcpServer {
 public:
  explicit SilentTcpServer(std::chrono::milliseconds hold) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t length = sizeof address;
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = std::to_string(ntohs(address.sin_port));
    // The kernel completes the TCP handshake from the backlog; nothing is ever read or written.
    closer_ = std::thread([this, hold] {
      std::unique_lock lock(mutex_);
      stopped_.wait_for(lock, hold, [this] { return stop_; });
      ::shutdown(fd_, SHUT_RDWR);
      ::close(fd_);
    });
  }
  SilentTcpServer(const SilentTcpServer&) = delete;
  SilentTcpServer& operator=(const SilentTcpServer&) = delete;
  SilentTcpServer(SilentTcpServer&&) = delete;
  SilentTcpServer& operator=(SilentTcpServer&&) = delete;
  ~SilentTcpServer() {
    {
      const std::lock_guard lock(mutex_);
      stop_ = true;
    }
    stopped_.notify_all();
    closer_.join();
  }
  [[nodiscard]] const std::string& port() const { return port_; }

 private:
  int fd_ = -1;
  std::string port_;
  std::mutex mutex_;
  std::condition_variable stopped_;
  bool stop_ = false;
  std::thread closer_;
};

}  // namespace

TEST_CASE("a watch whose TLS handshake stalls fails within its idle timeout", "[http][watch]") {
  const SilentTcpServer server(20s);
  HttpsClient client("127.0.0.1", server.port(), trusting(cluster_ca()));
  const auto began = std::chrono::steady_clock::now();
  // No overall deadline, as the rollout's watches run: only the idle timeout can end it.
  CHECK_THROWS_AS(
      client.stream_lines(
          get("/watch"), [](std::string_view) { return true; }, 500ms, Deadline::never()),
      deployapps::TimeoutError);
  CHECK(std::chrono::steady_clock::now() - began < 5s);  // not the 20 s the server holds on
}

TEST_CASE("a watch still connecting can be cancelled from another thread", "[http][watch]") {
  const SilentTcpServer server(20s);
  HttpsClient client("127.0.0.1", server.port(), trusting(cluster_ca()));
  std::thread canceller([&] {
    std::this_thread::sleep_for(300ms);
    client.cancel_stream();
  });
  const auto began = std::chrono::steady_clock::now();
  const auto head = client.stream_lines(
      get("/watch"), [](std::string_view) { return true; }, 60s, Deadline::never());
  canceller.join();
  CHECK(head.status == 200);  // ended as if the handler had stopped it
  CHECK(std::chrono::steady_clock::now() - began < 5s);
}

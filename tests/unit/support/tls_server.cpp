#include "support/tls_server.hpp"

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <fmt/format.h>
#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>

namespace deployapps::testing {
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

ServerReply http_reply(unsigned status, const std::string& body,
                       const std::vector<std::pair<std::string, std::string>>& headers,
                       const std::string& content_type) {
  std::string head =
      fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n", status,
                  http::obsolete_reason(http::int_to_status(status)), content_type, body.size());
  for (const auto& [name, value] : headers) {
    head += fmt::format("{}: {}\r\n", name, value);
  }
  head += "\r\n";
  return ServerReply{{head + body}};
}

ServerReply json_reply(unsigned status, const nlohmann::json& body,
                       const std::vector<std::pair<std::string, std::string>>& headers) {
  return http_reply(status, body.dump(), headers);
}

ServerReply chunked_reply(const std::vector<std::string>& chunks, std::chrono::milliseconds pause) {
  ServerReply reply;
  reply.pause = pause;
  reply.pieces.emplace_back(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (const auto& chunk : chunks) {
    reply.pieces.push_back(fmt::format("{:x}\r\n{}\r\n", chunk.size(), chunk));
  }
  reply.pieces.emplace_back("0\r\n\r\n");
  return reply;
}

nlohmann::json status_body(unsigned code, const std::string& reason, const std::string& message,
                           const nlohmann::json& causes) {
  nlohmann::json status = {
      {"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", nlohmann::json::object()},
      {"status", "Failure"}, {"message", message}, {"reason", reason},
      {"code", code}};
  if (!causes.is_null()) {
    status["details"] = {{"causes", causes}};
  }
  return status;
}

namespace {

std::map<std::string, std::string> parse_query(const std::string& query) {
  std::map<std::string, std::string> out;
  std::size_t start = 0;
  while (start < query.size()) {
    auto end = query.find('&', start);
    if (end == std::string::npos) {
      end = query.size();
    }
    const auto pair = query.substr(start, end - start);
    const auto equals = pair.find('=');
    std::string value = equals == std::string::npos ? "" : pair.substr(equals + 1);
    std::string decoded;
    for (std::size_t i = 0; i < value.size(); ++i) {
      if (value[i] == '%' && i + 2 < value.size()) {
        decoded += static_cast<char>(std::stoi(value.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        decoded += value[i];
      }
    }
    out[pair.substr(0, equals)] = decoded;
    start = end + 1;
  }
  return out;
}

}  // namespace

class TlsTestServer::Impl {
 public:
  Impl(TlsTestServer& owner, ServerTls tls, ServerHandler handler)
      : owner_(owner),
        context_(ssl::context::tls_server),
        handler_(std::move(handler)),
        acceptor_(io_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)) {
    context_.use_certificate_chain(net::buffer(tls.server.certificate_pem));
    context_.use_private_key(net::buffer(tls.server.key_pem), ssl::context::pem);
    if (tls.client_ca_pem) {
      context_.add_certificate_authority(net::buffer(*tls.client_ca_pem));
      context_.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    }
    port = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { accept_loop(); });
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  ~Impl() {
    stopping_ = true;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    {
      const std::lock_guard lock(mutex_);
      for (const int fd : open_fds_) {
        ::shutdown(fd, SHUT_RDWR);
      }
    }
    accept_thread_.join();
    for (auto& thread : connection_threads_) {
      thread.join();
    }
  }

  std::vector<ReceivedRequest> requests() const {
    const std::lock_guard lock(mutex_);
    return requests_;
  }

  unsigned short port = 0;

 private:
  void accept_loop() {
    while (!stopping_) {
      tcp::socket socket(io_);
      beast::error_code error;
      acceptor_.accept(socket, error);
      if (error || stopping_) {
        return;
      }
      ++owner_.connections_;
      const std::lock_guard lock(mutex_);
      open_fds_.push_back(socket.native_handle());
      connection_threads_.emplace_back(
          [this, s = std::move(socket)]() mutable { serve(std::move(s)); });
    }
  }

  // Drops a socket from the list the destructor shuts down, before it is closed (its number may
  // be reused by another socket afterwards).
  void forget(int fd) {
    const std::lock_guard lock(mutex_);
    open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
  }

  void serve(tcp::socket socket) {
    const int fd = socket.native_handle();
    ssl::stream<tcp::socket> stream(std::move(socket), context_);
    struct Forget {
      Impl& impl;
      int fd;
      ~Forget() { impl.forget(fd); }
    } forget_on_exit{*this, fd};  // destroyed before `stream` closes the socket
    beast::error_code error;
    stream.handshake(ssl::stream_base::server, error);
    if (error) {
      return;
    }
    const char* sni = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name);
    beast::flat_buffer buffer;
    while (!stopping_) {
      http::request<http::string_body> request;
      http::read(stream, buffer, request, error);
      if (error) {
        return;
      }
      ReceivedRequest received;
      received.method = std::string(request.method_string());
      received.target = std::string(request.target());
      const auto question = received.target.find('?');
      received.path = received.target.substr(0, question);
      if (question != std::string::npos) {
        received.query = parse_query(received.target.substr(question + 1));
      }
      for (const auto& field : request) {
        std::string name(field.name_string());
        for (auto& c : name) {
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        received.headers[name] = std::string(field.value());
      }
      received.body = request.body();
      received.sni = sni != nullptr ? sni : "";
      {
        const std::lock_guard lock(mutex_);
        requests_.push_back(received);
      }
      const auto reply = handler_(received);
      if (reply.reset) {
        forget(fd);
        beast::get_lowest_layer(stream).close(error);
        return;
      }
      for (const auto& piece : reply.pieces) {
        net::write(stream, net::buffer(piece), error);
        if (error) {
          return;
        }
        if (reply.pause.count() > 0) {
          std::this_thread::sleep_for(reply.pause);
        }
      }
      if (reply.hang) {
        while (!stopping_) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return;
      }
      if (reply.close_after) {
        stream.shutdown(error);
        forget(fd);
        beast::get_lowest_layer(stream).close(error);
        return;
      }
    }
  }

  TlsTestServer& owner_;
  net::io_context io_;
  ssl::context context_;
  ServerHandler handler_;
  tcp::acceptor acceptor_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::vector<int> open_fds_;
  std::vector<ReceivedRequest> requests_;
  std::thread accept_thread_;
  std::vector<std::thread> connection_threads_;
};

TlsTestServer::TlsTestServer(ServerTls tls, ServerHandler handler)
    : impl_(std::make_unique<Impl>(*this, std::move(tls), std::move(handler))) {
  port_ = impl_->port;
}

TlsTestServer::~TlsTestServer() = default;

std::vector<ReceivedRequest> TlsTestServer::requests() const {
  return impl_->requests();
}

std::size_t TlsTestServer::request_count() const {
  return impl_->requests().size();
}

}  // namespace deployapps::testing

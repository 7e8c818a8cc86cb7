#include "deployapps/http_client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <strings.h>
#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <limits>

#include "deployapps/budget.hpp"
#include "deployapps/errors.hpp"

namespace deployapps {
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& header : headers) {
    if (header.name.size() == name.size() &&
        ::strncasecmp(header.name.c_str(), name.data(), name.size()) == 0) {
      return header.value;
    }
  }
  return std::nullopt;
}

std::vector<std::string> HttpResponse::headers_named(std::string_view name) const {
  std::vector<std::string> values;
  for (const auto& header : headers) {
    if (header.name.size() == name.size() &&
        ::strncasecmp(header.name.c_str(), name.data(), name.size()) == 0) {
      values.push_back(header.value);
    }
  }
  return values;
}

namespace {

// Time allowed for the TLS close_notify exchange when closing a connection.

bool is_ip_literal(const std::string& host) {
  beast::error_code error;
  net::ip::make_address(host, error);
  return !error;
}

ssl::context make_ssl_context(const TlsOptions& tls) {
  ssl::context context(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_2_VERSION);
  if (tls.insecure_skip_verify) {
    context.set_verify_mode(ssl::verify_none);
  } else {
    context.set_verify_mode(ssl::verify_peer);
    beast::error_code error;
    if (tls.ca_pem) {
      // A fresh context trusts nothing, so only this CA is trusted (as client-go does).
      context.add_certificate_authority(net::buffer(*tls.ca_pem), error);
      if (error) {
        throw ConfigError(
            fmt::format("certificate authority from {} is not a valid PEM "
                        "certificate: {}",
                        tls.ca_source, error.message()));
      }
    } else {
      context.set_default_verify_paths(error);
      if (error) {
        throw ConfigError("cannot load the system's trusted certificates: " + error.message());
      }
    }
  }
  if (tls.client_certificate) {
    beast::error_code error;
    context.use_certificate_chain(net::buffer(tls.client_certificate->certificate_pem), error);
    if (error) {
      throw ConfigError("client certificate is not a valid PEM certificate: " + error.message());
    }
    context.use_private_key(net::buffer(tls.client_certificate->key_pem), ssl::context::pem, error);
    if (error) {
      throw ConfigError("client key is not a valid PEM private key: " + error.message());
    }
  }
  return context;
}

// Explains a failed certificate verification in words a user can act on.
std::string explain_verify_failure(long result, const std::string& name, const TlsOptions& tls) {
  std::string what = X509_verify_cert_error_string(result);
  const std::string trusted = tls.ca_pem
                                  ? fmt::format("the certificate authority from {}", tls.ca_source)
                                  : std::string("the system's trusted certificates");
  switch (result) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
      return fmt::format(
          "{}: the server's certificate is not valid for the name \"{}\" (set "
          "tls-server-name to a name the certificate has)",
          what, name);
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return fmt::format(
          "{}: the server's certificate has no IP address SAN {} (set "
          "tls-server-name to a name the certificate has)",
          what, name);
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return fmt::format("{}: the server's certificate is past its notAfter date", what);
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return fmt::format("{}: the server's certificate is not valid yet (check the clock)", what);
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return fmt::format("{}: the server's certificate is not signed by {}", what, trusted);
    default:
      return what;
  }
}

// Runs one asynchronous operation to completion on the private io_context.
template <class Start>
beast::error_code run_operation(net::io_context& context, Start&& start) {
  beast::error_code result = net::error::would_block;
  std::forward<Start>(start)(
      [&result](beast::error_code error, auto&&... /*ignored*/) { result = error; });
  context.restart();
  context.run();
  return result;
}

using Stream = beast::ssl_stream<beast::tcp_stream>;

void set_expiry(Stream& stream, Deadline deadline) {
  if (deadline.is_never()) {
    beast::get_lowest_layer(stream).expires_never();
  } else {
    beast::get_lowest_layer(stream).expires_at(deadline.when());
  }
}

bool is_connection_closed(const beast::error_code& error) {
  return error == http::error::end_of_stream || error == net::error::eof ||
         error == net::error::connection_reset || error == net::error::broken_pipe ||
         error == ssl::error::stream_truncated;
}

// Splits a byte stream into lines, whatever the chunk boundaries.
class LineSplitter {
 public:
  explicit LineSplitter(const LineHandler& on_line) : on_line_(on_line) {}

  // Returns false when the handler asked to stop.
  bool feed(const char* data, std::size_t size) {
    std::string_view input(data, size);
    while (!input.empty()) {
      const auto newline = input.find('\n');
      if (newline == std::string_view::npos) {
        pending_.append(input);
        if (pending_.size() > kMaxStreamLineBytes) {
          throw NetworkError(
              fmt::format("a streamed line is longer than {} bytes", kMaxStreamLineBytes));
        }
        return true;
      }
      pending_.append(input.substr(0, newline));
      input.remove_prefix(newline + 1);
      if (!deliver()) {
        return false;
      }
    }
    return true;
  }

  bool finish() { return pending_.empty() || deliver(); }

 private:
  bool deliver() {
    std::string_view line(pending_);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    const bool more = line.empty() || on_line_(line);
    pending_.clear();
    return more;
  }

  const LineHandler& on_line_;
  std::string pending_;
};

}  // namespace

class HttpsClient::Impl {
 public:
  Impl(std::string host, std::string port, TlsOptions tls)
      : host_(std::move(host)),
        port_(std::move(port)),
        tls_(std::move(tls)),
        verify_name_(tls_.server_name.empty() ? host_ : tls_.server_name),
        ssl_context_(make_ssl_context(tls_)) {
    if (tls_.insecure_skip_verify) {
      spdlog::warn(
          "TLS verification is OFF for {}:{} (insecure-skip-tls-verify): anyone on the "
          "network path can impersonate the API server",
          host_, port_);
    }
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;
  ~Impl() { close(); }

  HttpResponse send(const HttpRequest& request, Deadline deadline) {
    // A kept-alive connection may have been closed by the server while idle; for idempotent
    // requests, one more try on a fresh connection is safe.
    for (int attempt = 0;; ++attempt) {
      if (connection_ != nullptr && peer_closed(*connection_)) {
        drop();  // no TLS goodbye: the server has already gone
      }
      const bool reused = connection_ != nullptr;
      if (!reused) {
        connection_ = connect(deadline);
      }
      auto& connection = *connection_;
      auto message = to_beast(request);
      set_expiry(connection.stream, deadline);
      auto error = run_operation(context_, [&](auto handler) {
        http::async_write(connection.stream, message, std::move(handler));
      });
      http::response_parser<http::string_body> parser;
      parser.body_limit(kMaxResponseBodyBytes);
      if (!error) {
        set_expiry(connection.stream, deadline);
        error = run_operation(context_, [&](auto handler) {
          http::async_read(connection.stream, connection.buffer, parser, std::move(handler));
        });
      }
      if (error) {
        const bool nothing_received = !parser.got_some();
        connection_.reset();
        if (reused && request.idempotent && attempt == 0 && nothing_received &&
            is_connection_closed(error)) {
          spdlog::debug("kept-alive connection to {}:{} was closed; reconnecting", host_, port_);
          continue;
        }
        throw_network_error(fmt::format("{} {}", request.method, request.target), error, deadline);
      }
      auto response = parser.release();
      if (!response.keep_alive()) {
        close();
      }
      HttpResponse result = from_beast(response);
      result.body = std::move(response.body());
      return result;
    }
  }

  HttpResponse stream_lines(const HttpRequest& request, const LineHandler& on_line,
                            Duration idle_timeout, Deadline deadline) {
    if (stream_cancelled_) {
      return cancelled_head();
    }
    // cancel_stream() reaches the socket through this, on the io_context's thread, from the
    // moment it starts connecting: a stalled connect or handshake must not outlive a cancel.
    struct ActiveReset {
      beast::tcp_stream*& active;
      explicit ActiveReset(beast::tcp_stream*& stream) : active(stream) {}
      ActiveReset(const ActiveReset&) = delete;
      ActiveReset& operator=(const ActiveReset&) = delete;
      ActiveReset(ActiveReset&&) = delete;
      ActiveReset& operator=(ActiveReset&&) = delete;
      ~ActiveReset() { active = nullptr; }
    } active_reset{active_stream_};
    // Connecting, the handshake and sending the request make no progress either: each is bounded
    // by the idle timeout too, so a watch on a stalled server fails instead of waiting forever.
    const auto setup_deadline = deadline.at_most(idle_timeout);
    std::unique_ptr<Connection> connection;
    try {
      connection = connect(setup_deadline, &active_stream_);
    } catch (const Error&) {
      if (stream_cancelled_) {
        return cancelled_head();
      }
      throw;
    }
    auto& stream = connection->stream;
    auto message = to_beast(request);
    set_expiry(stream, setup_deadline);
    auto error = run_operation(
        context_, [&](auto handler) { http::async_write(stream, message, std::move(handler)); });
    if (error && stream_cancelled_) {
      return cancelled_head();
    }
    if (error) {
      throw_network_error(fmt::format("{} {}", request.method, request.target), error, deadline);
    }
    // buffer_body hands over the body piece by piece; watches run for minutes and may carry
    // more than the parser's default 8 MB limit in total, so the limit is lifted. (Not with
    // boost::none: Boost 1.74 compares a Content-Length against the empty optional and fails.)
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    const auto wait = [&] { set_expiry(stream, deadline.at_most(idle_timeout)); };
    wait();
    error = run_operation(context_, [&](auto handler) {
      http::async_read_header(stream, connection->buffer, parser, std::move(handler));
    });
    if (error && stream_cancelled_) {
      return cancelled_head();
    }
    if (error) {
      throw_stream_error(request, error, idle_timeout, deadline);
    }
    HttpResponse head = from_beast(parser.get());
    const bool streaming = head.status == 200;
    LineSplitter splitter(on_line);
    std::array<char, std::size_t{64} * 1024> buffer{};
    bool stopped = false;
    while (!parser.is_done()) {
      if (stream_cancelled_) {
        stopped = true;
        break;
      }
      parser.get().body().data = buffer.data();
      parser.get().body().size = buffer.size();
      wait();
      error = run_operation(context_, [&](auto handler) {
        http::async_read_some(stream, connection->buffer, parser, std::move(handler));
      });
      if (error == http::error::need_buffer) {
        error = {};
      }
      const auto received = buffer.size() - parser.get().body().size;
      if (error && stream_cancelled_) {
        stopped = true;
        break;
      }
      if (error) {
        throw_stream_error(request, error, idle_timeout, deadline);
      }
      if (streaming) {
        if (!splitter.feed(buffer.data(), received)) {
          stopped = true;
          break;
        }
      } else if (head.body.size() < kMaxResponseBodyBytes) {
        head.body.append(buffer.data(), received);
      }
    }
    if (streaming && !stopped) {
      splitter.finish();
    }
    // Closed without the TLS goodbye when stopped early: the server is still sending.
    if (stopped) {
      beast::error_code ignored;
      beast::get_lowest_layer(stream).socket().close(ignored);
    } else {
      shutdown(*connection);
    }
    return head;
  }

  void cancel_stream() {
    stream_cancelled_ = true;
    net::post(context_, [this] {
      if (active_stream_ != nullptr) {
        beast::error_code ignored;
        active_stream_->socket().cancel(ignored);
      }
    });
  }

  void set_client_certificate(std::optional<ClientCertificate> certificate) {
    if (tls_.client_certificate == certificate) {
      return;
    }
    close();
    tls_.client_certificate = std::move(certificate);
    ssl_context_ = make_ssl_context(tls_);
  }

  void close() {
    if (connection_) {
      shutdown(*connection_);
      connection_.reset();
    }
  }

  void drop() {
    if (connection_) {
      beast::error_code ignored;
      beast::get_lowest_layer(connection_->stream).socket().close(ignored);
      connection_.reset();
    }
  }

  [[nodiscard]] std::size_t connections_opened() const noexcept { return connections_opened_; }

 private:
  struct Connection {
    Connection(net::io_context& context, ssl::context& ssl_context)
        : stream(context, ssl_context) {}
    Stream stream;
    beast::flat_buffer buffer;
  };

  // What stream_lines returns when cancelled before it began: a stream that ended at once.
  static HttpResponse cancelled_head() {
    HttpResponse head;
    head.status = 200;
    head.reason = "OK";
    return head;
  }

  // True when an idle kept-alive connection has data or EOF pending: the server closed it.
  static bool peer_closed(Connection& connection) {
    pollfd fd{beast::get_lowest_layer(connection.stream).socket().native_handle(), POLLIN, 0};
    return ::poll(&fd, 1, 0) != 0;
  }

  // `active`, when given, points at the socket while it connects, for cancel_stream().
  std::unique_ptr<Connection> connect(Deadline deadline, beast::tcp_stream** active = nullptr) {
    auto connection = std::make_unique<Connection>(context_, ssl_context_);
    auto& stream = connection->stream;
    if (active != nullptr) {
      *active = &beast::get_lowest_layer(stream);
    }
    const auto endpoints = resolve(deadline);
    set_expiry(stream, deadline);
    auto error = run_operation(context_, [&](auto handler) {
      beast::get_lowest_layer(stream).async_connect(endpoints, std::move(handler));
    });
    if (error) {
      throw_network_error("connect", error, deadline);
    }
    beast::get_lowest_layer(stream).socket().set_option(tcp::no_delay(true));
    SSL* ssl = stream.native_handle();
    // SNI carries a DNS name only; an IP literal is never sent (RFC 6066), as Go does.
    if (!is_ip_literal(verify_name_)) {
      // SSL_set_tlsext_host_name is a macro with a C cast; this is what it expands to.
      // OpenSSL copies the name; its void* parameter is not written to.
      SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(verify_name_.c_str()));  // NOLINT(*-pro-type-const-cast)
    }
    if (!tls_.insecure_skip_verify) {
      // OpenSSL checks the name during verification (DNS SANs for names, IP SANs for
      // addresses), which is what ssl::host_name_verification does, but it keeps the exact
      // reason (hostname or IP mismatch) for the error message.
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      const int ok = is_ip_literal(verify_name_)
                         ? X509_VERIFY_PARAM_set1_ip_asc(param, verify_name_.c_str())
                         : X509_VERIFY_PARAM_set1_host(param, verify_name_.c_str(), 0);
      if (ok != 1) {
        throw TlsError(fmt::format("cannot verify against the name \"{}\"", verify_name_));
      }
    }
    set_expiry(stream, deadline);
    error = run_operation(context_, [&](auto handler) {
      stream.async_handshake(ssl::stream_base::client, std::move(handler));
    });
    if (error) {
      const long result = SSL_get_verify_result(ssl);
      if (error == beast::error::timeout) {
        throw_network_error("TLS handshake", error, deadline);
      }
      if (result != X509_V_OK && !tls_.insecure_skip_verify) {
        throw TlsError(fmt::format("TLS handshake with {}:{} failed: certificate verify failed: {}",
                                   host_, port_,
                                   explain_verify_failure(result, verify_name_, tls_)));
      }
      throw TlsError(
          fmt::format("TLS handshake with {}:{} failed: {}", host_, port_, error.message()));
    }
    ++connections_opened_;
    spdlog::trace("connected to {}:{} (TLS, verify name {})", host_, port_, verify_name_);
    return connection;
  }

  std::vector<tcp::endpoint> resolve(Deadline deadline) {
    const auto port = static_cast<unsigned short>(std::stoul(port_));
    beast::error_code error;
    const auto address = net::ip::make_address(host_, error);
    if (!error) {
      return {tcp::endpoint(address, port)};
    }
    tcp::resolver resolver(context_);
    net::steady_timer timer(context_);
    std::vector<tcp::endpoint> endpoints;
    bool timed_out = false;
    if (!deadline.is_never()) {
      timer.expires_at(deadline.when());
      timer.async_wait([&](beast::error_code timer_error) {
        if (!timer_error) {
          timed_out = true;
          resolver.cancel();
        }
      });
    }
    resolver.async_resolve(
        host_, port_,
        [&](beast::error_code resolve_error, const tcp::resolver::results_type& results) {
          timer.cancel();
          error = resolve_error;
          for (const auto& entry : results) {
            endpoints.push_back(entry.endpoint());
          }
        });
    context_.restart();
    context_.run();
    if (timed_out) {
      throw TimeoutError(fmt::format("resolving {} timed out", host_));
    }
    if (error || endpoints.empty()) {
      throw NetworkError(fmt::format("cannot resolve {}: {}", host_, error.message()));
    }
    return endpoints;
  }

  void shutdown(Connection& connection) {
    set_expiry(connection.stream, Deadline::after(kConnectionShutdownTimeout));
    // The server may already have gone; only the goodbye is skipped then.
    (void)run_operation(
        context_, [&](auto handler) { connection.stream.async_shutdown(std::move(handler)); });
    beast::error_code ignored;
    beast::get_lowest_layer(connection.stream).socket().close(ignored);
  }

  http::request<http::string_body> to_beast(const HttpRequest& request) const {
    http::request<http::string_body> message;
    message.method_string(request.method);
    message.target(request.target);
    message.version(11);
    const bool ipv6 = host_.find(':') != std::string::npos;
    message.set(http::field::host, port_ == "443" ? host_
                                                  : fmt::format("{}{}{}:{}", ipv6 ? "[" : "", host_,
                                                                ipv6 ? "]" : "", port_));
    for (const auto& header : request.headers) {
      message.set(header.name, header.value);
    }
    message.keep_alive(true);
    message.body() = request.body;
    message.prepare_payload();
    return message;
  }

  template <class Message>
  static HttpResponse from_beast(const Message& message) {
    HttpResponse response;
    response.status = message.result_int();
    response.reason = std::string(message.reason());
    for (const auto& field : message) {
      response.headers.push_back(
          HttpHeader{std::string(field.name_string()), std::string(field.value())});
    }
    return response;
  }

  [[noreturn]] void throw_network_error(const std::string& what, const beast::error_code& error,
                                        Deadline deadline) const {
    if (error == beast::error::timeout ||
        (deadline.expired() && error == net::error::operation_aborted)) {
      throw TimeoutError(fmt::format("{} to {}:{} timed out", what, host_, port_));
    }
    if (error == ssl::error::stream_truncated) {
      throw NetworkError(
          fmt::format("{} to {}:{}: the server closed the connection", what, host_, port_));
    }
    if (error.category() == net::error::get_ssl_category()) {
      throw TlsError(
          fmt::format("{} to {}:{}: TLS error: {}", what, host_, port_, error.message()));
    }
    throw NetworkError(fmt::format("{} to {}:{} failed: {}", what, host_, port_, error.message()));
  }

  [[noreturn]] void throw_stream_error(const HttpRequest& request, const beast::error_code& error,
                                       Duration idle_timeout, Deadline deadline) const {
    if (error == beast::error::timeout && !deadline.expired()) {
      throw TimeoutError(fmt::format("stream {} from {}:{}: no data for {}", request.target, host_,
                                     port_, format_duration(idle_timeout)));
    }
    throw_network_error(fmt::format("stream {}", request.target), error, deadline);
  }

  std::string host_;
  std::string port_;
  TlsOptions tls_;
  std::string verify_name_;
  net::io_context context_;
  ssl::context ssl_context_;
  std::unique_ptr<Connection> connection_;
  std::size_t connections_opened_ = 0;
  std::atomic<bool> stream_cancelled_{false};
  beast::tcp_stream* active_stream_ = nullptr;  // the streaming socket; io_context thread only
};

HttpsClient::HttpsClient(std::string host, std::string port, TlsOptions tls)
    : impl_(std::make_unique<Impl>(std::move(host), std::move(port), std::move(tls))) {}
HttpsClient::HttpsClient(HttpsClient&&) noexcept = default;
HttpsClient& HttpsClient::operator=(HttpsClient&&) noexcept = default;
HttpsClient::~HttpsClient() = default;

HttpResponse HttpsClient::send(const HttpRequest& request, Deadline deadline) {
  return impl_->send(request, deadline);
}

HttpResponse HttpsClient::stream_lines(const HttpRequest& request, const LineHandler& on_line,
                                       Duration idle_timeout, Deadline deadline) {
  return impl_->stream_lines(request, on_line, idle_timeout, deadline);
}

void HttpsClient::set_client_certificate(std::optional<ClientCertificate> certificate) {
  impl_->set_client_certificate(std::move(certificate));
}

void HttpsClient::close() {
  impl_->close();
}

void HttpsClient::cancel_stream() {
  impl_->cancel_stream();
}

std::size_t HttpsClient::connections_opened() const noexcept {
  return impl_->connections_opened();
}

}  // namespace deployapps

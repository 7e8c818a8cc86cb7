#include "probe_test_server.hpp"

#include <charconv>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include <boost/asio/detached.hpp>

#include "asio.hpp"

namespace deployapps::probe::testing {
namespace {

// The value of `name` in the target's query, or -1.
long query_value(std::string_view target, std::string_view name) {
  const auto query = target.find('?');
  if (query == std::string_view::npos) {
    return -1;
  }
  const std::string key = std::string(name) + "=";
  const auto at = target.find(key, query);
  if (at == std::string_view::npos) {
    return -1;
  }
  long value = -1;
  const char* first = target.data() + at + key.size();
  std::from_chars(first, target.data() + target.size(), value);
  return value;
}

}  // namespace

class TestServer::Impl {
 public:
  Impl(Policy policy, std::chrono::milliseconds line_interval)
      : policy_(policy ? std::move(policy) : [](const ServerRequest&) { return Reply::ok; }),
        line_interval_(line_interval) {
    acceptor_.open(tcp::v4());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(tcp::endpoint(net::ip::address_v4::loopback(), 0));
    acceptor_.listen();
    net::co_spawn(ioc_, accept_loop(), net::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }

  ~Impl() {
    ioc_.stop();
    thread_.join();
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  void set_version(std::string version) {
    std::lock_guard lock(mutex_);
    version_ = std::move(version);
  }
  std::string version() const {
    std::lock_guard lock(mutex_);
    return version_;
  }
  std::string last_host() const {
    std::lock_guard lock(mutex_);
    return last_host_;
  }
  std::atomic<std::size_t> connections{0};
  std::atomic<std::size_t> requests{0};

 private:
  net::awaitable<void> accept_loop() {
    for (;;) {
      tcp::socket socket = co_await acceptor_.async_accept(net::use_awaitable);
      net::co_spawn(ioc_, session(std::move(socket), ++connections), net::detached);
    }
  }

  // Raw response bytes on purpose: the tests need exact control over framing and closing.
  std::string head(int status, std::string_view reason, bool keep_alive,
                   std::string_view framing) const {
    return fmt::format(
        "HTTP/1.1 {} {}\r\nX-App-Name: test\r\nX-App-Version: {}\r\nX-Served-By: test-server\r\n"
        "Connection: {}\r\n{}\r\n",
        status, reason, version(), keep_alive ? "keep-alive" : "close", framing);
  }

  net::awaitable<void> pause(std::chrono::milliseconds delay) {
    net::steady_timer timer(co_await net::this_coro::executor, delay);
    co_await timer.async_wait(net::use_awaitable);
  }

  net::awaitable<void> session(tcp::socket socket, std::uint64_t connection) {
    beast::flat_buffer buffer;
    error_code ec;
    for (unsigned on_connection = 1;; ++on_connection) {
      http::request<http::string_body> request;
      co_await http::async_read(socket, buffer, request,
                                net::redirect_error(net::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      ++requests;
      {
        std::lock_guard lock(mutex_);
        last_host_ = std::string(request[http::field::host]);
      }
      const std::string target(request.target());
      const Reply reply =
          policy_({std::string(request.method_string()), target, connection, on_connection});
      switch (reply) {
        case Reply::drop:
          socket.close(ec);
          co_return;
        case Reply::reset:
          socket.set_option(net::socket_base::linger(true, 0), ec);
          socket.close(ec);
          co_return;
        case Reply::hang:
          while (!ec) {  // until the client gives up
            co_await socket.async_read_some(net::buffer(scratch_),
                                            net::redirect_error(net::use_awaitable, ec));
          }
          co_return;
        default:
          break;
      }
      const bool keep_alive = request.keep_alive() && reply != Reply::connection_close;
      std::string_view path = target;
      path = path.substr(0, path.find('?'));
      if (path == "/stream") {
        const long lines = std::max(query_value(target, "seconds"), 1L);
        co_await net::async_write(
            socket, net::buffer(head(200, "OK", keep_alive, "Transfer-Encoding: chunked\r\n")),
            net::redirect_error(net::use_awaitable, ec));
        const bool cut = reply == Reply::truncate || reply == Reply::short_stream;
        const long sent = cut ? lines / 2 : lines;
        for (long line = 1; line <= sent && !ec; ++line) {
          co_await pause(line_interval_);
          const std::string text = fmt::format("line {} of {}\n", line, lines);
          co_await net::async_write(socket,
                                    net::buffer(fmt::format("{:x}\r\n{}\r\n", text.size(), text)),
                                    net::redirect_error(net::use_awaitable, ec));
        }
        if (reply == Reply::truncate) {
          socket.close(ec);
          co_return;
        }
        co_await net::async_write(socket, net::buffer(std::string_view("0\r\n\r\n")),
                                  net::redirect_error(net::use_awaitable, ec));
      } else {
        if (const long sleep = query_value(target, "sleep"); sleep > 0) {
          co_await pause(std::chrono::milliseconds(sleep));
        }
        std::string response;
        if (reply == Reply::status_503) {
          response = head(503, "Service Unavailable", keep_alive, "Content-Length: 4\r\n") + "Bye!";
        } else if (reply == Reply::status_404) {
          response = head(404, "Not Found", keep_alive, "Content-Length: 4\r\n") + "Nah!";
        } else if (reply == Reply::truncate) {
          response = head(200, "OK", keep_alive, "Content-Length: 10\r\n") + "Hi!";
        } else {
          response = head(200, "OK", keep_alive, "Content-Length: 3\r\n") + "Hi!";
        }
        co_await net::async_write(socket, net::buffer(response),
                                  net::redirect_error(net::use_awaitable, ec));
        if (reply == Reply::truncate || reply == Reply::ok_then_close_idle) {
          socket.shutdown(tcp::socket::shutdown_send, ec);
          socket.close(ec);
          co_return;
        }
      }
      if (ec || !keep_alive) {
        socket.shutdown(tcp::socket::shutdown_send, ec);
        socket.close(ec);
        co_return;
      }
    }
  }

  Policy policy_;
  std::chrono::milliseconds line_interval_;
  mutable std::mutex mutex_;
  std::string version_ = "v1";
  std::string last_host_;
  std::array<char, 4096> scratch_{};
  net::io_context ioc_{1};  // before the acceptor: it must outlive every I/O object
  tcp::acceptor acceptor_{ioc_};
  std::thread thread_;
};

TestServer::TestServer(Policy policy, std::chrono::milliseconds line_interval)
    : impl_(std::make_unique<Impl>(std::move(policy), line_interval)) {}
TestServer::~TestServer() = default;
std::uint16_t TestServer::port() const {
  return impl_->port();
}
std::string TestServer::url() const {
  return fmt::format("http://127.0.0.1:{}", port());
}
void TestServer::set_version(std::string version) {
  impl_->set_version(std::move(version));
}
std::size_t TestServer::connections() const {
  return impl_->connections.load();
}
std::size_t TestServer::requests() const {
  return impl_->requests.load();
}
std::string TestServer::last_host_header() const {
  return impl_->last_host();
}

std::uint16_t closed_port() {
  net::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::address_v4::loopback(), 0));
  const std::uint16_t port = acceptor.local_endpoint().port();
  acceptor.close();
  return port;
}

}  // namespace deployapps::probe::testing

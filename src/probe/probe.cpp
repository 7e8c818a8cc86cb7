// The probe's traffic: one io_context thread, one coroutine per worker, a deadline on every
// network operation, and one Record per request. Nothing is retried.
#include "deployapps/probe/probe.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <ctime>
#include <exception>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "asio.hpp"

namespace deployapps::probe {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kBodyLimit = std::size_t{1024} * 1024;
constexpr std::size_t kFailuresLogged = 10;  // then only counted, so a dead target can't flood
// Least time between the starts of two requests of one worker: a refusing target answers in
// microseconds, and back-to-back workers would otherwise spin and record millions of failures.
constexpr auto kMinimumInterval = std::chrono::milliseconds(10);
constexpr const char* kUserAgent = "deploy-apps-probe";

// RFC 6761 6.3: "localhost" names are loopback, without asking DNS (curl and browsers do this).
bool is_localhost_name(std::string_view host) {
  constexpr std::string_view kSuffix = ".localhost";
  return host == "localhost" ||
         (host.size() > kSuffix.size() && host.substr(host.size() - kSuffix.size()) == kSuffix);
}

std::string rfc3339_utc(std::chrono::system_clock::time_point when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count() % 1000;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
}

// The request-target a request of `kind` sends (the apps read the sleep and stream length there).
std::string request_target(const Target& target, const Config& config, RequestKind kind) {
  switch (kind) {
    case RequestKind::stream:
      return fmt::format("{}/stream?seconds={}", target.path_prefix, config.stream_length.count());
    case RequestKind::long_get:
      return fmt::format("{}/?sleep={}", target.path_prefix, config.long_sleep.count());
    case RequestKind::keepalive_get:
    case RequestKind::keepalive_post:
    case RequestKind::fresh_get:
      break;
  }
  return fmt::format("{}/?sleep={}", target.path_prefix, config.short_sleep.count());
}

// Error class of a failure before the response headers were complete.
ErrorClass classify_transport(const error_code& ec) {
  if (ec == beast::error::timeout || ec == net::error::timed_out) {
    return ErrorClass::timeout;
  }
  if (ec == net::error::connection_refused) {
    return ErrorClass::refused;
  }
  if (ec == net::error::connection_reset || ec == net::error::broken_pipe ||
      ec == net::error::connection_aborted) {
    return ErrorClass::reset;
  }
  if (ec == net::error::eof || ec == http::error::end_of_stream ||
      ec == http::error::partial_message) {
    return ErrorClass::eof;
  }
  return ErrorClass::other;
}

ErrorClass classify_status(int status) {
  if (status >= 200 && status < 300) {
    return ErrorClass::none;
  }
  if (status >= 500 && status < 600) {
    return ErrorClass::http_5xx;
  }
  if (status >= 400 && status < 500) {
    return ErrorClass::http_4xx;
  }
  return ErrorClass::other;
}

}  // namespace

// Internal types used by Probe::Impl (a named namespace: Impl has external linkage).
namespace internal {

// What one request sends and what it expects back.
struct RequestSpec {
  RequestKind kind = RequestKind::keepalive_get;
  int worker = 0;
  http::verb method = http::verb::get;
  std::string target;
  std::chrono::milliseconds server_time{0};  // how long the server is asked to take
  bool close_after = false;                  // one connection per request
  std::uint32_t expected_lines = 0;          // streams: lines the server promises
};

class Connection;

}  // namespace internal

using internal::Connection;
using internal::RequestSpec;

class Probe::Impl {
 public:
  explicit Impl(Config config)
      : config_(std::move(config)),
        target_(Target::parse(config_.url)),
        host_header_(config_.host_header.empty() ? target_.authority : config_.host_header),
        log_(config_.logger ? config_.logger : spdlog::default_logger()) {
    config_.validate();
  }

  ~Impl() {
    if (thread_.joinable()) {
      cancel();
      thread_.join();
    }
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;

  void start();
  void mark(std::string_view name);
  void request_stop() {
    net::post(ioc_, [this] { stop_on_io_thread(); });
  }
  void cancel() {
    net::post(ioc_, [this] { cancel_on_io_thread(); });
  }
  void stop_long_requests() {
    net::post(ioc_, [this] {
      if (!long_requests_stopped_) {
        long_requests_stopped_ = true;
        mark(kLongRequestsStopped);
      }
    });
  }
  void wait();
  [[nodiscard]] std::size_t failure_count() const noexcept { return failures_.load(); }
  [[nodiscard]] std::size_t completed_count() const noexcept { return completed_.load(); }
  [[nodiscard]] bool running() const noexcept { return running_.load(); }
  [[nodiscard]] Report report() const;
  [[nodiscard]] Report take_report();

 private:
  [[nodiscard]] Offset now() const {
    return std::chrono::duration_cast<Offset>(Clock::now() - started_);
  }
  // The executor every coroutine runs on (spawn() starts them all on ioc_). Asked for directly,
  // not with `co_await this_coro::executor`: clang-tidy 14's analyzer does not model coroutines
  // and reports an uninitialized pointer inside Asio for that.
  [[nodiscard]] net::any_io_executor executor() { return ioc_.get_executor(); }
  void resolve();
  void spawn(net::awaitable<void> work);
  void stop_on_io_thread();
  void cancel_on_io_thread();

  // Waits until `when`; false when the probe is stopping (the wait is cut short then).
  net::awaitable<bool> sleep_until(Clock::time_point when);
  // Sends one request and records it; true when it succeeded.
  net::awaitable<bool> exchange(Connection& connection, const RequestSpec& spec);
  net::awaitable<void> persistent_worker(RequestSpec spec, std::chrono::milliseconds interval,
                                         std::chrono::milliseconds first_delay);
  net::awaitable<void> fresh_connection_worker(RequestSpec spec,
                                               std::chrono::milliseconds interval);
  net::awaitable<void> single_request(RequestSpec spec);
  net::awaitable<void> stop_after_duration();

  [[nodiscard]] RequestSpec make_spec(RequestKind kind, int worker) const;
  void finish(Record record);

  Config config_;
  Target target_;
  std::string host_header_;
  std::shared_ptr<spdlog::logger> log_;

  mutable std::mutex mutex_;  // guards records_, marks_, ended_
  RecordLog records_;
  std::vector<Mark> marks_;
  std::optional<Offset> ended_;
  std::exception_ptr worker_error_;  // an exception escaping a worker: a bug, reported by wait()

  std::atomic<std::size_t> failures_{0};
  std::atomic<std::size_t> completed_{0};
  std::atomic<bool> running_{false};
  bool start_called_ = false;               // caller's thread only
  std::atomic<bool> clock_started_{false};  // started_ is set: mark() and report() may read it
  Clock::time_point started_;
  std::chrono::system_clock::time_point started_wall_;

  // Touched only on the io_context thread.
  bool stopping_ = false;
  bool cancelled_ = false;
  bool long_requests_stopped_ = false;
  std::uint64_t last_request_id_ = 0;
  std::uint64_t last_connection_id_ = 0;
  std::set<net::steady_timer*> sleeping_;
  std::set<Connection*> connections_;
  tcp::resolver::results_type endpoints_;

  net::io_context ioc_{1};  // after the sets above: destroying it may destroy coroutine frames
  std::thread thread_;
};

namespace internal {

// One client connection; kept open across requests by persistent workers. Registered with the
// probe so that cancel() can close it.
class Connection {
 public:
  Connection(net::any_io_executor executor, std::set<Connection*>& registry)
      : executor_(std::move(executor)), registry_(registry) {
    registry_.insert(this);
  }
  ~Connection() {
    close();
    registry_.erase(this);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  Connection(Connection&&) = delete;
  Connection& operator=(Connection&&) = delete;

  [[nodiscard]] bool open() const { return stream_.has_value(); }
  beast::tcp_stream& stream() { return *stream_; }
  beast::flat_buffer& buffer() { return buffer_; }
  [[nodiscard]] std::uint64_t id() const { return id_; }
  [[nodiscard]] const std::string& served_by() const { return served_by_; }
  void set_served_by(std::string served_by) { served_by_ = std::move(served_by); }

  beast::tcp_stream& reopen(std::uint64_t id) {
    close();
    stream_.emplace(executor_);
    id_ = id;
    return *stream_;
  }
  void close() {
    if (stream_) {
      stream_->close();
      stream_.reset();
    }
    buffer_.clear();
    served_by_.clear();
    id_ = 0;
  }

  // Whether the server closed the idle connection (FIN/RST, or unsolicited bytes such as a 408).
  // Like curl before reusing a connection: no request has been sent on it, so opening a new one is
  // not a retry.
  [[nodiscard]] bool closed_by_peer() {
    if (buffer_.size() != 0) {
      return true;
    }
    char byte = 0;
    const ssize_t n = ::recv(stream_->socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }

 private:
  net::any_io_executor executor_;
  std::set<Connection*>& registry_;
  std::optional<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::uint64_t id_ = 0;
  std::string served_by_;
};

}  // namespace internal

void Probe::Impl::resolve() {
  error_code ec;
  if (const auto address = net::ip::make_address(target_.host, ec); !ec) {
    endpoints_ = tcp::resolver::results_type::create(tcp::endpoint(address, target_.port),
                                                     target_.host, std::to_string(target_.port));
    return;
  }
  if (is_localhost_name(target_.host)) {
    endpoints_ = tcp::resolver::results_type::create(
        tcp::endpoint(net::ip::address_v4::loopback(), target_.port), target_.host,
        std::to_string(target_.port));
    return;
  }
  // A separate context so the deadline applies; getaddrinfo itself cannot be interrupted, so a
  // hung resolver still delays the error until it returns.
  net::io_context resolve_context;
  tcp::resolver resolver(resolve_context);
  bool done = false;
  resolver.async_resolve(target_.host, std::to_string(target_.port),
                         [&](const error_code& error, tcp::resolver::results_type results) {
                           ec = error;
                           endpoints_ = std::move(results);
                           done = true;
                         });
  resolve_context.run_for(config_.connect_timeout);
  if (!done) {
    resolver.cancel();
    resolve_context.run();
    throw Error(fmt::format("probe: resolving {} timed out after {} ms", target_.host,
                            config_.connect_timeout.count()));
  }
  if (ec || endpoints_.empty()) {
    throw Error(fmt::format("probe: cannot resolve {}: {}", target_.host,
                            ec ? ec.message() : "no addresses"));
  }
}

void Probe::Impl::start() {
  if (start_called_) {
    throw Error("probe: start() called twice");
  }
  start_called_ = true;
  resolve();
  started_ = Clock::now();
  started_wall_ = std::chrono::system_clock::now();
  clock_started_ = true;
  running_ = true;

  spawn(stop_after_duration());
  for (int i = 0; i < config_.initial_long_requests; ++i) {
    spawn(single_request(make_spec(RequestKind::long_get, i)));
  }
  for (int i = 0; i < config_.initial_streams; ++i) {
    spawn(single_request(make_spec(RequestKind::stream, i)));
  }
  const auto short_interval = config_.short_request_interval();
  for (int i = 0; i < config_.keepalive_get_workers; ++i) {
    spawn(persistent_worker(make_spec(RequestKind::keepalive_get, i), short_interval, {}));
  }
  for (int i = 0; i < config_.keepalive_post_workers; ++i) {
    spawn(persistent_worker(make_spec(RequestKind::keepalive_post, i), short_interval, {}));
  }
  for (int i = 0; i < config_.fresh_connection_workers; ++i) {
    spawn(fresh_connection_worker(make_spec(RequestKind::fresh_get, i), short_interval));
  }
  // Long requests and streams start staggered over their length, so that one is always starting
  // and one is always in flight whenever the rollout happens.
  const auto stagger = [](std::chrono::milliseconds length, int index, int count) {
    return length * index / count;
  };
  for (int i = 0; i < config_.long_request_workers; ++i) {
    spawn(persistent_worker(make_spec(RequestKind::long_get, config_.initial_long_requests + i), {},
                            stagger(config_.long_sleep, i, config_.long_request_workers)));
  }
  const auto stream_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(config_.stream_length);
  for (int i = 0; i < config_.stream_workers; ++i) {
    spawn(persistent_worker(make_spec(RequestKind::stream, config_.initial_streams + i), {},
                            stagger(stream_ms, i, config_.stream_workers)));
  }

  log_->info(
      "probe: {} (Host: {}) for {} ms: {} keep-alive GET, {} keep-alive POST, {} "
      "fresh-connection, {}+{} long ({} ms), {}+{} stream ({} s) workers",
      config_.url, host_header_, config_.duration.count(), config_.keepalive_get_workers,
      config_.keepalive_post_workers, config_.fresh_connection_workers,
      config_.initial_long_requests, config_.long_request_workers, config_.long_sleep.count(),
      config_.initial_streams, config_.stream_workers, config_.stream_length.count());
  thread_ = std::thread([this] {
    ioc_.run();
    {
      std::lock_guard lock(mutex_);
      ended_ = now();
    }
    running_ = false;
  });
}

void Probe::Impl::spawn(net::awaitable<void> work) {
  net::co_spawn(ioc_, std::move(work), [this](const std::exception_ptr& error) {
    if (error) {
      std::lock_guard lock(mutex_);
      if (!worker_error_) {
        worker_error_ = error;
      }
    }
  });
}

void Probe::Impl::mark(std::string_view name) {
  if (!clock_started_) {
    throw Error("probe: mark() before start()");
  }
  std::lock_guard lock(mutex_);
  marks_.push_back({std::string(name), now()});
  log_->info("probe: mark '{}' at {:.3f} s", name,
             static_cast<double>(marks_.back().at.count()) / 1e6);
}

void Probe::Impl::wait() {
  if (thread_.joinable()) {
    thread_.join();
    // From the counters: a report() here would copy every record just for this line.
    log_->info("probe: done, {} requests, {} failed", completed_.load(), failures_.load());
  }
  std::lock_guard lock(mutex_);
  if (worker_error_) {
    try {
      std::rethrow_exception(worker_error_);
    } catch (const std::exception& error) {
      throw Error(std::string("probe: a worker failed: ") + error.what());
    }
  }
}

Report Probe::Impl::report() const {
  std::lock_guard lock(mutex_);
  RunInfo info{config_.url, host_header_, rfc3339_utc(started_wall_),
               ended_ ? *ended_ : (clock_started_ ? now() : Offset{0})};
  return {std::move(info), records_, marks_};
}

Report Probe::Impl::take_report() {
  std::lock_guard lock(mutex_);
  RunInfo info{config_.url, host_header_, rfc3339_utc(started_wall_),
               ended_ ? *ended_ : (clock_started_ ? now() : Offset{0})};
  return {std::move(info), std::exchange(records_, {}), marks_};
}

void Probe::Impl::stop_on_io_thread() {
  if (!stopping_) {
    log_->debug("probe: stopping; waiting for requests in flight");
    std::lock_guard lock(mutex_);
    marks_.push_back({std::string(kProbeStopped), now()});
  }
  stopping_ = true;
  for (net::steady_timer* timer : sleeping_) {
    timer->cancel();
  }
}

void Probe::Impl::cancel_on_io_thread() {
  cancelled_ = true;
  stop_on_io_thread();
  for (Connection* connection : connections_) {
    if (connection->open()) {
      connection->stream().close();  // pending operations complete with operation_aborted
    }
  }
}

net::awaitable<bool> Probe::Impl::sleep_until(Clock::time_point when) {
  if (stopping_) {
    co_return false;
  }
  if (when <= Clock::now()) {
    co_return true;
  }
  net::steady_timer timer(executor(), when);
  sleeping_.insert(&timer);
  error_code ec;
  co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  sleeping_.erase(&timer);
  co_return !stopping_;
}

net::awaitable<void> Probe::Impl::stop_after_duration() {
  co_await sleep_until(started_ + config_.duration);
  stop_on_io_thread();
}

RequestSpec Probe::Impl::make_spec(RequestKind kind, int worker) const {
  RequestSpec spec;
  spec.kind = kind;
  spec.worker = worker;
  switch (kind) {
    case RequestKind::keepalive_post:
      spec.method = http::verb::post;
      [[fallthrough]];
    case RequestKind::keepalive_get:
    case RequestKind::fresh_get:
      spec.server_time = config_.short_sleep;
      break;
    case RequestKind::long_get:
      spec.server_time = config_.long_sleep;
      break;
    case RequestKind::stream:
      spec.server_time = config_.stream_length;
      spec.expected_lines = static_cast<std::uint32_t>(config_.stream_length.count());
      break;
  }
  spec.close_after = kind == RequestKind::fresh_get;
  spec.target = request_target(target_, config_, kind);
  return spec;
}

void Probe::Impl::finish(Record record) {
  record.end = now();
  if (record.failed()) {
    const std::size_t failures = ++failures_;
    const auto level = failures <= kFailuresLogged ? spdlog::level::warn : spdlog::level::debug;
    log_->log(level, "probe: {} #{} request probe-{} failed after {} ms: {}{}{}",
              to_string(record.kind), record.worker, record.id,
              std::chrono::duration_cast<std::chrono::milliseconds>(record.latency()).count(),
              to_string(record.error),
              record.status != 0 ? fmt::format(" (HTTP {})", record.status) : "",
              record.detail.empty() ? "" : ": " + record.detail);
    if (failures == kFailuresLogged) {
      log_->warn("probe: further failures are counted, not logged");
    }
  }
  ++completed_;
  std::lock_guard lock(mutex_);
  records_.push_back(record);
}

net::awaitable<bool> Probe::Impl::exchange(Connection& connection, const RequestSpec& spec) {
  Record record;
  record.id = ++last_request_id_;
  record.kind = spec.kind;
  record.worker = spec.worker;
  record.start = now();
  error_code ec;
  const auto fail = [&](ErrorClass error, std::string_view step) {
    record.error = cancelled_ ? ErrorClass::cancelled : error;  // cancel() cut it, not the server
    record.detail = fmt::format("{}: {}", step, ec.message());
    connection.close();
    finish(std::move(record));
  };

  if (connection.open() && connection.closed_by_peer()) {
    record.stale_connection_replaced = true;
    connection.close();
  }
  if (connection.open()) {
    record.connection_reused = true;
    record.connection_served_by = connection.served_by();
  } else {
    beast::tcp_stream& stream = connection.reopen(++last_connection_id_);
    stream.expires_after(config_.connect_timeout);
    co_await stream.async_connect(endpoints_, net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      record.connection = 0;  // never established
      fail(classify_transport(ec), "connect");
      co_return false;
    }
  }
  record.connection = connection.id();
  beast::tcp_stream& stream = connection.stream();

  http::request<http::string_body> request{spec.method, spec.target, 11};
  request.set(http::field::host, host_header_);
  request.set(http::field::user_agent, kUserAgent);
  request.set("X-Request-Id", fmt::format("probe-{}", record.id));
  if (spec.method == http::verb::post) {
    request.set(http::field::content_type, "text/plain");
    request.body() = "probe";
  }
  request.keep_alive(!spec.close_after);
  request.prepare_payload();

  // One deadline for the whole exchange: the server's promised time plus the allowance.
  stream.expires_after(spec.server_time + config_.request_timeout);
  co_await http::async_write(stream, request, net::redirect_error(net::use_awaitable, ec));
  if (ec) {
    fail(classify_transport(ec), "send");
    co_return false;
  }

  http::response_parser<http::string_body> parser;
  parser.body_limit(kBodyLimit);
  co_await http::async_read_header(stream, connection.buffer(), parser,
                                   net::redirect_error(net::use_awaitable, ec));
  if (ec) {
    fail(classify_transport(ec), "read headers");
    co_return false;
  }
  record.response = now();
  const auto& response = parser.get();
  record.status = static_cast<int>(response.result_int());
  record.version = std::string(response["X-App-Version"]);
  record.served_by = std::string(response["X-Served-By"]);
  record.server_closed = !response.keep_alive();
  connection.set_served_by(record.served_by);

  // Headers arrived: from here on, a connection problem cuts a response that had begun.
  const auto body_error = [&] {
    return ec == beast::error::timeout ? ErrorClass::timeout : ErrorClass::truncated;
  };
  if (spec.kind == RequestKind::stream) {
    std::size_t counted = 0;
    while (!parser.is_done()) {
      co_await http::async_read_some(stream, connection.buffer(), parser,
                                     net::redirect_error(net::use_awaitable, ec));
      const std::string& body = parser.get().body();
      record.stream_lines += static_cast<std::uint32_t>(
          std::count(body.begin() + static_cast<std::ptrdiff_t>(counted), body.end(), '\n'));
      counted = body.size();
      if (ec) {
        fail(body_error(),
             fmt::format("stream after {} of {} lines", record.stream_lines, spec.expected_lines));
        co_return false;
      }
    }
  } else {
    co_await http::async_read(stream, connection.buffer(), parser,
                              net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      fail(body_error(), "read body");
      co_return false;
    }
  }

  record.error = classify_status(record.status);
  if (record.error != ErrorClass::none) {
    record.detail = fmt::format("HTTP {}", record.status);
  } else if (spec.kind == RequestKind::stream && record.stream_lines < spec.expected_lines) {
    record.error = ErrorClass::truncated;
    record.detail = fmt::format("stream ended cleanly after {} of {} lines", record.stream_lines,
                                spec.expected_lines);
  }
  // Connection: close (or our own one-shot request) means the next request needs a new connection;
  // that is the server draining politely, not a failure.
  if (record.server_closed || spec.close_after) {
    connection.close();
  }
  const bool succeeded = record.error == ErrorClass::none;
  finish(std::move(record));
  co_return succeeded;
}

net::awaitable<void> Probe::Impl::persistent_worker(RequestSpec spec,
                                                    std::chrono::milliseconds interval,
                                                    std::chrono::milliseconds first_delay) {
  Connection connection(executor(), connections_);
  const bool long_kind = spec.kind == RequestKind::long_get || spec.kind == RequestKind::stream;
  auto next = Clock::now() + first_delay;
  while (co_await sleep_until(next) && !(long_kind && long_requests_stopped_)) {
    const auto started = Clock::now();
    const bool succeeded = co_await exchange(connection, spec);
    next = std::max(next + interval, succeeded ? Clock::now() : started + kMinimumInterval);
  }
}

net::awaitable<void> Probe::Impl::fresh_connection_worker(RequestSpec spec,
                                                          std::chrono::milliseconds interval) {
  auto next = Clock::now();
  while (co_await sleep_until(next)) {
    const auto started = Clock::now();
    Connection connection(executor(), connections_);
    const bool succeeded = co_await exchange(connection, spec);
    next = std::max(next + interval, succeeded ? Clock::now() : started + kMinimumInterval);
  }
}

net::awaitable<void> Probe::Impl::single_request(RequestSpec spec) {
  Connection connection(executor(), connections_);
  co_await exchange(connection, spec);
}

Probe::Probe(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Probe::~Probe() = default;
void Probe::start() {
  impl_->start();
}
void Probe::mark(std::string_view name) {
  impl_->mark(name);
}
void Probe::stop_long_requests() {
  impl_->stop_long_requests();
}
void Probe::request_stop() {
  impl_->request_stop();
}
void Probe::wait() {
  impl_->wait();
}
void Probe::cancel() {
  impl_->cancel();
}
std::size_t Probe::failure_count() const noexcept {
  return impl_->failure_count();
}
std::size_t Probe::completed_count() const noexcept {
  return impl_->completed_count();
}
bool Probe::running() const noexcept {
  return impl_->running();
}
Report Probe::report() const {
  return impl_->report();
}

Report Probe::take_report() {
  return impl_->take_report();
}

std::string request_line(const Config& config, RequestKind kind) {
  const bool post = kind == RequestKind::keepalive_post;
  return fmt::format("{} {}", post ? "POST" : "GET",
                     request_target(Target::parse(config.url), config, kind));
}

}  // namespace deployapps::probe

#include "deployapps/ingress_check.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <charconv>
#include <cmath>

#include "deployapps/budget.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/probe/config.hpp"

namespace deployapps {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

constexpr std::string_view kRequestsTotal = "traefik_service_requests_total";
constexpr std::string_view kOpenConnections = "traefik_open_connections";
constexpr std::string_view kApiEntryPoint = "traefik";  // its API and metrics, not users' traffic

bool is_name_char(char c, bool first) {
  return std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '_' || c == ':' ||
         (!first && std::isdigit(static_cast<unsigned char>(c)) != 0);
}

// Parses `{a="x",b="y"}` from text[pos] (at the '{'); returns false on malformed input.
bool parse_labels(std::string_view text, std::size_t& pos,
                  std::map<std::string, std::string>& out) {
  ++pos;  // '{'
  for (;;) {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == ',')) {
      ++pos;
    }
    if (pos < text.size() && text[pos] == '}') {
      ++pos;
      return true;
    }
    const auto name_start = pos;
    while (pos < text.size() && is_name_char(text[pos], pos == name_start)) {
      ++pos;
    }
    if (pos == name_start || pos + 1 >= text.size() || text[pos] != '=' || text[pos + 1] != '"') {
      return false;
    }
    const std::string name(text.substr(name_start, pos - name_start));
    pos += 2;
    std::string value;
    for (; pos < text.size() && text[pos] != '"'; ++pos) {
      if (text[pos] == '\\' && pos + 1 < text.size()) {
        ++pos;
        value += text[pos] == 'n' ? '\n' : text[pos];  // \\, \" and \n are the only escapes
      } else {
        value += text[pos];
      }
    }
    if (pos >= text.size()) {
      return false;
    }
    ++pos;  // closing quote
    out.emplace(name, std::move(value));
  }
}

std::optional<double> parse_value(std::string_view text) {
  if (text == "+Inf") {
    return HUGE_VAL;
  }
  if (text == "-Inf") {
    return -HUGE_VAL;
  }
  if (text == "NaN") {
    return std::nan("");
  }
  try {
    std::size_t used = 0;
    const double value = std::stod(std::string(text), &used);
    return used == text.size() ? std::optional(value) : std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

std::string http_get(const std::string& url, Duration timeout) {
  const auto target = probe::Target::parse(url);
  net::io_context io;
  beast::tcp_stream stream(io);
  net::ip::tcp::resolver resolver(io);
  http::request<http::empty_body> request(
      http::verb::get, target.path_prefix.empty() ? "/" : target.path_prefix, 11);
  request.set(http::field::host, target.authority);
  request.set(http::field::user_agent, "deploy-apps-ingress-check");
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  beast::error_code failure;
  resolver.async_resolve(
      target.host, std::to_string(target.port),
      [&](beast::error_code ec, const net::ip::tcp::resolver::results_type& results) {
        if (ec) {
          failure = ec;
          return;
        }
        stream.async_connect(results, [&](beast::error_code connect_ec, const auto&) {
          if (connect_ec) {
            failure = connect_ec;
            return;
          }
          http::async_write(stream, request, [&](beast::error_code write_ec, std::size_t) {
            if (write_ec) {
              failure = write_ec;
              return;
            }
            http::async_read(stream, buffer, response,
                             [&](beast::error_code read_ec, std::size_t) { failure = read_ec; });
          });
        });
      });
  io.run_for(timeout);
  if (!io.stopped()) {
    throw TimeoutError(fmt::format("GET {} timed out after {}", url, format_duration(timeout)));
  }
  if (failure) {
    throw NetworkError(fmt::format("GET {}: {}", url, failure.message()));
  }
  if (response.result_int() != 200) {
    throw NetworkError(fmt::format("GET {}: HTTP {}", url, response.result_int()));
  }
  return response.body();
}

std::vector<MetricSample> parse_prometheus_text(std::string_view text) {
  std::vector<MetricSample> samples;
  while (!text.empty()) {
    const auto end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
      line.remove_prefix(1);
    }
    if (line.empty() || line.front() == '#') {
      continue;
    }
    MetricSample sample;
    std::size_t pos = 0;
    while (pos < line.size() && is_name_char(line[pos], pos == 0)) {
      ++pos;
    }
    if (pos == 0) {
      continue;
    }
    sample.name = std::string(line.substr(0, pos));
    if (pos < line.size() && line[pos] == '{' && !parse_labels(line, pos, sample.labels)) {
      continue;
    }
    while (pos < line.size() && line[pos] == ' ') {
      ++pos;
    }
    const auto value_end = line.find(' ', pos);  // a timestamp may follow
    const auto value = parse_value(line.substr(pos, value_end - pos));
    if (!value) {
      continue;
    }
    sample.value = *value;
    samples.push_back(std::move(sample));
  }
  return samples;
}

IngressCounts IngressCounts::operator-(const IngressCounts& earlier) const {
  IngressCounts difference;
  difference.requests = requests - earlier.requests;
  difference.server_errors = server_errors - earlier.server_errors;
  difference.bad_gateway = bad_gateway - earlier.bad_gateway;
  difference.service_unavailable = service_unavailable - earlier.service_unavailable;
  difference.gateway_timeout = gateway_timeout - earlier.gateway_timeout;
  difference.client_closed = client_closed - earlier.client_closed;
  difference.open_connections = open_connections;
  return difference;
}

IngressCounts ingress_counts(const std::vector<MetricSample>& samples,
                             std::string_view namespace_name, std::string_view service) {
  const auto prefix = fmt::format("{}-{}-", namespace_name, service);
  constexpr std::string_view kProvider = "@kubernetes";
  IngressCounts counts;
  for (const auto& sample : samples) {
    if (sample.name == kOpenConnections) {
      const auto entry_point = sample.labels.find("entrypoint");
      if (entry_point == sample.labels.end() || entry_point->second != kApiEntryPoint) {
        counts.open_connections += sample.value;
      }
      continue;
    }
    if (sample.name != kRequestsTotal) {
      continue;
    }
    const auto found = sample.labels.find("service");
    if (found == sample.labels.end()) {
      continue;
    }
    const auto& name = found->second;
    if (!name.starts_with(prefix) || !name.ends_with(kProvider) ||
        name.size() == prefix.size() + kProvider.size() ||
        name.find('-', prefix.size()) < name.size() - kProvider.size()) {
      continue;  // another Service, or one whose name only starts like this one's
    }
    int code = 0;
    if (const auto label = sample.labels.find("code"); label != sample.labels.end()) {
      std::from_chars(label->second.data(), label->second.data() + label->second.size(), code);
    }
    counts.requests += sample.value;
    if (code >= 500 && code <= 599) {
      counts.server_errors += sample.value;
    }
    if (code == 502) {
      counts.bad_gateway += sample.value;
    } else if (code == 503) {
      counts.service_unavailable += sample.value;
    } else if (code == 504) {
      counts.gateway_timeout += sample.value;
    } else if (code == 499) {
      counts.client_closed += sample.value;
    }
  }
  return counts;
}

IngressJudgement judge_ingress(const IngressCounts& baseline, const IngressCounts& during) {
  IngressJudgement judgement;
  judgement.baseline = baseline;
  judgement.during = during;
  if (baseline.errors() > 0 && baseline.requests > 0) {
    const double expected = during.requests * baseline.errors() / baseline.requests;
    judgement.allowed_errors = std::floor(expected + 3 * std::sqrt(expected));
  }
  const auto breakdown = fmt::format(
      "{:.0f} 5xx (502: {:.0f}, 503: {:.0f}, 504: {:.0f}), {:.0f} 499", during.server_errors,
      during.bad_gateway, during.service_unavailable, during.gateway_timeout, during.client_closed);
  if (during.requests <= 0) {
    judgement.summary = "no real traffic through the ingress during the rollout: nothing to judge";
    return judgement;
  }
  judgement.failed = during.errors() > judgement.allowed_errors;
  judgement.summary =
      fmt::format("{:.0f} real requests through the ingress, {}{}", during.requests, breakdown,
                  judgement.allowed_errors > 0
                      ? fmt::format("; the baseline's error ratio ({:.0f} of {:.0f}) allows {:.0f}",
                                    baseline.errors(), baseline.requests, judgement.allowed_errors)
                      : std::string());
  return judgement;
}

IngressCheck::IngressCheck(std::string url, std::string namespace_name, std::string service)
    : url_(std::move(url)),
      namespace_name_(std::move(namespace_name)),
      service_(std::move(service)) {}

IngressCheck::~IngressCheck() {
  stop_scraping();
}

void IngressCheck::stop_scraping() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

IngressCounts IngressCheck::scrape() const {
  return ingress_counts(parse_prometheus_text(http_get(url_, kIngressScrapeTimeout)),
                        namespace_name_, service_);
}

void IngressCheck::start() {
  const auto first = scrape();
  const std::lock_guard lock(mutex_);
  at_start_ = first;
  latest_ = first;
  thread_ = std::thread([this] { loop(); });
}

void IngressCheck::mark_apply() {
  IngressCounts now;
  try {
    now = scrape();
  } catch (const Error& error) {
    spdlog::warn("ingress check: {}", error.what());
    const std::lock_guard lock(mutex_);
    now = latest_;
  }
  const std::lock_guard lock(mutex_);
  at_apply_ = now;
  latest_ = now;
  open_connections_peak_ = now.open_connections;
}

void IngressCheck::loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, kIngressScrapeInterval, [this] { return stopping_; });
    if (stopping_) {
      break;
    }
    lock.unlock();
    std::optional<IngressCounts> counts;
    try {
      counts = scrape();
    } catch (const Error& error) {
      spdlog::debug("ingress check: {}", error.what());
    }
    lock.lock();
    if (counts) {
      latest_ = *counts;
      open_connections_peak_ = std::max(open_connections_peak_, counts->open_connections);
    } else {
      ++failed_scrapes_;
    }
  }
}

IngressJudgement IngressCheck::judgement() const {
  const std::lock_guard lock(mutex_);
  if (!at_apply_) {
    return {};
  }
  auto judgement = judge_ingress(*at_apply_ - at_start_, latest_ - *at_apply_);
  judgement.open_connections_at_apply = at_apply_->open_connections;
  judgement.open_connections_peak = std::max(open_connections_peak_, latest_.open_connections);
  return judgement;
}

IngressJudgement IngressCheck::stop() {
  stop_scraping();
  try {
    const auto last = scrape();
    const std::lock_guard lock(mutex_);
    latest_ = last;
  } catch (const Error& error) {
    spdlog::warn("ingress check: the last reading failed: {}", error.what());
  }
  auto judgement = this->judgement();
  const std::lock_guard lock(mutex_);
  if (failed_scrapes_ > 0) {
    judgement.summary += fmt::format(" ({} readings failed)", failed_scrapes_);
  }
  judgement.summary +=
      fmt::format("; open connections to the ingress: {:.0f} at the apply, {:.0f} at the most",
                  judgement.open_connections_at_apply, judgement.open_connections_peak);
  return judgement;
}

}  // namespace deployapps

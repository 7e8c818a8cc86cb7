#include "deployapps/kube_client.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <algorithm>
#include <thread>

#include "deployapps/encoding.hpp"
#include "deployapps/version.hpp"

namespace deployapps {
using nlohmann::json;

namespace {

TlsOptions tls_options(const RestConfig& config) {
  TlsOptions tls;
  tls.ca_pem = config.ca_pem;
  tls.ca_source = config.ca_source;
  tls.insecure_skip_verify = config.insecure_skip_tls_verify;
  tls.server_name = config.tls_server_name;
  return tls;
}

std::string default_user_agent() {
#if defined(__x86_64__)
  constexpr std::string_view kArch = "amd64";
#elif defined(__aarch64__)
  constexpr std::string_view kArch = "arm64";
#else
  constexpr std::string_view kArch = "unknown";
#endif
  return fmt::format("deploy-apps/{} (linux/{})", kVersion, kArch);
}

std::optional<Duration> retry_after(const HttpResponse& response) {
  const auto value = response.header("Retry-After");
  if (!value) {
    return std::nullopt;
  }
  try {
    std::size_t used = 0;
    const auto seconds = std::stol(*value, &used);
    if (used == value->size() && seconds >= 0) {
      return std::min<Duration>(std::chrono::seconds(seconds), kMaxRetryAfter);
    }
  } catch (const std::exception&) {
    // An HTTP date or garbage: fall back to our own backoff.
  }
  return std::nullopt;
}

std::string first_line(std::string_view text, std::size_t limit) {
  text = trim(text);
  const auto newline = text.find('\n');
  auto line = text.substr(0, newline);
  if (line.size() > limit) {
    return std::string(line.substr(0, limit)) + "…";
  }
  return std::string(line);
}

}  // namespace

std::string with_query(const std::string& path, const QueryParameters& query) {
  std::string target = path;
  char separator = '?';
  for (const auto& [key, value] : query) {
    target += separator;
    target += url_encode(key);
    target += '=';
    target += url_encode(value);
    separator = '&';
  }
  return target;
}

std::vector<std::string> parse_warnings(const std::vector<std::string>& headers) {
  // RFC 7234 warning: code SP agent SP quoted-text [SP date]; Kubernetes sends `299 - "text"`.
  std::vector<std::string> warnings;
  for (const auto& header : headers) {
    const auto open = header.find('"');
    if (open == std::string::npos) {
      warnings.emplace_back(trim(header));
      continue;
    }
    std::string text;
    for (std::size_t i = open + 1; i < header.size(); ++i) {
      if (header[i] == '\\' && i + 1 < header.size()) {
        text += header[++i];
      } else if (header[i] == '"') {
        break;
      } else {
        text += header[i];
      }
    }
    warnings.push_back(std::move(text));
  }
  return warnings;
}

bool is_expired(const json& status) {
  if (!status.is_object()) {
    return false;
  }
  const auto code = status.find("code");
  const auto reason = status.find("reason");
  return (code != status.end() && code->is_number_integer() && code->get<int>() == 410) ||
         (reason != status.end() && reason->is_string() &&
          (*reason == "Expired" || *reason == "Gone"));
}

ApiError make_api_error(unsigned status, std::string_view reason_phrase, std::string_view body,
                        std::string_view what) {
  const std::string prefix = what.empty() ? std::string() : std::string(what) + ": ";
  json parsed = json::parse(body, nullptr, false);
  if (!parsed.is_object() || parsed.value("kind", "") != "Status") {
    const auto text = first_line(body, 300);
    return {fmt::format("{}HTTP {} {}{}", prefix, status, reason_phrase,
                        text.empty() ? "" : ": " + text),
            status, std::string(reason_phrase)};
  }
  const auto reason = parsed.value("reason", std::string(reason_phrase));
  std::string message = parsed.value("message", "");
  if (message.empty()) {
    message = reason.empty() ? fmt::format("HTTP {}", status) : reason;
  }
  std::vector<StatusCause> causes;
  if (const auto details = parsed.find("details");
      details != parsed.end() && details->is_object()) {
    if (const auto list = details->find("causes"); list != details->end() && list->is_array()) {
      for (const auto& cause : *list) {
        if (cause.is_object()) {
          causes.push_back(StatusCause{cause.value("reason", ""), cause.value("message", ""),
                                       cause.value("field", "")});
        }
      }
    }
  }
  // A 422's message lists its causes but may abbreviate them; when any is missing, list them
  // all, one per line.
  const bool all_in_message = std::all_of(causes.begin(), causes.end(), [&](const auto& cause) {
    return message.find(cause.message) != std::string::npos &&
           message.find(cause.field) != std::string::npos;
  });
  std::string detail;
  if (!all_in_message) {
    for (const auto& cause : causes) {
      detail += cause.field.empty() ? fmt::format("\n  - {}", cause.message)
                                    : fmt::format("\n  - {}: {}", cause.field, cause.message);
    }
  }
  std::string hint;
  if (status == 401) {
    hint = "\n  (the API server did not accept the credentials; check the kubeconfig user)";
  } else if (status == 409 && reason == "Conflict" &&
             message.find("Apply failed") != std::string::npos) {
    hint =
        "\n  (another field manager owns these fields; deploy-apps applies with force, so this "
        "means the object changed while applying: run it again)";
  }
  return {fmt::format("{}{} (HTTP {} {}){}{}", prefix, message, status, reason, detail, hint),
          status, reason, std::move(causes)};
}

KubeClient::KubeClient(const RestConfig& config, ClientOptions options)
    : KubeClient(config, config.credentials ? config.credentials : make_credential_source(config),
                 std::move(options)) {}

KubeClient::KubeClient(RestConfig config, std::shared_ptr<CredentialSource> credentials,
                       ClientOptions options)
    : config_(std::move(config)),
      options_(std::move(options)),
      credentials_(std::move(credentials)),
      http_(config_.host, config_.port, tls_options(config_)),
      jitter_(std::random_device{}()) {
  if (options_.user_agent.empty()) {
    options_.user_agent = default_user_agent();
  }
}

std::size_t KubeClient::connections_opened() const noexcept {
  return http_.connections_opened();
}

HttpRequest KubeClient::build(const ApiRequest& request, Deadline deadline) {
  const auto credential = credentials_->get(deadline);
  http_.set_client_certificate(credential.client_certificate);
  HttpRequest http;
  http.method = request.method;
  http.target = with_query(config_.base_path + request.path, request.query);
  http.idempotent = request.idempotent;
  http.headers.push_back({"Accept", request.text_response ? "*/*" : "application/json"});
  http.headers.push_back({"User-Agent", options_.user_agent});
  if (credential.authorization) {
    http.headers.push_back({"Authorization", *credential.authorization});
  }
  if (!config_.impersonate.empty()) {
    http.headers.push_back({"Impersonate-User", config_.impersonate});
  }
  if (!config_.impersonate_uid.empty()) {
    http.headers.push_back({"Impersonate-Uid", config_.impersonate_uid});
  }
  for (const auto& group : config_.impersonate_groups) {
    http.headers.push_back({"Impersonate-Group", group});
  }
  if (request.body) {
    http.headers.push_back({"Content-Type", request.content_type});
    http.body = request.body->dump();
  }
  return http;
}

Duration KubeClient::backoff(int attempt) {
  const auto base = options_.initial_backoff * (1LL << std::min(attempt, 10));
  const auto capped = std::min<Duration>(base, options_.max_backoff);
  // Up to 25% jitter so that parallel deployers do not retry in step.
  std::uniform_int_distribution<Duration::rep> spread(0, capped.count() / 4);
  return capped + Duration(spread(jitter_));
}

ApiResponse KubeClient::request(const ApiRequest& request, Deadline deadline) {
  const auto what = request.description.empty() ? fmt::format("{} {}", request.method, request.path)
                                                : request.description;
  for (int attempt = 0;; ++attempt) {
    const auto started = Clock::now();
    HttpResponse response;
    try {
      const auto http = build(request, deadline);
      ++requests_sent_;
      response = http_.send(http, deadline.at_most(options_.request_timeout));
    } catch (const NetworkError& error) {
      const auto wait = backoff(attempt);
      // A TLS failure (an untrusted certificate, a rejected client certificate) will not go
      // away by itself.
      if (!request.idempotent || attempt >= options_.max_retries || deadline.remaining() <= wait ||
          dynamic_cast<const TlsError*>(&error) != nullptr) {
        throw;
      }
      spdlog::warn("{}: {}; retrying in {}", what, error.what(), format_duration(wait));
      std::this_thread::sleep_for(wait);
      continue;
    }
    spdlog::debug("{} {} -> {} ({})", request.method, request.path, response.status,
                  format_duration(std::chrono::duration_cast<Duration>(Clock::now() - started)));
    const auto after = retry_after(response);
    const bool rate_limited = response.status == 429;
    const bool unavailable =
        (response.status == 503 || response.status == 504) && after && request.idempotent;
    if ((rate_limited || unavailable) && attempt < options_.max_retries) {
      const auto wait = after.value_or(backoff(attempt));
      if (deadline.remaining() > wait) {
        spdlog::info("{}: HTTP {}, retrying in {}", what, response.status, format_duration(wait));
        std::this_thread::sleep_for(wait);
        continue;
      }
    }
    if (response.status == 401) {
      credentials_->invalidate();  // the next request fetches a fresh credential
    }
    ApiResponse result;
    result.status = response.status;
    result.warnings = parse_warnings(response.headers_named("Warning"));
    for (const auto& warning : result.warnings) {
      spdlog::warn("{}: server warning: {}", what, warning);
    }
    if (response.status < 200 || response.status >= 300) {
      throw make_api_error(response.status, response.reason, response.body, what);
    }
    if (request.text_response) {
      result.text = std::move(response.body);
    } else if (!response.body.empty()) {
      result.body = json::parse(response.body, nullptr, false);
      if (result.body.is_discarded()) {
        throw ApiError(fmt::format("{}: the server answered with invalid JSON", what),
                       response.status, "InvalidResponse");
      }
    }
    return result;
  }
}

json KubeClient::get(const std::string& path, Deadline deadline) {
  ApiRequest request;
  request.path = path;
  return this->request(request, deadline).body;
}

std::optional<json> KubeClient::get_if_exists(const std::string& path, Deadline deadline) {
  try {
    return get(path, deadline);
  } catch (const ApiError& error) {
    if (error.http_status() == 404) {
      return std::nullopt;
    }
    throw;
  }
}

void KubeClient::watch(const ApiRequest& request,
                       const std::function<bool(const json& event)>& on_event,
                       Duration idle_timeout, Deadline deadline) {
  const auto what = request.description.empty() ? "watch " + request.path : request.description;
  stream_lines(
      request,
      [&](std::string_view line) {
        auto event = json::parse(line, nullptr, false);
        if (event.is_discarded() || !event.is_object()) {
          throw ApiError(fmt::format("{}: the server sent an invalid watch event", what), 200,
                         "InvalidResponse");
        }
        return on_event(event);
      },
      idle_timeout, deadline);
}

void KubeClient::stream_lines(const ApiRequest& request,
                              const std::function<bool(std::string_view line)>& on_line,
                              Duration idle_timeout, Deadline deadline) {
  const auto http = build(request, deadline);
  ++requests_sent_;
  const auto what = request.description.empty() ? "GET " + request.path : request.description;
  const auto head = http_.stream_lines(http, on_line, idle_timeout, deadline);
  if (head.status == 401) {
    credentials_->invalidate();
  }
  if (head.status != 200) {
    throw make_api_error(head.status, head.reason, head.body, what);
  }
}

}  // namespace deployapps

// A Kubernetes API client: authentication, retries with backoff, readable Status errors,
// Warning headers, and watches as streams of JSON events.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "deployapps/budget.hpp"
#include "deployapps/credentials.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/http_client.hpp"
#include "deployapps/kubeconfig.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

// Retries of one request; its timeout is in budget.hpp, and the caller's deadline bounds all.
inline constexpr int kDefaultMaxRetries = 5;
inline constexpr Duration kDefaultInitialBackoff = std::chrono::milliseconds(200);
inline constexpr Duration kDefaultMaxBackoff = std::chrono::seconds(8);
// client-go follows Retry-After up to 10 times; API Priority and Fairness asks for at most 32 s.
inline constexpr Duration kMaxRetryAfter = std::chrono::seconds(32);

struct ClientOptions {
  Duration request_timeout = kDefaultRequestTimeout;
  int max_retries = kDefaultMaxRetries;
  Duration initial_backoff = kDefaultInitialBackoff;
  Duration max_backoff = kDefaultMaxBackoff;
  std::string user_agent;  // default: deploy-apps/<version> (linux/<arch>)
};

using QueryParameters = std::vector<std::pair<std::string, std::string>>;

struct ApiRequest {
  std::string method = "GET";
  std::string path;  // from the API root, e.g. /apis/apps/v1/namespaces/x/deployments/y
  QueryParameters query;
  std::optional<nlohmann::json> body;
  std::string content_type = "application/json";
  // Safe to send again after a network error (GET, PUT, DELETE, server-side apply). Rate
  // limiting (429) is retried for every request: the server did not process it.
  bool idempotent = true;
  std::string description;  // what the request does, for error messages
  // The answer is not JSON (e.g. pod logs): keep it as text in ApiResponse::text.
  bool text_response = false;
};

struct ApiResponse {
  unsigned status = 0;
  nlohmann::json body;
  std::string text;                   // the body, when the request asked for text
  std::vector<std::string> warnings;  // the text of each Warning header
};

class KubeClient {
 public:
  explicit KubeClient(const RestConfig& config, ClientOptions options = {});
  // `config.credentials` when set, else a source of its own.
  KubeClient(RestConfig config, std::shared_ptr<CredentialSource> credentials,
             ClientOptions options);

  // Sends a request; a non-2xx answer throws ApiError with the Status rendered readably.
  ApiResponse request(const ApiRequest& request, Deadline deadline);

  [[nodiscard]] nlohmann::json get(const std::string& path, Deadline deadline);
  // A GET where 404 is an expected answer.
  [[nodiscard]] std::optional<nlohmann::json> get_if_exists(const std::string& path,
                                                            Deadline deadline);

  // Streams a watch (the request should carry watch=1); each line is one event
  // {"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": …}. Returns when the server ends
  // the stream (normal: watch again from the last resourceVersion) or on_event returns false.
  void watch(const ApiRequest& request,
             const std::function<bool(const nlohmann::json& event)>& on_event,
             Duration idle_timeout, Deadline deadline);

  // Streams any line-oriented answer (a watch, a followed pod log) to `on_line` until the server
  // ends it or on_line returns false; a non-200 answer throws ApiError.
  void stream_lines(const ApiRequest& request,
                    const std::function<bool(std::string_view line)>& on_line,
                    Duration idle_timeout, Deadline deadline);

  // Thread-safe: ends a watch in progress on this client (and any later one) as if on_event had
  // returned false.
  void cancel_watch() { http_.cancel_stream(); }

  [[nodiscard]] const RestConfig& config() const noexcept { return config_; }
  [[nodiscard]] std::size_t requests_sent() const noexcept { return requests_sent_; }
  [[nodiscard]] std::size_t connections_opened() const noexcept;

 private:
  HttpRequest build(const ApiRequest& request, Deadline deadline);
  Duration backoff(int attempt);

  RestConfig config_;
  ClientOptions options_;
  std::shared_ptr<CredentialSource> credentials_;
  HttpsClient http_;
  std::mt19937 jitter_;
  std::size_t requests_sent_ = 0;
};

// Turns an error response into an ApiError. A Kubernetes Status gives the message, reason and
// causes (422 field errors are listed one per line); other bodies are quoted briefly.
[[nodiscard]] ApiError make_api_error(unsigned status, std::string_view reason_phrase,
                                      std::string_view body, std::string_view what);

// The text of Warning headers ("299 - \"text\"" gives "text").
[[nodiscard]] std::vector<std::string> parse_warnings(const std::vector<std::string>& headers);

// True for a 410 Expired/Gone Status (a watch's resourceVersion is too old: list again).
[[nodiscard]] bool is_expired(const nlohmann::json& status);

// Builds "path?k=v&…" with the values percent-encoded.
[[nodiscard]] std::string with_query(const std::string& path, const QueryParameters& query);

}  // namespace deployapps

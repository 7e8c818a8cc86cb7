// The real-traffic in-flight check (issue 17 item 1): while an app rolls out, the ingress
// controller's own counters (Traefik's Prometheus endpoint, read directly, no Prometheus server)
// say whether any real user got an error from this app's Service.
//
// The judge is pure (ingress_counts, judge_ingress); IngressCheck is the shell that scrapes.
//
// What it counts, per Traefik service of the app (traefik_service_requests_total):
//   - 5xx answers (502, 503 and 504 are named apart: the ingress's own "no backend" answers),
//   - 499 (the client gave up waiting).
// What it cannot see: a response cut after its headers (Traefik counts it under the status it had
// sent) and a connection refused before any request; the synthetic probe and the old pods' exit
// codes cover those.
//
// The baseline: the counters read when the check starts and again at the apply (the probe's
// warmup, 2 s, in between). No error in that window: any error during the rollout fails it. Some
// errors in it (background noise from elsewhere): the rollout may show as many as that error
// ratio predicts for its own request count, plus a margin of three standard deviations (Poisson),
// and fails beyond that.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "deployapps/time.hpp"

namespace deployapps {

struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the Prometheus text exposition format (0.0.4): comments skipped, label values unescaped,
// timestamps ignored. Lines it cannot read are skipped. Hand-written: Debian packages no C++
// parser for it (prometheus-cpp only exposes metrics), and the format is a line per sample.
[[nodiscard]] std::vector<MetricSample> parse_prometheus_text(std::string_view text);

// A plain HTTP GET (Traefik's metrics and API endpoints), bounded by `timeout` as a whole; the body
// of a 200. Throws TimeoutError or NetworkError. Hand-written on Beast: the API client is TLS-only.
[[nodiscard]] std::string http_get(const std::string& url, Duration timeout);

struct IngressCounts {
  double requests = 0;             // every answer, errors included
  double server_errors = 0;        // 5xx
  double bad_gateway = 0;          // 502
  double service_unavailable = 0;  // 503
  double gateway_timeout = 0;      // 504
  double client_closed = 0;        // 499
  // A gauge, not a counter: the connections open to the ingress's entry points (its own API's
  // excluded). Traefik v3 counts open connections per entry point only, not per service.
  double open_connections = 0;
  [[nodiscard]] double errors() const { return server_errors + client_closed; }
  // The counters' increase; the gauge is the later reading's.
  IngressCounts operator-(const IngressCounts& earlier) const;
};

// Traefik's name for a Kubernetes Ingress backend: "<namespace>-<service>-<port>@kubernetes".
// Sums traefik_service_requests_total over the services of `service` in `namespace_name`, and
// traefik_open_connections over the entry points but "traefik" (its API and metrics).
[[nodiscard]] IngressCounts ingress_counts(const std::vector<MetricSample>& samples,
                                           std::string_view namespace_name,
                                           std::string_view service);

struct IngressJudgement {
  bool failed = false;
  double allowed_errors = 0;  // what the background rate allows for this many requests
  std::string summary;        // for people: counts and the verdict
  IngressCounts baseline;     // the window before the apply
  IngressCounts during;       // since the apply; no requests: nothing to judge
  // The entry points' open connections at the apply and at their highest since (IngressCheck's
  // readings, every kIngressScrapeInterval): context for the counts, not judged.
  double open_connections_at_apply = 0;
  double open_connections_peak = 0;
};

// Judges the rollout's counts (`during`: since the apply) against the baseline window's.
[[nodiscard]] IngressJudgement judge_ingress(const IngressCounts& baseline,
                                             const IngressCounts& during);

// Reads the metrics endpoint every kIngressScrapeInterval from a thread of its own.
class IngressCheck {
 public:
  IngressCheck(std::string url, std::string namespace_name, std::string service);
  ~IngressCheck();
  IngressCheck(const IngressCheck&) = delete;
  IngressCheck& operator=(const IngressCheck&) = delete;
  IngressCheck(IngressCheck&&) = delete;
  IngressCheck& operator=(IngressCheck&&) = delete;

  // Reads the counters once (the baseline's start) and starts scraping. Throws NetworkError when
  // the endpoint does not answer.
  void start();
  // The change is about to be applied: the baseline window ends here.
  void mark_apply();
  // The current judgement (baseline vs. since mark_apply), from the last successful scrape.
  [[nodiscard]] IngressJudgement judgement() const;
  // Reads the counters a last time, stops scraping and judges.
  IngressJudgement stop();

  [[nodiscard]] const std::string& url() const noexcept { return url_; }

 private:
  IngressCounts scrape() const;
  void loop();
  void stop_scraping();

  std::string url_;
  std::string namespace_name_;
  std::string service_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  IngressCounts at_start_;
  std::optional<IngressCounts> at_apply_;
  IngressCounts latest_;
  double open_connections_peak_ = 0;  // since the apply
  std::size_t failed_scrapes_ = 0;
  std::thread thread_;
};

}  // namespace deployapps

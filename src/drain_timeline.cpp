#include "deployapps/drain_timeline.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "deployapps/budget.hpp"
#include "deployapps/encoding.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/ingress_check.hpp"
#include "deployapps/kube_client.hpp"
#include "deployapps/rollout_watch.hpp"

namespace deployapps {
namespace {

using nlohmann::json;
using json_pointer = json::json_pointer;

std::optional<WallTime> time_field(const json& line, const char* key) {
  const auto found = line.find(key);
  if (found == line.end() || !found->is_string()) {
    return std::nullopt;
  }
  try {
    return parse_rfc3339(found->get<std::string>());
  } catch (const Error&) {
    return std::nullopt;
  }
}

std::optional<Duration> between(const std::optional<WallTime>& from,
                                const std::optional<WallTime>& to) {
  if (!from || !to) {
    return std::nullopt;
  }
  return std::chrono::duration_cast<Duration>(*to - *from);
}

std::string format_signed(const std::optional<Duration>& duration) {
  if (!duration) {
    return "unknown";
  }
  return duration->count() < 0 ? "-" + format_duration(-*duration) : format_duration(*duration);
}

// The host of "http://10.1.2.3:8080" or "http://[fd00::1]:8080".
std::string url_host(std::string_view url) {
  if (const auto scheme = url.find("://"); scheme != std::string_view::npos) {
    url.remove_prefix(scheme + 3);
  }
  url = url.substr(0, url.find('/'));
  if (!url.empty() && url.front() == '[') {
    return std::string(url.substr(1, url.find(']') - 1));
  }
  return std::string(url.substr(0, url.rfind(':')));
}

}  // namespace

void read_shutdown_line(std::string_view line, ShutdownLog& log) {
  const auto entry = json::parse(line, nullptr, false);
  if (entry.is_discarded() || !entry.is_object()) {
    return;
  }
  const auto message = entry.value("msg", std::string());
  const auto at = time_field(entry, "time");
  if (!at) {
    return;
  }
  if (message == "shutdown signal received") {
    log.signal = at;
  } else if (message.starts_with("SHUTDOWN_MODE=immediate")) {
    // The process dies on the signal: it stops listening then.
    log.signal = at;
    log.stopped_accepting = at;
    log.immediate = true;
  } else if (message.starts_with("shutdown: stopped accepting")) {
    log.stopped_accepting = at;
  } else if (message == "shutdown: drained") {
    log.drained = at;
    log.last_response = time_field(entry, "last_response_at");
  } else if (message == "shutdown complete") {
    log.complete = at;
  }
}

std::vector<SliceEndpoint> slice_endpoints(const json& slice) {
  std::vector<SliceEndpoint> endpoints;
  const auto list = slice.find("endpoints");
  if (list == slice.end() || !list->is_array()) {
    return endpoints;
  }
  for (const auto& endpoint : *list) {
    const auto pod = endpoint.value(json_pointer("/targetRef/name"), std::string());
    if (pod.empty()) {
      continue;
    }
    // An absent "ready" means ready (discovery.k8s.io/v1 EndpointConditions).
    endpoints.push_back({pod, endpoint.value(json_pointer("/conditions/ready"), true)});
  }
  return endpoints;
}

std::vector<std::string> traefik_server_hosts(const json& services, std::string_view name_prefix) {
  std::vector<std::string> hosts;
  if (!services.is_array()) {
    return hosts;
  }
  for (const auto& service : services) {
    const auto name = service.value("name", std::string());
    constexpr std::string_view kProvider = "@kubernetes";
    if (!name.starts_with(name_prefix) || !name.ends_with(kProvider)) {
      continue;
    }
    // "<namespace>-<service>-<port>": a port part with '-' belongs to another Service, whose
    // name only starts like this one's (as in ingress_counts).
    const auto port = std::string_view(name).substr(
        name_prefix.size(), name.size() - name_prefix.size() - kProvider.size());
    if (port.find('-') != std::string_view::npos) {
      continue;
    }
    const auto servers = service.value(json_pointer("/loadBalancer/servers"), json::array());
    for (const auto& server : servers) {
      // A fenced server is a terminating endpoint: kept for the connections it has, sent no new
      // request (Traefik v3.1 on).
      if (!server.value("fenced", false)) {
        hosts.push_back(url_host(server.value("url", std::string())));
      }
    }
  }
  return hosts;
}

DrainJudgement judge_drain(const PodDrain& pod, DrainPause configured) {
  DrainJudgement judgement;
  for (const auto& [slice, left] : pod.slices_left) {
    judgement.routers_stopped = std::max(judgement.routers_stopped.value_or(left), left);
  }
  if (pod.ingress_left) {
    judgement.routers_stopped =
        std::max(judgement.routers_stopped.value_or(*pod.ingress_left), *pod.ingress_left);
  }
  if (pod.log.signal) {
    judgement.pause_start = *pod.log.signal - configured.prestop_sleep;
  }
  judgement.margin = between(judgement.routers_stopped, pod.log.stopped_accepting);
  judgement.propagation = between(pod.deletion_seen, judgement.routers_stopped);
  judgement.pause_needed = between(judgement.pause_start, judgement.routers_stopped);
  judgement.failed = judgement.margin && judgement.margin->count() < 0;
  std::string routers = fmt::format("{} EndpointSlice(s)", pod.slices_left.size());
  if (pod.ingress_left) {
    routers += " and the ingress";
  } else if (pod.ingress_listed) {
    routers += "; the ingress still listed it";
  }
  judgement.summary = fmt::format(
      "{}: no router sent to it {} after its deletion was seen ({}); it stopped accepting {} "
      "after that{}; drain pause needed {}, configured {}{}",
      pod.pod, format_signed(judgement.propagation), routers, format_signed(judgement.margin),
      judgement.failed ? " (NEGATIVE: new connections could reach a closed listener)" : "",
      judgement.pause_needed && judgement.pause_needed->count() <= 0
          ? std::string("none (they let go before SIGTERM)")
          : format_signed(judgement.pause_needed),
      format_duration(configured.total()),
      pod.log_error.empty() ? std::string() : "; its log: " + pod.log_error);
  return judgement;
}

json drain_json(const PodDrain& pod, const DrainJudgement& judgement, DrainPause configured) {
  const auto moment = [&](const std::optional<WallTime>& when) -> json {
    if (!when) {
      return nullptr;
    }
    json out{{"at", format_rfc3339(*when)}};
    if (const auto after = between(pod.deletion_seen, when)) {
      out["afterDeletionSeconds"] = static_cast<double>(after->count()) / 1000.0;
    }
    return out;
  };
  const auto seconds = [](const std::optional<Duration>& duration) -> json {
    return duration ? json(static_cast<double>(duration->count()) / 1000.0) : json(nullptr);
  };
  json slices = json::object();
  for (const auto& [slice, left] : pod.slices_left) {
    slices[slice] = moment(left);
  }
  return {{"pod", pod.pod},
          {"ip", pod.ip},
          {"deletionSeen", moment(pod.deletion_seen)},
          {"pauseStart", moment(judgement.pause_start)},
          {"leftEndpointSlices", slices},
          {"leftIngress", moment(pod.ingress_left)},
          {"ingressListedIt", pod.ingress_listed},
          {"routersStopped", moment(judgement.routers_stopped)},
          {"sigterm", moment(pod.log.signal)},
          {"stoppedAccepting", moment(pod.log.stopped_accepting)},
          {"lastResponse", moment(pod.log.last_response)},
          {"drained", moment(pod.log.drained)},
          {"exit", moment(pod.log.complete)},
          {"exitCode", pod.exit_code ? json(*pod.exit_code) : json(nullptr)},
          {"immediateShutdown", pod.log.immediate},
          {"logError", pod.log_error},
          {"propagationSeconds", seconds(judgement.propagation)},
          {"marginSeconds", seconds(judgement.margin)},
          {"pauseNeededSeconds", seconds(judgement.pause_needed)},
          {"pauseConfiguredSeconds", seconds(configured.total())},
          {"preStopSleepSeconds", seconds(configured.prestop_sleep)},
          {"appDelaySeconds", seconds(configured.app_delay)},
          {"failed", judgement.failed}};
}

DrainPause drain_pause_of(const json& pod_template) {
  DrainPause pause;
  pause.prestop_sleep = std::chrono::seconds(pod_template.value(
      json_pointer("/spec/containers/0/lifecycle/preStop/sleep/seconds"), std::int64_t{0}));
  const auto env = pod_template.value(json_pointer("/spec/containers/0/env"), json::array());
  for (const auto& variable : env) {
    if (variable.value("name", "") != "SHUTDOWN_DELAY_SECONDS") {
      continue;
    }
    const auto text = variable.value("value", "");
    std::int64_t seconds = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (error == std::errc() && end == text.data() + text.size() && seconds > 0) {
      pause.app_delay = std::chrono::seconds(seconds);
    }
  }
  return pause;
}

std::string match_labels_selector(const json& deployment) {
  std::string selector;
  const auto labels = deployment.value(json_pointer("/spec/selector/matchLabels"), json::object());
  for (const auto& [key, value] : labels.items()) {
    selector += fmt::format("{}{}={}", selector.empty() ? "" : ",", key,
                            value.is_string() ? value.get<std::string>() : value.dump());
  }
  return selector;
}

std::string traefik_services_url(std::string_view metrics_url) {
  const auto scheme = metrics_url.find("://");
  const auto path = metrics_url.find('/', scheme == std::string_view::npos ? 0 : scheme + 3);
  return std::string(metrics_url.substr(0, path)) + "/api/http/services";
}

// The shell: one thread takes the watches' events and polls Traefik; one thread per deleted old
// pod follows its log until the container exits.
class DrainTimelineRecorder::Impl {
 public:
  Impl(RestConfig config, DrainTimelineSettings settings, Deadline overall)
      : config_(std::move(config)),
        settings_(std::move(settings)),
        overall_(overall),
        client_(config_) {}

  ~Impl() { stop_threads(Deadline::after(Duration{0})); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;

  void start(Deadline deadline) {
    const auto pods_path = fmt::format("/api/v1/namespaces/{}/pods", settings_.namespace_name);
    const auto slices_path = fmt::format("/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices",
                                         settings_.namespace_name);
    const QueryParameters pods_query{{"labelSelector", settings_.pod_selector}};
    const QueryParameters slices_query{
        {"labelSelector", "kubernetes.io/service-name=" + settings_.service}};
    const auto pods = list(pods_path, pods_query, "list the app's pods", deadline);
    const auto slices = list(slices_path, slices_query, "list the app's EndpointSlices", deadline);
    {
      const std::lock_guard lock(mutex_);
      for (const auto& pod : pods.value("items", json::array())) {
        PodDrain drain;
        drain.pod = name_of(pod);
        drain.ip = pod.value(json_pointer("/status/podIP"), std::string());
        pods_.emplace(drain.pod, std::move(drain));
      }
      for (const auto& slice : slices.value("items", json::array())) {
        absorb_slice(slice, false);
      }
    }
    poll_ingress();
    watchers_.push_back(std::make_unique<CollectionWatcher>(config_, WatchSource::kPod, pods_path,
                                                            pods_query, resource_version_of(pods),
                                                            queue_, overall_));
    watchers_.push_back(std::make_unique<CollectionWatcher>(
        config_, WatchSource::kEndpointSlice, slices_path, slices_query,
        resource_version_of(slices), queue_, overall_));
    thread_ = std::thread([this] { loop(); });
  }

  DrainOutcome stop(Deadline logs_deadline) {
    stop_threads(logs_deadline);
    DrainOutcome outcome;
    const std::lock_guard lock(mutex_);
    for (const auto& [name, pod] : pods_) {
      if (!pod.deletion_seen) {
        continue;  // not replaced (a rollback kept it)
      }
      const auto judgement = judge_drain(pod, settings_.configured_pause);
      if (judgement.failed && !outcome.failed) {
        outcome.failed = true;
        outcome.failure = judgement.summary;
      }
      outcome.lines.push_back(judgement.summary);
      outcome.timelines.push_back(drain_json(pod, judgement, settings_.configured_pause));
      // The pod's name ends in a 5-character suffix: enough to tell two old pods apart.
      const auto short_name = name.size() > 5 ? name.substr(name.size() - 5) : name;
      if (judgement.routers_stopped) {
        outcome.moments.emplace_back(short_name + " no router sends", *judgement.routers_stopped);
      }
      if (pod.log.stopped_accepting) {
        outcome.moments.emplace_back(short_name + " stops listening", *pod.log.stopped_accepting);
      }
    }
    return outcome;
  }

 private:
  json list(const std::string& path, const QueryParameters& query, const std::string& what,
            Deadline deadline) {
    ApiRequest request;
    request.path = path;
    request.query = query;
    request.description = "drain timeline: " + what;
    return client_.request(request, deadline).body;
  }

  void stop_threads(Deadline logs_deadline) {
    if (stopping_.load()) {
      return;
    }
    // The log readers end by themselves when their container exits. Worth waiting for while the
    // watches still run, only when every deleted pod has exited (not after a Ctrl-C or a timeout
    // mid-drain: then an exit not seen within kDrainExitSeen ends the wait), and never past the
    // budget.
    const auto until = Deadline::at(std::min(logs_deadline.when(), overall_.when()));
    const auto exit_seen = Deadline::after(kDrainExitSeen);
    while (!until.expired() && logs_running_.load() > 0) {
      if (exit_seen.expired() && !deleted_pods_exited()) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    stopping_.store(true);
    if (thread_.joinable()) {
      thread_.join();
    }
    for (auto& watcher : watchers_) {
      watcher->stop();
    }
    std::vector<std::unique_ptr<LogReader>> readers;
    {
      const std::lock_guard lock(mutex_);
      readers.swap(readers_);
    }
    for (auto& reader : readers) {
      reader->client.cancel_watch();
      if (reader->thread.joinable()) {
        reader->thread.join();
      }
    }
  }

  bool deleted_pods_exited() {
    const std::lock_guard lock(mutex_);
    return std::all_of(pods_.begin(), pods_.end(), [](const auto& entry) {
      return !entry.second.deletion_seen || entry.second.exit_code.has_value();
    });
  }

  void loop() {
    while (!stopping_.load()) {
      for (auto& event : queue_.take(kDrainIngressPollInterval)) {
        if (!event.error.empty()) {
          warn_once(event.error);
          continue;
        }
        const std::lock_guard lock(mutex_);
        for (const auto& object :
             event.type == "RELIST" ? event.object : json::array({event.object})) {
          if (event.source == WatchSource::kPod) {
            absorb_pod(object);
          } else {
            absorb_slice(object, event.type == "DELETED");
          }
        }
      }
      if (any_terminating()) {
        poll_ingress();
      }
    }
  }

  bool any_terminating() {
    const std::lock_guard lock(mutex_);
    return std::any_of(pods_.begin(), pods_.end(), [](const auto& entry) {
      return entry.second.deletion_seen && !entry.second.ingress_left;
    });
  }

  void warn_once(const std::string& what) {
    if (warned_.insert(what).second) {
      spdlog::warn("drain timeline: {}", what);
    }
  }

  // Called with mutex_ held.
  void absorb_pod(const json& object) {
    const auto found = pods_.find(name_of(object));
    if (found == pods_.end()) {
      return;  // a new pod: only the old ones drain
    }
    PodDrain& pod = found->second;
    if (pod.ip.empty()) {
      pod.ip = object.value(json_pointer("/status/podIP"), std::string());
    }
    if (!pod.deletion_seen && object.contains(json_pointer("/metadata/deletionTimestamp"))) {
      pod.deletion_seen = std::chrono::system_clock::now();
      follow_log(pod.pod);
    }
    const auto statuses = object.value(json_pointer("/status/containerStatuses"), json::array());
    for (const auto& status : statuses) {
      if (status.value("name", std::string()) != settings_.container) {
        continue;
      }
      const auto code = json_pointer("/state/terminated/exitCode");
      if (status.contains(code)) {
        pod.exit_code = status.at(code).get<int>();
      }
    }
  }

  // Called with mutex_ held. `deleted`: the whole slice went away.
  void absorb_slice(const json& slice, bool deleted) {
    const auto slice_name = name_of(slice);
    const auto now = std::chrono::system_clock::now();
    std::set<std::string> ready;
    if (!deleted) {
      for (const auto& endpoint : slice_endpoints(slice)) {
        if (endpoint.ready) {
          ready.insert(endpoint.pod);
        }
      }
    }
    auto& listed = slice_pods_[slice_name];
    for (auto& [name, pod] : pods_) {
      if (ready.contains(name)) {
        listed.insert(name);
      } else if (listed.contains(name) && !pod.slices_left.contains(slice_name)) {
        pod.slices_left.emplace(slice_name, now);
      }
    }
  }

  void poll_ingress() {
    if (settings_.ingress_api_url.empty()) {
      return;
    }
    std::vector<std::string> hosts;
    try {
      hosts = traefik_server_hosts(
          json::parse(http_get(settings_.ingress_api_url, kDrainIngressPollTimeout)),
          fmt::format("{}-{}-", settings_.namespace_name, settings_.service));
    } catch (const std::exception& error) {
      warn_once(fmt::format("reading the ingress's API: {}", error.what()));
      return;
    }
    const auto now = std::chrono::system_clock::now();
    const std::lock_guard lock(mutex_);
    for (auto& [name, pod] : pods_) {
      const bool listed =
          !pod.ip.empty() && std::find(hosts.begin(), hosts.end(), pod.ip) != hosts.end();
      if (listed) {
        pod.ingress_listed = true;
      } else if (pod.ingress_listed && pod.deletion_seen && !pod.ingress_left) {
        pod.ingress_left = now;
      }
    }
  }

  struct LogReader {
    explicit LogReader(const RestConfig& config) : client(config) {}
    KubeClient client;
    std::thread thread;
  };

  // Called with mutex_ held.
  void follow_log(const std::string& pod) {
    auto reader = std::make_unique<LogReader>(config_);
    LogReader* raw = reader.get();
    ++logs_running_;
    reader->thread = std::thread([this, raw, pod] {
      ApiRequest request;
      request.path =
          fmt::format("/api/v1/namespaces/{}/pods/{}/log", settings_.namespace_name, pod);
      // Only the shutdown's lines are needed; the seconds cover a watch event that came late.
      request.query = {{"container", settings_.container},
                       {"follow", "true"},
                       {"sinceSeconds", std::to_string(kDrainLogLookBack.count() / 1000)}};
      request.description = "drain timeline: follow the log of pod " + pod;
      std::string error;
      try {
        raw->client.stream_lines(
            request,
            [&](std::string_view line) {
              const std::lock_guard lock(mutex_);
              read_shutdown_line(line, pods_.at(pod).log);
              return true;
            },
            std::min(overall_.remaining(), kDrainLogIdle), overall_);
      } catch (const std::exception& failure) {
        error = failure.what();
      }
      {
        const std::lock_guard lock(mutex_);
        pods_.at(pod).log_error = error;
      }
      --logs_running_;
    });
    readers_.push_back(std::move(reader));
  }

  RestConfig config_;
  DrainTimelineSettings settings_;
  Deadline overall_;
  KubeClient client_;
  EventQueue queue_;
  std::vector<std::unique_ptr<CollectionWatcher>> watchers_;
  std::mutex mutex_;
  std::map<std::string, PodDrain> pods_;
  std::map<std::string, std::set<std::string>> slice_pods_;  // ready pods ever seen per slice
  std::vector<std::unique_ptr<LogReader>> readers_;
  std::atomic<int> logs_running_{0};
  std::set<std::string> warned_;  // the loop's thread only
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

DrainTimelineRecorder::DrainTimelineRecorder(const RestConfig& config,
                                             DrainTimelineSettings settings, Deadline overall)
    : impl_(std::make_unique<Impl>(config, std::move(settings), overall)) {}
DrainTimelineRecorder::~DrainTimelineRecorder() = default;

void DrainTimelineRecorder::start(Deadline deadline) {
  impl_->start(deadline);
}

DrainOutcome DrainTimelineRecorder::stop(Deadline logs_deadline) {
  return impl_->stop(logs_deadline);
}

}  // namespace deployapps

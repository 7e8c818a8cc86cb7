// The drain-race timeline of each old pod (issue 17 item 2): when its deletion was seen, when
// each router stopped sending it new requests, and when the app stopped listening. The race
// between the two (Kubernetes issues 43576, 67592, 123116) is measured here, not guessed.
//
// Where each moment comes from, all wall-clock times of this machine or the pod's node:
//   - deletion seen: the pod watch shows its deletionTimestamp (as this process receives it);
//   - left an EndpointSlice: the slice watch shows its endpoint not ready, or gone (kube-proxy
//     acts on that change; its own sync is not observable from the API);
//   - left the ingress: Traefik's API no longer lists the pod's address among the Service's
//     load-balancer servers that take new requests (it keeps a terminating one "fenced", for the
//     connections it has); polled every kDrainIngressPollInterval, so up to that late;
//   - SIGTERM, stopped accepting, last response, drained, exit: the app's own log lines
//     (apps/README.md's shutdown timeline), read from the pod's log as it drains;
//   - pause start: SIGTERM minus the configured preStop sleep (the kubelet sends SIGTERM when
//     the sleep ends; the API shows no event for its start).
// The drain pause is how long an old pod keeps accepting after its deletion: the kubelet's preStop
// sleep before SIGTERM plus the app's own SHUTDOWN_DELAY_SECONDS after it (apps/README.md).
// The propagation margin is "stopped accepting" minus "no router sends to it" (the later of the
// slices and the ingress). Negative: a router could still send a new connection to a closed
// listener, so the check fails. The pause the measured propagation needs is "no router sends to
// it" minus the pause start.
//
// The judge and the parsers are pure; DrainTimelineRecorder is the shell that watches and reads.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "deployapps/kubeconfig.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

// What an app's JSON log lines say about its shutdown.
struct ShutdownLog {
  std::optional<WallTime> signal;             // "shutdown signal received" (or immediate mode's)
  std::optional<WallTime> stopped_accepting;  // "shutdown: stopped accepting; ..."
  std::optional<WallTime> last_response;      // last_response_at of "shutdown: drained"
  std::optional<WallTime> drained;            // "shutdown: drained"
  std::optional<WallTime> complete;           // "shutdown complete", just before the exit
  bool immediate = false;                     // SHUTDOWN_MODE=immediate: dies on the signal
};

// Folds one log line into `log`; lines that are not the apps' JSON are ignored.
void read_shutdown_line(std::string_view line, ShutdownLog& log);

// One endpoint of an EndpointSlice: the pod it points at and whether new connections may go to it.
struct SliceEndpoint {
  std::string pod;
  bool ready = false;
};
[[nodiscard]] std::vector<SliceEndpoint> slice_endpoints(const nlohmann::json& slice);

// The hosts (pod IPs) of the servers that take new requests (not fenced) in Traefik's API list of
// services (/api/http/services), for the services named "<name_prefix><port>@kubernetes".
[[nodiscard]] std::vector<std::string> traefik_server_hosts(const nlohmann::json& services,
                                                            std::string_view name_prefix);

struct PodDrain {
  std::string pod;
  std::string ip;
  std::optional<WallTime> deletion_seen;
  std::map<std::string, WallTime> slices_left;  // by EndpointSlice name
  bool ingress_listed = false;                  // Traefik listed it at least once
  std::optional<WallTime> ingress_left;
  ShutdownLog log;
  std::string log_error;  // why its log could not be read ("" when it was)
  std::optional<int> exit_code;
};

// An old pod's configured drain pause, in its two parts.
struct DrainPause {
  Duration prestop_sleep{};  // the kubelet's, before SIGTERM
  Duration app_delay{};      // the app's SHUTDOWN_DELAY_SECONDS, after SIGTERM
  [[nodiscard]] Duration total() const { return prestop_sleep + app_delay; }
};

struct DrainJudgement {
  std::optional<WallTime> routers_stopped;  // the last of slices_left and ingress_left
  std::optional<WallTime> pause_start;      // derived: SIGTERM - configured preStop sleep
  std::optional<Duration> margin;           // stopped accepting - routers_stopped
  std::optional<Duration> propagation;      // routers_stopped - deletion seen
  std::optional<Duration> pause_needed;     // routers_stopped - pause start
  bool failed = false;                      // margin < 0
  std::string summary;                      // for people, one line
};

[[nodiscard]] DrainJudgement judge_drain(const PodDrain& pod, DrainPause configured);
// The pod's timeline for the report: each moment as RFC 3339 and as seconds after the deletion.
[[nodiscard]] nlohmann::json drain_json(const PodDrain& pod, const DrainJudgement& judgement,
                                        DrainPause configured);

// The drain pause of the first container of a pod template: its preStop sleep and its
// SHUTDOWN_DELAY_SECONDS (each 0 when absent or not a plain number).
[[nodiscard]] DrainPause drain_pause_of(const nlohmann::json& pod_template);

// "k=v,k2=v2" from a Deployment's spec.selector.matchLabels.
[[nodiscard]] std::string match_labels_selector(const nlohmann::json& deployment);

// Traefik's API list of HTTP services on the endpoint that serves `metrics_url`
// (http://127.0.0.1:8089/metrics -> http://127.0.0.1:8089/api/http/services).
[[nodiscard]] std::string traefik_services_url(std::string_view metrics_url);

struct DrainTimelineSettings {
  std::string namespace_name;
  std::string pod_selector;  // the app's pods, e.g. app.kubernetes.io/name=go-app
  std::string service;       // its Service (EndpointSlices labelled kubernetes.io/service-name)
  std::string container;     // whose log tells the shutdown timeline
  // Traefik's API, e.g. http://127.0.0.1:8089/api/http/services; "" when there is none.
  std::string ingress_api_url;
  DrainPause configured_pause;  // the old pods'
};

struct DrainOutcome {
  bool failed = false;
  std::string failure;             // the first negative margin, for people; "" when none
  std::vector<std::string> lines;  // one per old pod, for people
  nlohmann::json timelines = nlohmann::json::array();
  // When no router sent to each old pod, and when it stopped listening: marks for the chart.
  std::vector<std::pair<std::string, WallTime>> moments;
};

// Records the timelines of the pods that exist when it starts (the old ones) as they are
// deleted: a pod watch, an EndpointSlice watch, Traefik's API and each old pod's log.
class DrainTimelineRecorder {
 public:
  DrainTimelineRecorder(const RestConfig& config, DrainTimelineSettings settings, Deadline overall);
  ~DrainTimelineRecorder();
  DrainTimelineRecorder(const DrainTimelineRecorder&) = delete;
  DrainTimelineRecorder& operator=(const DrainTimelineRecorder&) = delete;
  DrainTimelineRecorder(DrainTimelineRecorder&&) = delete;
  DrainTimelineRecorder& operator=(DrainTimelineRecorder&&) = delete;

  // Lists the pods and the slices and starts watching. Throws ApiError (403 names the missing
  // permission) before anything is applied.
  void start(Deadline deadline);
  // Stops; each log reader gets until `logs_deadline` to see its pod's last lines. Judges the
  // pods that were deleted.
  DrainOutcome stop(Deadline logs_deadline);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace deployapps

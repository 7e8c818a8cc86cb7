#include "deployapps/diagnosis.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <set>

#include "deployapps/errors.hpp"

namespace deployapps {
using nlohmann::json;

namespace {

const std::set<std::string, std::less<>> kImagePullReasons{"ErrImagePull", "ImagePullBackOff",
                                                           "InvalidImageName", "ErrImageNeverPull"};
const std::set<std::string, std::less<>> kContainerConfigReasons{
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError"};

std::string text_at(const json& object, const char* pointer) {
  const json::json_pointer path(pointer);
  if (!object.contains(path) || !object.at(path).is_string()) {
    return {};
  }
  return object.at(path).get<std::string>();
}

std::vector<json> array_at(const json& object, const char* pointer) {
  const json::json_pointer path(pointer);
  if (!object.contains(path) || !object.at(path).is_array()) {
    return {};
  }
  return object.at(path).get<std::vector<json>>();
}

std::optional<std::chrono::system_clock::time_point> time_at(const json& object,
                                                             const char* pointer) {
  const auto text = text_at(object, pointer);
  if (text.empty()) {
    return std::nullopt;
  }
  try {
    return parse_rfc3339(text);
  } catch (const Error&) {
    return std::nullopt;
  }
}

// The order of preference when several causes show: the most certain and specific first.
int rank(const Diagnosis& diagnosis) {
  return (diagnosis.certain ? 0 : 100) + static_cast<int>(diagnosis.kind);
}

struct ReadinessFailure {
  std::string message;
  std::optional<std::chrono::system_clock::time_point> last_seen;  // the Event's, kubelet time
};

// The newest "Readiness probe failed" Event of a Pod.
std::optional<ReadinessFailure> readiness_failure(const json& pod,
                                                  const std::vector<json>& events) {
  const auto name = text_at(pod, "/metadata/name");
  const auto uid = text_at(pod, "/metadata/uid");
  std::optional<ReadinessFailure> failure;
  std::string newest;
  for (const auto& event : events) {
    if (text_at(event, "/involvedObject/name") != name ||
        (!uid.empty() && !text_at(event, "/involvedObject/uid").empty() &&
         text_at(event, "/involvedObject/uid") != uid) ||
        text_at(event, "/reason") != "Unhealthy") {
      continue;
    }
    const auto text = text_at(event, "/message");
    if (text.rfind("Readiness probe failed", 0) != 0) {
      continue;
    }
    const char* field = text_at(event, "/lastTimestamp").empty() ? "/eventTime" : "/lastTimestamp";
    const auto when = text_at(event, field);
    if (!failure || when >= newest) {
      failure = ReadinessFailure{text, time_at(event, field)};
      newest = when;
    }
  }
  return failure;
}

bool older_than(const std::optional<std::chrono::system_clock::time_point>& since,
                const DiagnosisInput& input, Duration age) {
  return since && input.now - *since >= age;
}

// A pod that no scheduler or kubelet acts on: the component is down, not the release.
void diagnose_inactive_pod(const json& pod, const DiagnosisInput& input,
                           std::vector<Diagnosis>& found) {
  const auto object = "pod/" + text_at(pod, "/metadata/name");
  const auto wait = format_duration(input.cluster_inactive_after);
  const auto node = text_at(pod, "/spec/nodeName");
  std::optional<json> scheduled;
  for (const auto& condition : array_at(pod, "/status/conditions")) {
    if (condition.value("type", "") == "PodScheduled") {
      scheduled = condition;
    }
  }
  if (node.empty() && !scheduled &&
      older_than(time_at(pod, "/metadata/creationTimestamp"), input,
                 input.cluster_inactive_after)) {
    found.push_back(
        {FailureKind::kClusterInactive, true, object, "", "NotScheduled",
         fmt::format("no scheduler has acted on it for {}: is kube-scheduler running?", wait),
         std::nullopt});
    return;
  }
  if (scheduled && scheduled->value("status", "") == "False" &&
      scheduled->value("reason", "") == "Unschedulable") {
    const auto message = scheduled->value("message", "");
    // The taints the node lifecycle controller puts on a node that is not Ready.
    const bool no_ready_node = message.find("node.kubernetes.io/not-ready") != std::string::npos ||
                               message.find("node.kubernetes.io/unreachable") != std::string::npos;
    if (no_ready_node && older_than(time_at(*scheduled, "/lastTransitionTime"), input,
                                    input.cluster_inactive_after)) {
      found.push_back({FailureKind::kClusterInactive, true, object, "", "NoReadyNode",
                       fmt::format("no Ready node for {}: {}", wait, message), std::nullopt});
    }
    return;
  }
  if (!node.empty() && text_at(pod, "/status/phase") == "Pending" &&
      array_at(pod, "/status/containerStatuses").empty() &&
      array_at(pod, "/status/initContainerStatuses").empty() && scheduled &&
      older_than(time_at(*scheduled, "/lastTransitionTime"), input, input.cluster_inactive_after)) {
    found.push_back(
        {FailureKind::kClusterInactive, true, object, "", "NodeSilent",
         fmt::format("bound to node {} {} ago, and its kubelet has not reported on it: is the "
                     "node Ready and its kubelet running?",
                     node, wait),
         std::nullopt});
  }
}

void diagnose_pod(const json& pod, const DiagnosisInput& input, std::vector<Diagnosis>& found) {
  const auto object = "pod/" + text_at(pod, "/metadata/name");
  for (const auto& condition : array_at(pod, "/status/conditions")) {
    if (condition.value("type", "") == "PodScheduled" && condition.value("status", "") == "False" &&
        condition.value("reason", "") == "Unschedulable") {
      found.push_back({FailureKind::kUnschedulable, false, object, "", "Unschedulable",
                       condition.value("message", ""), std::nullopt});
    }
  }
  diagnose_inactive_pod(pod, input, found);
  auto statuses = array_at(pod, "/status/initContainerStatuses");
  const auto containers = array_at(pod, "/status/containerStatuses");
  statuses.insert(statuses.end(), containers.begin(), containers.end());
  for (const auto& status : statuses) {
    const auto container = status.value("name", "");
    const auto reason = text_at(status, "/state/waiting/reason");
    const auto message = text_at(status, "/state/waiting/message");
    std::optional<int> exit_code;
    if (status.contains(json::json_pointer("/lastState/terminated/exitCode"))) {
      exit_code = status.at(json::json_pointer("/lastState/terminated/exitCode")).get<int>();
    }
    if (kImagePullReasons.contains(reason)) {
      // A first ErrImagePull may be a registry hiccup; after a retry (ImagePullBackOff), or when
      // the registry says the image does not exist, it is not going to work.
      const bool certain = reason != "ErrImagePull" ||
                           message.find("not found") != std::string::npos ||
                           message.find("manifest unknown") != std::string::npos;
      found.push_back(
          {FailureKind::kImagePull, certain, object, container, reason, message, std::nullopt});
    } else if (reason == "CrashLoopBackOff") {
      found.push_back(
          {FailureKind::kCrashLoop, true, object, container, reason, message, exit_code});
    } else if (kContainerConfigReasons.contains(reason)) {
      found.push_back(
          {FailureKind::kContainerConfig, true, object, container, reason, message, exit_code});
    } else if (status.contains(json::json_pointer("/state/running")) &&
               status.value("started", false) && !status.value("ready", false)) {
      const auto since = time_at(status, "/state/running/startedAt");
      const auto failure = readiness_failure(pod, input.events);
      if (!since || !failure) {
        continue;
      }
      // Measured on the kubelet's own clock (the container's start, the probe's last failure),
      // so a skewed workstation clock cannot shorten or stretch it.
      const bool certain =
          failure->last_seen && *failure->last_seen - *since >= input.never_ready_after;
      found.push_back({FailureKind::kNeverReady, certain, object, container, "Unhealthy",
                       failure->message, std::nullopt});
    }
  }
}

}  // namespace

std::string_view failure_kind_name(FailureKind kind) noexcept {
  switch (kind) {
    case FailureKind::kProgressDeadline:
      return "progress deadline exceeded";
    case FailureKind::kFailedCreate:
      return "pods cannot be created";
    case FailureKind::kImagePull:
      return "image cannot be pulled";
    case FailureKind::kCrashLoop:
      return "container crashes";
    case FailureKind::kContainerConfig:
      return "container cannot be created";
    case FailureKind::kNeverReady:
      return "never ready";
    case FailureKind::kUnschedulable:
      return "unschedulable";
    case FailureKind::kClusterInactive:
      return "the cluster does not act";
  }
  return "unknown";
}

std::string Diagnosis::describe() const {
  std::string text = fmt::format("{}: {}", failure_kind_name(kind), object);
  if (!container.empty()) {
    text += fmt::format(" container {}", container);
  }
  text += fmt::format(": {}", reason);
  if (exit_code) {
    text += fmt::format(" (last exit code {})", *exit_code);
  }
  if (!message.empty()) {
    text += ": " + message;
  }
  return text;
}

Duration persistence_needed(FailureKind kind) noexcept {
  switch (kind) {
    case FailureKind::kImagePull:
      return kImagePullPersistence;
    case FailureKind::kFailedCreate:
      return kFailedCreatePersistence;
    case FailureKind::kContainerConfig:
      return kContainerConfigPersistence;
    default:
      return Duration::zero();
  }
}

std::optional<Diagnosis> PersistenceFilter::apply(std::optional<Diagnosis> diagnosis,
                                                  Clock::time_point now) {
  if (!diagnosis) {
    key_.clear();
    return diagnosis;
  }
  auto key = fmt::format("{}/{}", static_cast<int>(diagnosis->kind), diagnosis->object);
  if (key != key_) {
    key_ = std::move(key);
    since_ = now;
  }
  if (diagnosis->certain && now - since_ < persistence_needed(diagnosis->kind)) {
    diagnosis->certain = false;
  }
  return diagnosis;
}

std::optional<Diagnosis> diagnose(const DiagnosisInput& input) {
  std::vector<Diagnosis> found;
  const auto deployment_name = text_at(input.deployment, "/metadata/name");
  // kubectl's guard: the status (conditions included) describes an older spec until
  // observedGeneration catches up. A ProgressDeadlineExceeded or ReplicaFailure left by the
  // previous rollout must not fail this one.
  const auto generation = input.deployment.value(json::json_pointer("/metadata/generation"), 0L);
  const auto observed =
      input.deployment.value(json::json_pointer("/status/observedGeneration"), 0L);
  const bool status_is_current = observed >= generation;
  for (const auto& condition : array_at(input.deployment, "/status/conditions")) {
    if (status_is_current && condition.value("type", "") == "Progressing" &&
        condition.value("reason", "") == "ProgressDeadlineExceeded") {
      found.push_back({FailureKind::kProgressDeadline, true, "deployment/" + deployment_name, "",
                       "ProgressDeadlineExceeded", condition.value("message", ""), std::nullopt});
    }
  }
  if (!status_is_current && older_than(input.applied_at, input, input.cluster_inactive_after)) {
    found.push_back(
        {FailureKind::kClusterInactive, true, "deployment/" + deployment_name, "", "NotObserved",
         fmt::format("the Deployment controller has not observed generation {} (still {}) {} "
                     "after the apply: is kube-controller-manager running?",
                     generation, observed, format_duration(input.cluster_inactive_after)),
         std::nullopt});
  }
  // The ReplicaSet's own condition, else the Deployment's mirror of it.
  std::vector<json> failure_sources;
  if (input.new_replica_set) {
    failure_sources.push_back(*input.new_replica_set);
  }
  if (status_is_current) {
    failure_sources.push_back(input.deployment);
  }
  for (const auto& source : failure_sources) {
    bool seen = false;
    for (const auto& condition : array_at(source, "/status/conditions")) {
      if (condition.value("type", "") == "ReplicaFailure" &&
          condition.value("status", "") == "True") {
        const auto kind = text_at(source, "/kind");
        found.push_back({FailureKind::kFailedCreate, true,
                         fmt::format("{}/{}", kind == "Deployment" ? "deployment" : "replicaset",
                                     text_at(source, "/metadata/name")),
                         "", condition.value("reason", ""), condition.value("message", ""),
                         std::nullopt});
        seen = true;
      }
    }
    if (seen) {
      break;
    }
  }
  for (const auto& pod : input.new_pods) {
    diagnose_pod(pod, input, found);
  }
  if (found.empty()) {
    return std::nullopt;
  }
  return *std::min_element(found.begin(), found.end(),
                           [](const auto& a, const auto& b) { return rank(a) < rank(b); });
}

}  // namespace deployapps

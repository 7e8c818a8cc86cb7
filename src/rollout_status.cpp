#include "deployapps/rollout_status.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <charconv>
#include <set>

namespace deployapps {
using nlohmann::json;

namespace {

constexpr std::string_view kRevisionAnnotation = "deployment.kubernetes.io/revision";
constexpr std::string_view kHashLabel = "pod-template-hash";
constexpr std::string_view kProgressDeadlineExceeded = "ProgressDeadlineExceeded";

// The Deployment annotations kubectl rollout undo keeps from the Deployment rather than taking
// from the ReplicaSet (kubectl pkg/polymorphichelpers/rollback.go annotationsToSkip).
const std::set<std::string, std::less<>>& annotations_to_skip() {
  static const std::set<std::string, std::less<>> keys{
      "kubectl.kubernetes.io/last-applied-configuration",
      "deployment.kubernetes.io/revision",
      "deployment.kubernetes.io/revision-history",
      "deployment.kubernetes.io/desired-replicas",
      "deployment.kubernetes.io/max-replicas",
      "deprecated.deployment.rollback.to"};
  return keys;
}

// A JSON integer at `pointer`, 0 when absent (the API omits zero values).
long integer_at(const json& object, const json::json_pointer& pointer) {
  if (!object.contains(pointer)) {
    return 0;
  }
  const auto& value = object.at(pointer);
  return value.is_number_integer() ? value.get<long>() : 0;
}

std::string name_of(const json& object) {
  return object.value(json::json_pointer("/metadata/name"), std::string());
}

// Go's semantic equality treats a missing map or list like an empty one; JSON from the API omits
// empty ones, the Deployment controller may write them. Drops null, {} and [] recursively.
json normalized(const json& value) {
  if (value.is_object()) {
    json result = json::object();
    for (const auto& [key, item] : value.items()) {
      auto cleaned = normalized(item);
      if (!cleaned.is_null() && !(cleaned.is_object() && cleaned.empty()) &&
          !(cleaned.is_array() && cleaned.empty())) {
        result[key] = std::move(cleaned);
      }
    }
    return result;
  }
  if (value.is_array()) {
    json result = json::array();
    for (const auto& item : value) {
      result.push_back(normalized(item));
    }
    return result;
  }
  return value;
}

json without_hash_label(json pod_template) {
  const json::json_pointer labels("/metadata/labels");
  if (pod_template.contains(labels) && pod_template.at(labels).is_object()) {
    pod_template.at(labels).erase(std::string(kHashLabel));
  }
  return pod_template;
}

}  // namespace

RolloutStatus deployment_rollout_status(const json& deployment, long revision) {
  const auto name = name_of(deployment);
  if (revision > 0) {
    const auto running = revision_of(deployment);
    if (!running) {
      throw Error(fmt::format("cannot get the revision of deployment \"{}\"", name));
    }
    if (*running != revision) {
      throw Error(fmt::format("desired revision ({}) is different from the running revision ({})",
                              revision, *running));
    }
  }
  const auto generation = integer_at(deployment, json::json_pointer("/metadata/generation"));
  const auto observed = integer_at(deployment, json::json_pointer("/status/observedGeneration"));
  if (generation > observed) {
    return {RolloutPhase::kWaiting, "Waiting for deployment spec update to be observed..."};
  }
  const json::json_pointer conditions("/status/conditions");
  if (deployment.contains(conditions) && deployment.at(conditions).is_array()) {
    for (const auto& condition : deployment.at(conditions)) {
      if (condition.value("type", "") == "Progressing" &&
          condition.value("reason", "") == kProgressDeadlineExceeded) {
        return {RolloutPhase::kFailed,
                fmt::format("deployment \"{}\" exceeded its progress deadline", name)};
      }
    }
  }
  const auto updated = integer_at(deployment, json::json_pointer("/status/updatedReplicas"));
  const auto replicas = integer_at(deployment, json::json_pointer("/status/replicas"));
  const auto available = integer_at(deployment, json::json_pointer("/status/availableReplicas"));
  const json::json_pointer desired_pointer("/spec/replicas");
  if (deployment.contains(desired_pointer)) {
    const auto desired = integer_at(deployment, desired_pointer);
    if (updated < desired) {
      return {RolloutPhase::kWaiting,
              fmt::format("Waiting for deployment \"{}\" rollout to finish: {} out of {} new "
                          "replicas have been updated...",
                          name, updated, desired)};
    }
  }
  if (replicas > updated) {
    return {RolloutPhase::kWaiting,
            fmt::format("Waiting for deployment \"{}\" rollout to finish: {} old replicas are "
                        "pending termination...",
                        name, replicas - updated)};
  }
  if (available < updated) {
    return {RolloutPhase::kWaiting,
            fmt::format("Waiting for deployment \"{}\" rollout to finish: {} of {} updated "
                        "replicas are available...",
                        name, available, updated)};
  }
  return {RolloutPhase::kDone, fmt::format("deployment \"{}\" successfully rolled out", name)};
}

std::optional<long> revision_of(const json& object) {
  const json::json_pointer pointer("/metadata/annotations");
  if (!object.contains(pointer)) {
    return 0;
  }
  const auto& annotations = object.at(pointer);
  const auto it = annotations.find(std::string(kRevisionAnnotation));
  if (it == annotations.end()) {
    return 0;
  }
  if (!it->is_string()) {
    return std::nullopt;
  }
  const auto text = it->get<std::string>();
  long value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc{} || ptr != end) {
    return std::nullopt;
  }
  return value;
}

std::vector<json> owned_replica_sets(const json& deployment,
                                     const std::vector<json>& replica_sets) {
  const auto uid = deployment.value(json::json_pointer("/metadata/uid"), std::string());
  std::vector<json> owned;
  for (const auto& replica_set : replica_sets) {
    const json::json_pointer owners("/metadata/ownerReferences");
    if (!replica_set.contains(owners) || !replica_set.at(owners).is_array()) {
      continue;
    }
    for (const auto& owner : replica_set.at(owners)) {
      if (owner.value("controller", false) && owner.value("uid", "") == uid) {
        owned.push_back(replica_set);
        break;
      }
    }
  }
  return owned;
}

bool templates_equal_ignoring_hash(const json& a, const json& b) {
  return normalized(without_hash_label(a)) == normalized(without_hash_label(b));
}

std::optional<json> new_replica_set(const json& deployment, const std::vector<json>& owned) {
  const json::json_pointer pod_template("/spec/template");
  if (!deployment.contains(pod_template)) {
    return std::nullopt;
  }
  std::optional<json> found;
  for (const auto& replica_set : owned) {
    if (!replica_set.contains(pod_template) ||
        !templates_equal_ignoring_hash(replica_set.at(pod_template), deployment.at(pod_template))) {
      continue;
    }
    // The oldest wins (the controller's FindNewReplicaSet sorts by creation time, then name).
    const auto key = [](const json& object) {
      return std::make_pair(
          object.value(json::json_pointer("/metadata/creationTimestamp"), std::string()),
          name_of(object));
    };
    if (!found || key(replica_set) < key(*found)) {
      found = replica_set;
    }
  }
  return found;
}

std::string selector_query(const json& selector) {
  std::vector<std::string> terms;
  if (const auto labels = selector.find("matchLabels");
      labels != selector.end() && labels->is_object()) {
    for (const auto& [key, value] : labels->items()) {
      terms.push_back(fmt::format("{}={}", key, value.get<std::string>()));
    }
  }
  if (const auto expressions = selector.find("matchExpressions");
      expressions != selector.end() && expressions->is_array()) {
    for (const auto& expression : *expressions) {
      const auto key = expression.value("key", "");
      const auto op = expression.value("operator", "");
      std::vector<std::string> values;
      if (const auto list = expression.find("values"); list != expression.end()) {
        values = list->get<std::vector<std::string>>();
      }
      std::sort(values.begin(), values.end());
      if (op == "In") {
        terms.push_back(fmt::format("{} in ({})", key, fmt::join(values, ",")));
      } else if (op == "NotIn") {
        terms.push_back(fmt::format("{} notin ({})", key, fmt::join(values, ",")));
      } else if (op == "Exists") {
        terms.push_back(key);
      } else if (op == "DoesNotExist") {
        terms.push_back("!" + key);
      } else {
        throw Error(fmt::format("unsupported label selector operator \"{}\"", op));
      }
    }
  }
  return fmt::format("{}", fmt::join(terms, ","));
}

UndoPlan plan_undo(const json& deployment, const std::vector<json>& replica_sets,
                   long to_revision) {
  const auto name = name_of(deployment);
  if (to_revision < 0) {
    throw RollbackError(
        fmt::format("unable to find specified revision {} in history", to_revision));
  }
  // kubectl's deploymentRevision: the second-highest revision, or the exact one asked for.
  const json* chosen = nullptr;
  long chosen_revision = -1;
  const json* latest = nullptr;
  long latest_revision = -1;
  const auto owned = owned_replica_sets(deployment, replica_sets);
  for (const auto& replica_set : owned) {
    const auto revision = revision_of(replica_set);
    if (!revision) {
      continue;
    }
    if (to_revision == 0) {
      if (latest_revision < *revision) {
        chosen = latest;
        chosen_revision = latest_revision;
        latest = &replica_set;
        latest_revision = *revision;
      } else if (chosen_revision < *revision) {
        chosen = &replica_set;
        chosen_revision = *revision;
      }
    } else if (*revision == to_revision) {
      chosen = &replica_set;
      chosen_revision = *revision;
      break;
    }
  }
  if (chosen == nullptr) {
    throw RollbackError(
        to_revision > 0
            ? fmt::format("unable to find specified revision {} in history", to_revision)
            : fmt::format("no rollout history found for deployment \"{}\"", name));
  }
  const json& replica_set = *chosen;
  if (deployment.value(json::json_pointer("/spec/paused"), false)) {
    throw RollbackError(fmt::format(
        "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume "
        "deployment/{}' and try again",
        name));
  }
  UndoPlan plan;
  plan.revision = chosen_revision;
  const json::json_pointer pod_template("/spec/template");
  if (templates_equal_ignoring_hash(replica_set.value(pod_template, json::object()),
                                    deployment.value(pod_template, json::object()))) {
    plan.skipped = true;
    plan.message = fmt::format(
        "deployment.apps/{} skipped rollback (current template already matches revision {})", name,
        to_revision);
    return plan;
  }
  plan.template_ = without_hash_label(replica_set.value(pod_template, json::object()));
  json annotations = json::object();
  const auto deployment_annotations =
      deployment.value(json::json_pointer("/metadata/annotations"), json::object());
  for (const auto& key : annotations_to_skip()) {
    if (const auto it = deployment_annotations.find(key); it != deployment_annotations.end()) {
      annotations[key] = *it;
    }
  }
  // A named copy: items() of a temporary would dangle in the loop.
  const auto replica_set_annotations =
      replica_set.value(json::json_pointer("/metadata/annotations"), json::object());
  for (const auto& [key, value] : replica_set_annotations.items()) {
    if (!annotations_to_skip().contains(key)) {
      annotations[key] = value;
    }
  }
  plan.patch = json::array({
      {{"op", "replace"}, {"path", "/spec/template"}, {"value", plan.template_}},
      {{"op", "replace"}, {"path", "/metadata/annotations"}, {"value", annotations}},
  });
  plan.message = fmt::format("deployment.apps/{} rolled back", name);
  return plan;
}

std::chrono::system_clock::time_point drain_until(const std::vector<json>& old_pods,
                                                  std::chrono::system_clock::time_point now,
                                                  Duration margin) {
  constexpr long kDefaultGraceSeconds = 30;  // the API's default terminationGracePeriodSeconds
  auto until = now;
  for (const auto& pod : old_pods) {
    std::optional<std::chrono::system_clock::time_point> grace_ends;
    const auto deletion = pod.value(json::json_pointer("/metadata/deletionTimestamp"), "");
    if (!deletion.empty()) {
      try {
        grace_ends = parse_rfc3339(deletion);
      } catch (const Error&) {
        // unreadable: judged like a pod not deleted yet
      }
    }
    const auto ends =
        grace_ends.value_or(now + std::chrono::seconds(pod.value(
                                      json::json_pointer("/spec/terminationGracePeriodSeconds"),
                                      kDefaultGraceSeconds)));
    until = std::max(until, ends + margin);
  }
  return until;
}

}  // namespace deployapps

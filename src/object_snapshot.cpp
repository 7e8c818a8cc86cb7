#include "deployapps/object_snapshot.hpp"

#include <fmt/format.h>

#include "deployapps/apply.hpp"

namespace deployapps {
using nlohmann::json;

namespace {

// What an object says, without what the server keeps for itself.
json declared_part(const json& object) {
  auto copy = object;
  copy.erase("status");
  if (copy.contains("metadata") && copy["metadata"].is_object()) {
    json metadata = json::object();
    for (const char* kept : {"name", "namespace", "labels", "annotations"}) {
      if (copy["metadata"].contains(kept)) {
        metadata[kept] = copy["metadata"][kept];
      }
    }
    copy["metadata"] = metadata;
  }
  return copy;
}

}  // namespace

bool same_object_ignoring_server_fields(const json& a, const json& b) {
  return declared_part(a) == declared_part(b);
}

ObjectSnapshot ObjectSnapshot::take(KubeClient& client, const std::vector<RolloutObject>& objects,
                                    Deadline deadline) {
  ObjectSnapshot snapshot;
  for (const auto& object : objects) {
    auto live = client.get_if_exists(object.path, deadline);
    if (live) {
      auto request = apply_request(object.path, object.object, kFieldManager, true, true);
      request.description = "dry-run apply of " + object.display;
      if (same_object_ignoring_server_fields(client.request(request, deadline).body, *live)) {
        continue;
      }
    }
    snapshot.entries_.push_back({object.display, object.path, std::move(live)});
  }
  return snapshot;
}

std::string ObjectSnapshot::describe() const {
  std::string text;
  for (const auto& entry : entries_) {
    text += (text.empty() ? "" : ", ") + entry.display;
  }
  return text;
}

// An update must name the live resourceVersion (custom resources refuse one that does not);
// everything else, field managers included, is the recorded object. Controllers write some of
// these objects' status meanwhile (a PDB's, on every pod change of a rollback), so a conflict
// is read again and retried.
void ObjectSnapshot::put_back(KubeClient& client, const Entry& entry, Deadline deadline) {
  constexpr int kAttempts = 5;
  for (int attempt = 1;; ++attempt) {
    auto body = *entry.before;
    body.erase("status");
    body["metadata"]["resourceVersion"] =
        client.get(entry.path, deadline)
            .value(json::json_pointer("/metadata/resourceVersion"), std::string());
    ApiRequest request;
    request.method = "PUT";
    request.path = entry.path;
    request.body = std::move(body);
    request.description = "restore of " + entry.display;
    try {
      (void)client.request(request, deadline);
      return;
    } catch (const ApiError& error) {
      if (error.http_status() != 409 || attempt == kAttempts) {
        throw;
      }
    }
  }
}

RestoreOutcome ObjectSnapshot::restore(KubeClient& client, Deadline deadline) const {
  RestoreOutcome outcome;
  for (const auto& entry : entries_) {
    try {
      if (!entry.before) {
        ApiRequest request;
        request.method = "DELETE";
        request.path = entry.path;
        request.description = "delete of " + entry.display;
        try {
          (void)client.request(request, deadline);
        } catch (const ApiError& error) {
          if (error.http_status() != 404) {
            throw;
          }
        }
        outcome.lines.push_back(entry.display + " deleted (this run created it)");
        continue;
      }
      put_back(client, entry, deadline);
      outcome.lines.push_back(entry.display + " restored to its pre-apply state");
    } catch (const Error& error) {
      outcome.ok = false;
      outcome.lines.push_back(fmt::format("{} NOT restored: {}", entry.display, error.what()));
    }
  }
  return outcome;
}

}  // namespace deployapps

#include "deployapps/apply.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "deployapps/errors.hpp"

namespace deployapps {
using nlohmann::json;

std::string PlannedObject::display() const {
  std::string kind = resource.kind;
  std::transform(kind.begin(), kind.end(), kind.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto slash = resource.api_version.find('/');
  const auto group =
      slash == std::string::npos ? std::string() : "." + resource.api_version.substr(0, slash);
  return fmt::format("{}{}/{}", kind, group, name);
}

std::string_view operation_name(ApplyOperation operation) noexcept {
  switch (operation) {
    case ApplyOperation::kCreated:
      return "created";
    case ApplyOperation::kConfigured:
      return "configured";
    case ApplyOperation::kUnchanged:
      return "unchanged";
    case ApplyOperation::kSkipped:
      return "skipped";
  }
  return "skipped";
}

std::vector<PlannedObject> plan_objects(Discovery& discovery,
                                        const std::vector<RenderedObject>& objects,
                                        Deadline deadline) {
  std::vector<PlannedObject> plan;
  std::set<std::string> seen;
  for (const auto& rendered : objects) {
    PlannedObject planned;
    planned.object = rendered.object;
    planned.source = rendered.source;
    planned.resource = discovery.resolve(rendered.object["apiVersion"].get<std::string>(),
                                         rendered.object["kind"].get<std::string>(), deadline);
    auto& metadata = planned.object["metadata"];
    planned.name = metadata["name"].get<std::string>();
    if (planned.resource.namespaced) {
      if (!metadata.contains("namespace") || !metadata["namespace"].is_string() ||
          metadata["namespace"].get<std::string>().empty()) {
        throw RenderError(fmt::format("{}: {} {} is namespaced but has no metadata.namespace",
                                      rendered.source, planned.resource.kind, planned.name));
      }
      planned.namespace_name = metadata["namespace"].get<std::string>();
    } else {
      metadata.erase("namespace");
    }
    planned.path = object_path(planned.resource, planned.namespace_name, planned.name);
    if (!seen.insert(planned.path).second) {
      throw RenderError(
          fmt::format("{}: {} is rendered twice", rendered.source, planned.display()));
    }
    plan.push_back(std::move(planned));
  }
  return plan;
}

ApiRequest apply_request(const std::string& path, const json& object,
                         std::string_view field_manager, bool dry_run, bool force) {
  ApiRequest request;
  request.method = "PATCH";
  request.path = path;
  request.content_type = "application/apply-patch+yaml";  // JSON is YAML
  request.body = object;
  request.query = {{"fieldManager", std::string(field_manager)}, {"fieldValidation", "Strict"}};
  if (force) {
    request.query.emplace_back("force", "true");
  }
  if (dry_run) {
    request.query.emplace_back("dryRun", "All");
  }
  // Applying the same configuration twice has the same effect: safe to retry.
  request.idempotent = true;
  return request;
}

std::string replicas_owner_in_conflict(const ApiError& error) {
  if (error.http_status() != 409 || error.causes().empty()) {
    return {};
  }
  std::string owner;
  for (const auto& cause : error.causes()) {
    if (cause.field != ".spec.replicas") {
      return {};
    }
    // The API's message: conflict with "kube-controller-manager" using apps/v1
    const auto open = cause.message.find('"');
    const auto close = open == std::string::npos ? open : cause.message.find('"', open + 1);
    owner = close == std::string::npos ? std::string("another manager")
                                       : cause.message.substr(open + 1, close - open - 1);
  }
  return owner;
}

ApiResponse Applier::apply_one(const PlannedObject& object, bool dry_run, bool force,
                               Deadline deadline) {
  auto request = apply_request(object.path, object.object, options_.field_manager, dry_run, force);
  request.description =
      fmt::format("{}apply {}{}", dry_run ? "dry-run " : "", object.display(),
                  object.namespace_name.empty() ? "" : " in namespace " + object.namespace_name);
  return client_.request(request, deadline);
}

ApiResponse Applier::dry_run_respecting_replicas(PlannedObject& object, ApplyResult& result,
                                                 Deadline deadline) {
  try {
    return apply_one(object, true, false, deadline);
  } catch (const ApiError& error) {
    if (error.http_status() != 409) {
      throw;
    }
    const auto owner = replicas_owner_in_conflict(error);
    if (!owner.empty() && object.object.contains("spec")) {
      result.notes.push_back(fmt::format(
          "{}: spec.replicas is managed by \"{}\" (an autoscaler or a scale), so it is left "
          "to it, not set back to {}",
          object.display(), owner, object.object["spec"].value("replicas", json()).dump()));
      object.object["spec"].erase("replicas");
    }
    return apply_one(object, true, true, deadline);
  }
}

void Applier::check_pod_admission(const PlannedObject& workload, Deadline deadline) {
  const auto& template_ = workload.object["spec"]["template"];
  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"generateName", workload.name + "-admission-check-"},
                {"namespace", workload.namespace_name}}},
              {"spec", template_.value("spec", json::object())}};
  if (template_.contains("metadata")) {
    for (const auto* key : {"labels", "annotations"}) {
      if (template_["metadata"].contains(key)) {
        pod["metadata"][key] = template_["metadata"][key];
      }
    }
  }
  ApiRequest request;
  request.method = "POST";
  request.path = fmt::format("/api/v1/namespaces/{}/pods", workload.namespace_name);
  request.query = {{"dryRun", "All"}, {"fieldValidation", "Strict"}};
  request.body = std::move(pod);
  request.idempotent = true;  // a dry run changes nothing
  request.description = fmt::format("admission check of the pods of {} in namespace {}",
                                    workload.display(), workload.namespace_name);
  (void)client_.request(request, deadline);
}

ApplyResult Applier::apply(const std::vector<PlannedObject>& plan, Deadline deadline) {
  ApplyResult result;
  const bool server_dry_run = options_.dry_run == DryRun::kServer;

  // Namespaces this run would create; in a server dry run nothing can be validated inside them.
  std::set<std::string> missing_namespaces;
  // Service accounts that do not exist yet: admission needs them to judge a pod.
  std::set<std::string> missing_service_accounts;

  const auto record = [&](const PlannedObject& object, ApplyOperation operation,
                          const ApiResponse* response, std::string note) {
    ObjectResult entry;
    entry.display = object.display();
    entry.api_version = object.resource.api_version;
    entry.kind = object.resource.kind;
    entry.namespace_name = object.namespace_name;
    entry.name = object.name;
    entry.operation = operation;
    entry.note = std::move(note);
    if (response != nullptr) {
      entry.warnings = response->warnings;
      entry.resource_version =
          response->body.value("metadata", json::object()).value("resourceVersion", "");
    }
    result.objects.push_back(std::move(entry));
  };

  // Phase 1 is the namespaces, phase 2 everything else; each phase is dry-run in full before
  // any of it is applied.
  const auto is_namespace = [](const PlannedObject& object) {
    return object.resource.kind == "Namespace" && object.resource.api_version == "v1";
  };
  for (const bool namespaces_phase : {true, false}) {
    // Copies: a dry run may drop a field another manager owns before the real apply.
    std::vector<PlannedObject> phase_objects;
    for (const auto& object : plan) {
      if (is_namespace(object) == namespaces_phase) {
        phase_objects.push_back(object);
      }
    }
    std::vector<PlannedObject*> phase;
    phase.reserve(phase_objects.size());
    for (auto& object : phase_objects) {
      phase.push_back(&object);
    }
    std::map<const PlannedObject*, ApiResponse> dry_runs;
    for (auto* object : phase) {
      if (!object->namespace_name.empty() && missing_namespaces.contains(object->namespace_name)) {
        record(*object, ApplyOperation::kSkipped, nullptr,
               fmt::format("namespace {} does not exist yet, so the server cannot validate "
                           "objects in it before the first deploy",
                           object->namespace_name));
        continue;
      }
      auto response = dry_run_respecting_replicas(*object, result, deadline);
      if (response.status == 201) {
        if (namespaces_phase) {
          missing_namespaces.insert(object->name);
        } else if (object->resource.kind == "ServiceAccount") {
          missing_service_accounts.insert(object->namespace_name + "/" + object->name);
        }
      }
      dry_runs.emplace(object, std::move(response));
    }
    for (const auto* object : phase) {
      if (!dry_runs.contains(object) || !object->object.contains("spec") ||
          !object->object["spec"].contains("template")) {
        continue;
      }
      const auto& pod_spec = object->object["spec"]["template"].value("spec", json::object());
      const auto account = object->namespace_name + "/" +
                           pod_spec.value("serviceAccountName", std::string("default"));
      if (missing_service_accounts.contains(account)) {
        result.notes.push_back(fmt::format(
            "{}: Pod Security admission not checked before applying: service account {} does "
            "not exist yet",
            object->display(), account));
        continue;
      }
      check_pod_admission(*object, deadline);
    }
    if (server_dry_run) {
      for (const auto* object : phase) {
        if (const auto it = dry_runs.find(object); it != dry_runs.end()) {
          record(*object,
                 it->second.status == 201 ? ApplyOperation::kCreated : ApplyOperation::kConfigured,
                 &it->second, "server dry run");
        }
      }
      continue;
    }
    for (const auto* object : phase) {
      const auto response = apply_one(*object, false, true, deadline);
      const auto& dry = dry_runs.at(object);
      const auto version = [](const ApiResponse& r) {
        return r.body.value("metadata", json::object()).value("resourceVersion", "");
      };
      ApplyOperation operation = ApplyOperation::kConfigured;
      if (response.status == 201) {
        operation = ApplyOperation::kCreated;
      } else if (dry.status != 201 && !version(dry).empty() && version(dry) == version(response)) {
        operation = ApplyOperation::kUnchanged;  // no write happened: same resourceVersion
      }
      record(*object, operation, &response, "");
      spdlog::info("{} {}", object->display(), operation_name(operation));
    }
    if (namespaces_phase) {
      missing_namespaces.clear();  // created for real now
    }
  }
  return result;
}

}  // namespace deployapps

#include "support/fake_api.hpp"

#include <fmt/format.h>

#include "deployapps/encoding.hpp"

namespace deployapps::testing {
using nlohmann::json;

namespace {

// The namespace a namespaced path (".../namespaces/NS/...") names when it is not stored, as a
// real server refuses objects in a missing namespace; nullopt otherwise.
std::optional<std::string> missing_namespace(const std::map<std::string, json>& objects,
                                             const std::string& path) {
  constexpr std::string_view kMarker = "/namespaces/";
  const auto start = path.find(kMarker);
  if (start == std::string::npos) {
    return std::nullopt;
  }
  const auto name_start = start + kMarker.size();
  const auto name_end = path.find('/', name_start);
  if (name_end == std::string::npos) {
    return std::nullopt;  // the Namespace itself
  }
  auto name = path.substr(name_start, name_end - name_start);
  if (objects.count("/api/v1/namespaces/" + name) != 0) {
    return std::nullopt;
  }
  return name;
}

json resource_list(const std::string& group_version,
                   const std::vector<std::tuple<std::string, std::string, bool>>& resources) {
  json list = json::array();
  for (const auto& [name, kind, namespaced] : resources) {
    list.push_back(
        {{"name", name}, {"kind", kind}, {"namespaced", namespaced}, {"verbs", {"get", "patch"}}});
    list.push_back({{"name", name + "/status"}, {"kind", kind}, {"namespaced", namespaced}});
  }
  return {{"kind", "APIResourceList"}, {"groupVersion", group_version}, {"resources", list}};
}

const std::map<std::string, json>& discovery_documents() {
  static const std::map<std::string, json> documents = {
      {"/api/v1", resource_list("v1", {{"namespaces", "Namespace", false},
                                       {"serviceaccounts", "ServiceAccount", true},
                                       {"services", "Service", true},
                                       {"pods", "Pod", true},
                                       {"configmaps", "ConfigMap", true}})},
      {"/apis/apps/v1", resource_list("apps/v1", {{"deployments", "Deployment", true},
                                                  {"replicasets", "ReplicaSet", true}})},
      {"/apis/policy/v1",
       resource_list("policy/v1", {{"poddisruptionbudgets", "PodDisruptionBudget", true}})},
      {"/apis/networking.k8s.io/v1",
       resource_list("networking.k8s.io/v1",
                     {{"ingresses", "Ingress", true}, {"networkpolicies", "NetworkPolicy", true}})},
  };
  return documents;
}

}  // namespace

FakeApiServer::FakeApiServer() {
  LeafSpec spec;
  spec.dns_names = {"localhost"};
  spec.ip_addresses = {"127.0.0.1"};
  server_ = std::make_unique<TlsTestServer>(ServerTls{ca_.issue(spec), std::nullopt},
                                            [this](const ReceivedRequest& r) { return handle(r); });
}

void FakeApiServer::override_path(const std::string& method, const std::string& path,
                                  std::function<ServerReply(const ReceivedRequest&)> reply) {
  const std::lock_guard lock(mutex_);
  overrides_[method + " " + path] = std::move(reply);
}

void FakeApiServer::stall_when(std::function<bool(const ReceivedRequest&)> matches) {
  const std::lock_guard lock(mutex_);
  stalls_.push_back(std::move(matches));
}

void FakeApiServer::on_request(std::function<void(const ReceivedRequest&)> observer) {
  const std::lock_guard lock(mutex_);
  observers_.push_back(std::move(observer));
}

void FakeApiServer::conflict_next_updates(const std::string& path, int count) {
  const std::lock_guard lock(mutex_);
  conflicts_[path] = count;
}

void FakeApiServer::reject_pods(const json& status) {
  const std::lock_guard lock(mutex_);
  pod_rejection_ = status;
}

std::optional<json> FakeApiServer::stored(const std::string& path) const {
  const std::lock_guard lock(mutex_);
  const auto it = objects_.find(path);
  if (it == objects_.end()) {
    return std::nullopt;
  }
  return it->second;
}

RestConfig FakeApiServer::rest_config() const {
  RestConfig config;
  parse_server_url(config, fmt::format("https://127.0.0.1:{}", server_->port()));
  config.ca_pem = ca_.ca().certificate_pem;
  config.ca_source = "the fake apiserver CA";
  config.token = "fake-token";
  return config;
}

std::filesystem::path FakeApiServer::write_kubeconfig(const TempDir& dir) const {
  const json config = {
      {"apiVersion", "v1"},
      {"kind", "Config"},
      {"current-context", "fake"},
      {"clusters",
       {{{"name", "fake"},
         {"cluster",
          {{"server", fmt::format("https://127.0.0.1:{}", server_->port())},
           {"certificate-authority-data", base64_encode(ca_.ca().certificate_pem)}}}}}},
      {"users", {{{"name", "fake"}, {"user", {{"token", "fake-token"}}}}}},
      {"contexts", {{{"name", "fake"}, {"context", {{"cluster", "fake"}, {"user", "fake"}}}}}}};
  return dir.write("fake-kubeconfig", config.dump());  // JSON is YAML
}

ServerReply FakeApiServer::handle(const ReceivedRequest& request) {
  const std::lock_guard lock(mutex_);
  for (const auto& observe : observers_) {
    observe(request);
  }
  for (const auto& matches : stalls_) {
    if (matches(request)) {
      ServerReply silence;
      silence.hang = true;
      return silence;
    }
  }
  if (const auto it = overrides_.find(request.method + " " + request.path);
      it != overrides_.end()) {
    return it->second(request);
  }
  if (request.headers.count("authorization") == 0 ||
      request.headers.at("authorization") != "Bearer fake-token") {
    return json_reply(401, status_body(401, "Unauthorized", "Unauthorized"));
  }
  if (request.method == "GET") {
    if (const auto it = discovery_documents().find(request.path);
        it != discovery_documents().end()) {
      return json_reply(200, it->second);
    }
    if (const auto it = objects_.find(request.path); it != objects_.end()) {
      return json_reply(200, it->second);
    }
    return json_reply(404, status_body(404, "NotFound", request.path + " not found"));
  }
  const bool dry_run = request.query.count("dryRun") != 0;
  if (request.method == "POST" && request.path.ends_with("/pods")) {
    if (pod_rejection_) {
      return json_reply((*pod_rejection_)["code"].get<unsigned>(), *pod_rejection_);
    }
    auto pod = json::parse(request.body);
    return json_reply(201, pod);
  }
  // A create stores a new object under its name, in an existing namespace.
  if (request.method == "POST") {
    auto created = json::parse(request.body);
    const auto path =
        request.path + "/" + created.value(json::json_pointer("/metadata/name"), std::string());
    if (const auto missing = missing_namespace(objects_, request.path)) {
      return json_reply(404,
                        status_body(404, "NotFound", "namespaces \"" + *missing + "\" not found"));
    }
    if (objects_.count(path) != 0) {
      return json_reply(409, status_body(409, "AlreadyExists", path + " already exists"));
    }
    created["metadata"]["resourceVersion"] = std::to_string(dry_run ? 0 : ++next_version_);
    if (!dry_run) {
      objects_[path] = created;
    }
    return json_reply(201, created);
  }
  // An update replaces a stored object, if the resourceVersion it names is still current.
  if (request.method == "PUT" || request.method == "DELETE") {
    const auto existing = objects_.find(request.path);
    if (existing == objects_.end()) {
      return json_reply(404, status_body(404, "NotFound", request.path + " not found"));
    }
    if (request.method == "DELETE") {
      objects_.erase(existing);
      return json_reply(200, status_body(200, "", "deleted"));
    }
    if (auto& conflicts = conflicts_[request.path]; conflicts > 0) {
      --conflicts;
      return json_reply(409, status_body(409, "Conflict", "the object has been modified"));
    }
    auto replacement = json::parse(request.body);
    if (replacement.value(json::json_pointer("/metadata/resourceVersion"), std::string()) !=
        existing->second.value(json::json_pointer("/metadata/resourceVersion"), std::string())) {
      return json_reply(409, status_body(409, "Conflict", "the object has been modified"));
    }
    replacement["metadata"]["resourceVersion"] = std::to_string(++next_version_);
    existing->second = replacement;
    return json_reply(200, replacement);
  }
  // A JSON patch (the rollback's) changes a stored object in place.
  if (request.method == "PATCH" &&
      request.headers.at("content-type") == "application/json-patch+json") {
    const auto existing = objects_.find(request.path);
    if (existing == objects_.end()) {
      return json_reply(404, status_body(404, "NotFound", request.path + " not found"));
    }
    auto patched = existing->second.patch(json::parse(request.body));
    patched["metadata"]["resourceVersion"] = std::to_string(++next_version_);
    existing->second = patched;
    return json_reply(200, patched);
  }
  if (request.method == "PATCH") {
    if (request.headers.at("content-type") != "application/apply-patch+yaml" ||
        request.query.count("fieldManager") == 0) {
      return json_reply(400, status_body(400, "BadRequest", "not a server-side apply"));
    }
    auto applied = json::parse(request.body);
    const auto existing = objects_.find(request.path);
    if (const auto missing = missing_namespace(objects_, request.path)) {
      return json_reply(404,
                        status_body(404, "NotFound", "namespaces \"" + *missing + "\" not found"));
    }
    if (existing == objects_.end()) {
      applied["metadata"]["resourceVersion"] = std::to_string(dry_run ? 0 : ++next_version_);
      if (!dry_run) {
        objects_[request.path] = applied;
      }
      return json_reply(201, applied);
    }
    auto current = existing->second;
    const auto version = current["metadata"]["resourceVersion"];
    current["metadata"].erase("resourceVersion");
    // A dry run answers with the object as it would be, and stores nothing.
    if (current != applied && dry_run) {
      applied["metadata"]["resourceVersion"] = version;
      return json_reply(200, applied);
    }
    if (current != applied) {
      applied["metadata"]["resourceVersion"] = std::to_string(++next_version_);
      existing->second = applied;
      return json_reply(200, applied);
    }
    current["metadata"]["resourceVersion"] = version;
    return json_reply(200, current);
  }
  return json_reply(405, status_body(405, "MethodNotAllowed", "not supported by the fake"));
}

}  // namespace deployapps::testing

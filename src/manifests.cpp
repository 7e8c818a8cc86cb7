#include "deployapps/manifests.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "deployapps/errors.hpp"
#include "deployapps/yaml_json.hpp"

namespace deployapps {
namespace fs = std::filesystem;

std::string_view environment_name(Environment environment) noexcept {
  switch (environment) {
    case Environment::kLocal:
      return "local";
    case Environment::kProduction:
      return "production";
  }
  return "local";
}

namespace {

constexpr std::string_view kValuesFile = "values.yaml";
constexpr std::string_view kTemplatesDir = "templates";
constexpr std::string_view kEnvironmentsKey = "environments";
// Placeholders look like ${a.b.c}; the path is a dotted list of map keys.
const std::regex& placeholder_path_pattern() {
  static const std::regex pattern("[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*");
  return pattern;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw RenderError(fmt::format("cannot read {}", path.string()));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool is_dns_label(std::string_view name) {
  static const std::regex pattern("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
  return name.size() <= 63 && std::regex_match(name.begin(), name.end(), pattern);
}

// Image tags: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; also used as a label value (max 63).
bool is_valid_tag(std::string_view tag) {
  static const std::regex pattern("[A-Za-z0-9_][A-Za-z0-9_.-]*");
  return !tag.empty() && tag.size() <= 63 && std::regex_match(tag.begin(), tag.end(), pattern) &&
         std::isalnum(static_cast<unsigned char>(tag.back())) != 0;
}

nlohmann::json load_values_file(const fs::path& path, const Repository& repository) {
  const auto source = path.lexically_relative(repository.root()).string();
  const auto documents = parse_yaml_documents(read_file(path), source);
  if (documents.empty()) {
    return nlohmann::json::object();
  }
  if (documents.size() != 1 || !documents.front().is_object()) {
    throw RenderError(source + ": a values file must be a single YAML map");
  }
  return documents.front();
}

// Splits a values document into its top level and its block for `environment`.
void layer_values(nlohmann::json& values, nlohmann::json layer, Environment environment,
                  std::string_view source) {
  nlohmann::json environment_block = nlohmann::json::object();
  if (const auto it = layer.find(kEnvironmentsKey); it != layer.end()) {
    if (!it->is_object()) {
      throw RenderError(fmt::format("{}: \"environments\" must be a map", source));
    }
    for (const auto& [name, block] : it->items()) {
      if (name != "local" && name != "production") {
        throw RenderError(
            fmt::format("{}: unknown environment \"{}\" (known: local, production)", source, name));
      }
      if (name == environment_name(environment)) {
        if (!block.is_null() && !block.is_object()) {
          throw RenderError(fmt::format("{}: environments.{} must be a map", source, name));
        }
        environment_block = block.is_null() ? nlohmann::json::object() : block;
      }
    }
    layer.erase(it);
  }
  merge_values(values, layer);
  merge_values(values, environment_block);
}

const nlohmann::json* lookup(const nlohmann::json& values, std::string_view path) {
  const nlohmann::json* node = &values;
  std::size_t start = 0;
  while (start <= path.size()) {
    const auto dot = path.find('.', start);
    const auto key =
        path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!node->is_object()) {
      return nullptr;
    }
    const auto it = node->find(std::string(key));
    if (it == node->end()) {
      return nullptr;
    }
    node = &*it;
    if (dot == std::string_view::npos) {
      break;
    }
    start = dot + 1;
  }
  return node;
}

void set_path(nlohmann::json& values, std::string_view path, nlohmann::json value) {
  nlohmann::json* node = &values;
  std::size_t start = 0;
  for (;;) {
    const auto dot = path.find('.', start);
    const std::string key(
        path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (!node->is_object()) {
      *node = nlohmann::json::object();
    }
    if (dot == std::string_view::npos) {
      (*node)[key] = std::move(value);
      return;
    }
    node = &(*node)[key];
    start = dot + 1;
  }
}

// Resolves placeholders in one scalar. `values` is what ${…} refers to.
class Substituter {
 public:
  Substituter(const nlohmann::json& values, std::string source)
      : values_(values), source_(std::move(source)) {}

  // Returns the replacement for a scalar, or nullopt when it has no placeholder.
  std::optional<nlohmann::json> operator()(const std::string& text, bool plain) const {
    if (text.find('$') == std::string::npos) {
      return std::nullopt;
    }
    // An unquoted scalar that is one placeholder keeps the value's type.
    if (plain && text.size() > 3 && text.starts_with("${") && text.ends_with("}") &&
        text.find("${", 2) == std::string::npos && text.find('}') == text.size() - 1) {
      return value_at(text.substr(2, text.size() - 3));
    }
    std::string out;
    bool replaced = false;
    for (std::size_t i = 0; i < text.size();) {
      if (text.compare(i, 3, "$${") == 0) {
        out += "${";
        i += 3;
        replaced = true;
      } else if (text.compare(i, 2, "${") == 0) {
        const auto close = text.find('}', i + 2);
        if (close == std::string::npos) {
          throw RenderError(fmt::format("{}: unterminated placeholder in \"{}\"", source_, text));
        }
        const auto value = value_at(text.substr(i + 2, close - i - 2));
        if (value.is_structured()) {
          throw RenderError(
              fmt::format("{}: ${{{}}} is a map or list and cannot be part of the string \"{}\"",
                          source_, text.substr(i + 2, close - i - 2), text));
        }
        out += value.is_string() ? value.get<std::string>() : value.dump();
        i = close + 1;
        replaced = true;
      } else {
        out += text[i++];
      }
    }
    if (!replaced) {
      return std::nullopt;
    }
    return nlohmann::json(std::move(out));
  }

 private:
  nlohmann::json value_at(const std::string& path) const {
    if (!std::regex_match(path, placeholder_path_pattern())) {
      throw RenderError(fmt::format("{}: invalid placeholder ${{{}}}", source_, path));
    }
    const auto* value = lookup(values_, path);
    if (value == nullptr) {
      throw RenderError(
          fmt::format("{}: ${{{}}} has no value (not in any values file)", source_, path));
    }
    if (value->is_null()) {
      throw RenderError(fmt::format(
          "{}: ${{{}}} is required but not set for this environment; set it in a values file "
          "or with --set {}=…",
          source_, path, path));
    }
    return *value;
  }

  const nlohmann::json& values_;
  std::string source_;
};

// Renders placeholders inside the values themselves (e.g. ingress.host: "${app}.localhost").
// Only one level: a value may refer to built-ins and plain values, not to other templated ones.
nlohmann::json render_values(const nlohmann::json& node, const Substituter& substitute) {
  if (node.is_object()) {
    auto out = nlohmann::json::object();
    for (const auto& [key, item] : node.items()) {
      out[key] = render_values(item, substitute);
    }
    return out;
  }
  if (node.is_array()) {
    auto out = nlohmann::json::array();
    for (const auto& item : node) {
      out.push_back(render_values(item, substitute));
    }
    return out;
  }
  if (node.is_string()) {
    if (auto replaced = substitute(node.get<std::string>(), true)) {
      return *std::move(replaced);
    }
  }
  return node;
}

// Finds a "${" left in rendered values: a value that refers to another templated value. Returns
// its path for the error message.
std::optional<std::string> find_unrendered(const nlohmann::json& node, const std::string& path) {
  if (node.is_object()) {
    for (const auto& [key, item] : node.items()) {
      auto item_path = fmt::format("{}.{}", path, key);
      if (key.find("${") != std::string::npos) {
        return item_path;
      }
      if (auto found = find_unrendered(item, item_path)) {
        return found;
      }
    }
  } else if (node.is_array()) {
    for (std::size_t i = 0; i < node.size(); ++i) {
      if (auto found = find_unrendered(node[i], fmt::format("{}[{}]", path, i))) {
        return found;
      }
    }
  } else if (node.is_string() && node.get<std::string>().find("${") != std::string::npos) {
    return path;
  }
  return std::nullopt;
}

std::int64_t require_int(const nlohmann::json& values, std::string_view path) {
  const auto* value = lookup(values, path);
  if (value == nullptr || !value->is_number_integer()) {
    throw RenderError(fmt::format("value {} must be an integer", path));
  }
  return value->get<std::int64_t>();
}

std::string require_string(const nlohmann::json& values, std::string_view path) {
  const auto* value = lookup(values, path);
  if (value == nullptr || value->is_null()) {
    throw RenderError(fmt::format(
        "value {} is required but not set for this environment; set it in a values file or with "
        "--set {}=…",
        path, path));
  }
  if (!value->is_string() || value->get<std::string>().empty()) {
    throw RenderError(fmt::format("value {} must be a non-empty string", path));
  }
  return value->get<std::string>();
}

// Adds the built-in values. They are computed, so the values files may not set them.
void add_builtins(nlohmann::json& values, const RenderRequest& request) {
  for (const auto* builtin :
       {"app", "environment", "version", "labels", "selectorLabels", "sharedLabels"}) {
    if (values.contains(builtin)) {
      throw RenderError(fmt::format("value {} is built in and cannot be set", builtin));
    }
  }
  if (lookup(values, "image.ref") != nullptr) {
    throw RenderError("value image.ref is built in and cannot be set");
  }
  if (lookup(values, "shutdown.terminationGracePeriodSeconds") != nullptr) {
    throw RenderError(
        "value shutdown.terminationGracePeriodSeconds is derived from the shutdown timeline "
        "and cannot be set");
  }
  values["app"] = request.app;
  values["environment"] = environment_name(request.environment);
  values["version"] = request.tag;

  std::string namespace_name = request.app;
  if (request.namespace_name) {
    namespace_name = *request.namespace_name;
  } else if (const auto* configured = lookup(values, "namespace");
             configured != nullptr && !configured->is_null()) {
    namespace_name = require_string(values, "namespace");
  }
  if (!is_dns_label(namespace_name)) {
    throw RenderError(fmt::format("namespace \"{}\" is not a valid DNS label", namespace_name));
  }
  values["namespace"] = namespace_name;

  // The image is pinned by digest when the build knows it, else referenced by tag.
  const auto registry = require_string(values, "image.registry");
  const auto* configured_name = lookup(values, "image.name");
  const std::string image_name = configured_name != nullptr && configured_name->is_string()
                                     ? configured_name->get<std::string>()
                                     : request.app;
  values["image"]["name"] = image_name;
  values["image"]["ref"] =
      request.image_digest ? fmt::format("{}/{}@{}", registry, image_name, *request.image_digest)
                           : fmt::format("{}/{}:{}", registry, image_name, request.tag);

  // The grace period is the sum of the shutdown timeline; see manifests/values.yaml. The app's
  // own timeout counts from SIGTERM, so it includes its delay.
  const auto app_timeout = require_int(values, "shutdown.drainDelaySeconds") +
                           require_int(values, "shutdown.appShutdownTimeoutSeconds");
  const auto grace = require_int(values, "shutdown.preStopSleepSeconds") + app_timeout +
                     require_int(values, "shutdown.marginSeconds");
  values["shutdown"]["appTimeoutFromSignalSeconds"] = app_timeout;
  values["shutdown"]["terminationGracePeriodSeconds"] = grace;

  const nlohmann::json selector = {{"app.kubernetes.io/name", request.app},
                                   {"app.kubernetes.io/instance", request.app}};
  auto labels = selector;
  labels["app.kubernetes.io/version"] = request.tag;
  labels["app.kubernetes.io/part-of"] = "deploy-apps";
  labels["app.kubernetes.io/managed-by"] = "deploy-apps";
  values["selectorLabels"] = selector;
  values["labels"] = labels;
  values["sharedLabels"] = {{"app.kubernetes.io/part-of", "deploy-apps"},
                            {"app.kubernetes.io/managed-by", "deploy-apps"}};
}

void validate_values(const nlohmann::json& values) {
  // Zero-downtime rollouts and the PodDisruptionBudget need a second pod to fall back on.
  if (require_int(values, "replicas") < 2) {
    throw RenderError(
        fmt::format("replicas must be at least 2 (got {})", require_int(values, "replicas")));
  }
  // The templates' render-if lines choose the routes from routing.kind; a misspelt kind would
  // silently leave the app without any route.
  if (const auto* kind = lookup(values, "routing.kind"); kind != nullptr) {
    static constexpr std::array<std::string_view, 3> kKinds = {"ingress", "gateway", "both"};
    if (!kind->is_string() || std::ranges::find(kKinds, kind->get<std::string>()) == kKinds.end()) {
      throw RenderError(fmt::format("value routing.kind must be {} (got {})",
                                    fmt::join(kKinds, ", "), kind->dump()));
    }
    // Both routes claim a host on the same controller: one host would be routed two ways.
    if (kind->get<std::string>() == "both" &&
        require_string(values, "gateway.host") == require_string(values, "ingress.host")) {
      throw RenderError(fmt::format(
          "routing.kind both needs gateway.host to differ from ingress.host (both are \"{}\"): "
          "the Ingress and the HTTPRoute would claim the same host",
          require_string(values, "ingress.host")));
    }
  }
}

// A template file may start with comment lines "# render-if: PATH in [A, B]": it is rendered only
// when the value at PATH is one of the listed names. Returns whether `text` is to be rendered.
bool template_enabled(std::string_view text, const nlohmann::json& values,
                      std::string_view source) {
  static const std::regex directive(
      R"(#\s*render-if:\s*([A-Za-z0-9_.-]+)\s+in\s+\[([A-Za-z0-9_, .-]*)\]\s*)");
  bool enabled = true;
  std::istringstream lines{std::string(text)};
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos) {
      continue;
    }
    if (line[first] != '#') {
      break;  // only the comment block before the first document line counts
    }
    const auto comment = line.substr(first);
    // A directive is a comment that starts with "render-if"; prose may mention the word.
    const auto words = comment.find_first_not_of("# \t");
    if (words == std::string::npos || !comment.substr(words).starts_with("render-if")) {
      continue;
    }
    std::smatch match;
    if (!std::regex_match(comment, match, directive) ||
        !std::regex_match(match[1].str(), placeholder_path_pattern())) {
      throw RenderError(
          fmt::format(R"({}: malformed "{}"; write "# render-if: path.to.value in [name, other]")",
                      source, comment));
    }
    const auto path = match[1].str();
    const auto* value = lookup(values, path);
    if (value == nullptr || !value->is_primitive() || value->is_null()) {
      throw RenderError(fmt::format("{}: render-if needs {} to be set to a name (got {})", source,
                                    path, value == nullptr ? "nothing" : value->dump()));
    }
    const auto actual = value->is_string() ? value->get<std::string>() : value->dump();
    std::vector<std::string> names;
    std::istringstream list(match[2].str());
    for (std::string name; std::getline(list, name, ',');) {
      const auto begin = name.find_first_not_of(' ');
      const auto end = name.find_last_not_of(' ');
      if (begin == std::string::npos) {
        throw RenderError(fmt::format("{}: empty name in \"{}\"", source, comment));
      }
      names.push_back(name.substr(begin, end - begin + 1));
    }
    enabled = enabled && std::ranges::find(names, actual) != names.end();
  }
  return enabled;
}

// Adds the app.kubernetes.io/* labels to an object and to its pod template; labels written in the
// template win.
void add_labels(nlohmann::json& object, const nlohmann::json& labels) {
  const auto merge_into = [&](nlohmann::json& metadata) {
    auto merged = labels;
    if (metadata.contains("labels") && metadata["labels"].is_object()) {
      merged.update(metadata["labels"]);
    }
    metadata["labels"] = merged;
  };
  merge_into(object["metadata"]);
  if (object.contains("spec") && object["spec"].is_object() &&
      object["spec"].contains("template") && object["spec"]["template"].is_object()) {
    merge_into(object["spec"]["template"]["metadata"]);
  }
}

std::vector<fs::path> template_files(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) {
    return files;
  }
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto extension = entry.path().extension();
    if (entry.is_regular_file() && (extension == ".yaml" || extension == ".yml")) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

Repository::Repository(fs::path root) : root_(std::move(root)) {}

std::vector<std::string> Repository::app_names() const {
  std::vector<std::string> names;
  std::error_code error;
  for (fs::directory_iterator it(root_ / "apps", error), end; !error && it != end;
       it.increment(error)) {
    const auto name = it->path().filename().string();
    if (it->is_directory() && fs::is_regular_file(root_ / "manifests" / name / kValuesFile)) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

AppDefinition Repository::app(std::string_view name) const {
  const auto names = app_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    if (names.empty()) {
      throw UsageError(
          fmt::format("unknown app \"{}\": no apps found in {} (an app is apps/<name>/ plus "
                      "manifests/<name>/values.yaml)",
                      name, root_.string()));
    }
    throw UsageError(
        fmt::format("unknown app \"{}\"; known apps: {}", name, fmt::join(names, ", ")));
  }
  return AppDefinition{std::string(name), root_ / "apps" / name, root_ / "manifests" / name};
}

fs::path Repository::shared_values_file() const {
  return root_ / "manifests" / kValuesFile;
}

fs::path Repository::shared_templates_dir() const {
  return root_ / "manifests" / kTemplatesDir;
}

ValueOverride parse_value_override(std::string_view text) {
  const auto equals = text.find('=');
  if (equals == std::string_view::npos || equals == 0) {
    throw UsageError(
        fmt::format("invalid --set \"{}\": expected path=value, e.g. replicas=3", text));
  }
  std::string path(text.substr(0, equals));
  if (!std::regex_match(path, placeholder_path_pattern())) {
    throw UsageError(
        fmt::format("invalid --set path \"{}\": use dotted keys, e.g. image.registry", path));
  }
  const auto raw = text.substr(equals + 1);
  nlohmann::json value = "";
  if (!raw.empty()) {
    const auto documents = parse_yaml_documents(raw, "--set " + path);
    value = documents.empty() ? nlohmann::json(nullptr) : documents.front();
  }
  return ValueOverride{std::move(path), std::move(value)};
}

void merge_values(nlohmann::json& base, const nlohmann::json& overlay) {
  if (!base.is_object() || !overlay.is_object()) {
    base = overlay;
    return;
  }
  for (const auto& [key, item] : overlay.items()) {
    if (base.contains(key) && base[key].is_object() && item.is_object()) {
      merge_values(base[key], item);
    } else {
      base[key] = item;
    }
  }
}

std::vector<nlohmann::json> render_template_text(std::string_view text,
                                                 const nlohmann::json& values,
                                                 std::string_view source) {
  const Substituter substitute(values, std::string(source));
  try {
    return parse_yaml_documents(text, source, [&](const std::string& scalar, bool plain) {
      return substitute(scalar, plain);
    });
  } catch (const RenderError&) {
    throw;
  } catch (const UsageError& error) {
    throw RenderError(error.what());
  }
}

RenderedApp render_app(const Repository& repository, const RenderRequest& request) {
  const auto definition = repository.app(request.app);
  if (!is_dns_label(request.app)) {
    throw RenderError(fmt::format("app name \"{}\" is not a valid DNS label", request.app));
  }
  if (!is_valid_tag(request.tag)) {
    throw UsageError(fmt::format(
        "invalid tag \"{}\": use up to 63 letters, digits, '_', '.', '-', starting and ending "
        "with a letter or digit",
        request.tag));
  }
  if (request.image_digest &&
      !std::regex_match(*request.image_digest, std::regex("sha256:[0-9a-f]{64}"))) {
    throw UsageError(fmt::format("invalid image digest \"{}\"", *request.image_digest));
  }

  nlohmann::json values = nlohmann::json::object();
  const auto shared_file = repository.shared_values_file();
  layer_values(values, load_values_file(shared_file, repository), request.environment,
               shared_file.lexically_relative(repository.root()).string());
  const auto app_file = definition.manifest_dir / kValuesFile;
  layer_values(values, load_values_file(app_file, repository), request.environment,
               app_file.lexically_relative(repository.root()).string());
  for (const auto& override : request.overrides) {
    set_path(values, override.path, override.value);
  }
  add_builtins(values, request);
  values = render_values(values, Substituter(values, "values of " + request.app));
  if (auto unrendered = find_unrendered(values, "")) {
    throw RenderError(fmt::format(
        "values of {}: {} refers to another templated value; values may only refer to plain "
        "values and built-ins",
        request.app, unrendered->substr(1)));
  }
  validate_values(values);

  RenderedApp rendered;
  rendered.app = request.app;
  rendered.namespace_name = values["namespace"].get<std::string>();
  rendered.image = values["image"]["ref"].get<std::string>();

  auto files = template_files(repository.shared_templates_dir());
  const auto own = template_files(definition.manifest_dir / kTemplatesDir);
  files.insert(files.end(), own.begin(), own.end());
  if (files.empty()) {
    throw RenderError(
        fmt::format("no templates found in {}", repository.shared_templates_dir().string()));
  }
  for (const auto& file : files) {
    const auto source = file.lexically_relative(repository.root()).string();
    const auto text = read_file(file);
    if (!template_enabled(text, values, source)) {
      spdlog::debug("{}: not rendered (its render-if does not hold)", source);
      continue;
    }
    for (auto& object : render_template_text(text, values, source)) {
      if (!object.is_object() || !object.value("apiVersion", nlohmann::json()).is_string() ||
          !object.value("kind", nlohmann::json()).is_string() || !object.contains("metadata") ||
          !object["metadata"].value("name", nlohmann::json()).is_string()) {
        throw RenderError(
            fmt::format("{}: every document must have apiVersion, kind and metadata.name", source));
      }
      // A Namespace may hold several apps; it only gets the labels they share.
      add_labels(object, object["kind"] == "Namespace" && object["apiVersion"] == "v1"
                             ? values["sharedLabels"]
                             : values["labels"]);
      rendered.objects.push_back(RenderedObject{std::move(object), source});
    }
  }
  sort_for_apply(rendered.objects);
  rendered.values = std::move(values);
  spdlog::debug("rendered {}: {} objects, image {}", rendered.app, rendered.objects.size(),
                rendered.image);
  return rendered;
}

int apply_rank(std::string_view kind) noexcept {
  // Dependencies first: the namespace, then what pods use, then workloads, then their routes
  // (the order Helm installs in).
  static constexpr std::array<std::string_view, 26> kOrder = {"Namespace",
                                                              "NetworkPolicy",
                                                              "ResourceQuota",
                                                              "LimitRange",
                                                              "PodDisruptionBudget",
                                                              "ServiceAccount",
                                                              "Secret",
                                                              "ConfigMap",
                                                              "StorageClass",
                                                              "PersistentVolumeClaim",
                                                              "CustomResourceDefinition",
                                                              "ClusterRole",
                                                              "ClusterRoleBinding",
                                                              "Role",
                                                              "RoleBinding",
                                                              "Service",
                                                              "DaemonSet",
                                                              "Pod",
                                                              "ReplicaSet",
                                                              "Deployment",
                                                              "HorizontalPodAutoscaler",
                                                              "StatefulSet",
                                                              "Job",
                                                              "CronJob",
                                                              "Ingress",
                                                              "HTTPRoute"};
  return static_cast<int>(std::ranges::find(kOrder, kind) - kOrder.begin());
}

void sort_for_apply(std::vector<RenderedObject>& objects) {
  std::stable_sort(objects.begin(), objects.end(), [](const auto& a, const auto& b) {
    return apply_rank(a.object["kind"].template get<std::string>()) <
           apply_rank(b.object["kind"].template get<std::string>());
  });
}

}  // namespace deployapps

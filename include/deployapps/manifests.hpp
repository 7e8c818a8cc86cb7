// The repository's apps and their manifest templates.
//
// An app is a folder apps/<name>/ together with manifests/<name>/values.yaml. Every app renders
// the shared templates in manifests/templates/ (plus its own manifests/<name>/templates/, if any)
// with values layered like this, later wins:
//   manifests/values.yaml, its environments.<env> block,
//   manifests/<name>/values.yaml, its environments.<env> block,
//   --set key=value overrides,
// then the built-in values (app, namespace, environment, version, image.ref, labels,
// selectorLabels, sharedLabels, and the derived shutdown.terminationGracePeriodSeconds). The
// renderer adds `labels` to every object and pod template (a Namespace gets `sharedLabels`).
//
// Templates are YAML. A scalar that is exactly "${path}" and unquoted becomes the value at that
// dotted path with its type (number, map, list...); any other "${path}" is interpolated into a
// string, so quote a placeholder to get a string. "$${" writes a literal "${".
//
// A template file is rendered only when the comment lines it starts with allow it: a line
// "# render-if: routing.kind in [gateway, both]" renders the file only when that value is one of
// the names listed (a file's every render-if must hold). A malformed render-if line, or one whose
// value is unset or not a scalar, is a RenderError. routing.kind itself must be ingress, gateway
// or both, so a misspelt kind cannot leave an app without a route.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace deployapps {

enum class Environment { kLocal, kProduction };

[[nodiscard]] std::string_view environment_name(Environment environment) noexcept;

struct AppDefinition {
  std::string name;
  std::filesystem::path source_dir;    // apps/<name>
  std::filesystem::path manifest_dir;  // manifests/<name>
};

class Repository {
 public:
  explicit Repository(std::filesystem::path root);

  [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }
  // Names of every app found, sorted.
  [[nodiscard]] std::vector<std::string> app_names() const;
  // Throws UsageError naming the known apps when `name` is not one of them.
  [[nodiscard]] AppDefinition app(std::string_view name) const;
  [[nodiscard]] std::filesystem::path shared_values_file() const;
  [[nodiscard]] std::filesystem::path shared_templates_dir() const;

 private:
  std::filesystem::path root_;
};

// A --set override: a dotted path and a value (parsed as a YAML scalar, so "3" is a number).
struct ValueOverride {
  std::string path;
  nlohmann::json value;
};

// Parses "a.b.c=value". Throws UsageError when malformed.
[[nodiscard]] ValueOverride parse_value_override(std::string_view text);

struct RenderRequest {
  std::string app;
  Environment environment = Environment::kLocal;
  std::string tag;                            // image tag and APP_VERSION
  std::optional<std::string> image_digest;    // "sha256:…"; when known the image is pinned by it
  std::optional<std::string> namespace_name;  // --namespace; default: the app's name
  std::vector<ValueOverride> overrides;
};

struct RenderedObject {
  nlohmann::json object;
  std::string source;  // template file, relative to the repository root
};

struct RenderedApp {
  std::string app;
  std::string namespace_name;
  std::string image;                    // the image reference the Deployment runs
  nlohmann::json values;                // the final values, for reports and debugging
  std::vector<RenderedObject> objects;  // in apply order
};

// Renders every template of one app. Throws RenderError (or UsageError for an unknown app) with
// the file and the failing placeholder.
[[nodiscard]] RenderedApp render_app(const Repository& repository, const RenderRequest& request);

// Substitutes placeholders in one parsed template document (a YAML node as text) against
// `values`. Exposed for tests; `source` names the template in errors.
[[nodiscard]] std::vector<nlohmann::json> render_template_text(std::string_view text,
                                                               const nlohmann::json& values,
                                                               std::string_view source);

// Deep-merges `overlay` into `base`: maps merge key by key, anything else replaces.
void merge_values(nlohmann::json& base, const nlohmann::json& overlay);

// The position of a kind in apply order: Namespace first, workloads after what they use.
[[nodiscard]] int apply_rank(std::string_view kind) noexcept;

// Stable-sorts objects into apply order.
void sort_for_apply(std::vector<RenderedObject>& objects);

}  // namespace deployapps

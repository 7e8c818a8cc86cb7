// YAML <-> JSON. Manifests and kubeconfigs are read with yaml-cpp into nlohmann::json values, and
// every document we print or send is emitted from a JSON value, never assembled as text.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace YAML {
class Node;
}

namespace deployapps {

// Called for every scalar during conversion; `plain` is false for quoted scalars. Returning a
// value replaces the scalar; std::nullopt keeps the normal resolution. A map key for which the
// hook returns a value is an error (keys are never substituted).
using ScalarHook =
    std::function<std::optional<nlohmann::json>(const std::string& text, bool plain)>;

// Converts a parsed YAML node. Plain scalars resolve by the YAML 1.2 core schema (null, bool, int,
// float, else string); quoted scalars always stay strings. Throws UsageError on unsupported input
// (anchors merging "<<", non-string keys, duplicate keys are reported by yaml-cpp itself).
[[nodiscard]] nlohmann::json yaml_to_json(const YAML::Node& node, const ScalarHook& hook = {});

// Parses every document of a YAML stream; empty documents are skipped. `source` names the text in
// error messages (a file path, usually). Throws UsageError with the line number on syntax errors.
[[nodiscard]] std::vector<nlohmann::json> parse_yaml_documents(std::string_view text,
                                                               std::string_view source,
                                                               const ScalarHook& hook = {});

// Emits one document as block YAML. Strings that a YAML 1.1 or 1.2 reader would take for another
// type ("true", "no", "8080", "1e3", "") are double-quoted, so the output round-trips exactly.
[[nodiscard]] std::string json_to_yaml(const nlohmann::json& document);

}  // namespace deployapps

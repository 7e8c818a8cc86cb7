#include "deployapps/yaml_json.hpp"

#include <yaml-cpp/yaml.h>

#include <fmt/format.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <limits>
#include <regex>

#include "deployapps/errors.hpp"

namespace deployapps {
namespace {

bool is_one_of(std::string_view text, std::initializer_list<std::string_view> words) {
  return std::ranges::find(words, text) != words.end();
}

const std::regex& int_pattern() {
  static const std::regex pattern("[-+]?[0-9]+");
  return pattern;
}

const std::regex& float_pattern() {
  static const std::regex pattern(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  return pattern;
}

// YAML 1.2 core schema resolution of a plain (unquoted) scalar.
nlohmann::json resolve_plain_scalar(const std::string& text) {
  if (text.empty() || is_one_of(text, {"~", "null", "Null", "NULL"})) {
    return nullptr;
  }
  if (is_one_of(text, {"true", "True", "TRUE"})) {
    return true;
  }
  if (is_one_of(text, {"false", "False", "FALSE"})) {
    return false;
  }
  if (std::regex_match(text, int_pattern())) {
    errno = 0;
    char* end = nullptr;
    const long long value = std::strtoll(text.c_str(), &end, 10);
    if (errno == 0 && end != nullptr && *end == '\0') {
      return value;
    }
    return std::strtod(text.c_str(), nullptr);
  }
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'o')) {
    const int base = text[1] == 'x' ? 16 : 8;
    errno = 0;
    char* end = nullptr;
    const long long value = std::strtoll(text.c_str() + 2, &end, base);
    if (errno == 0 && end != nullptr && *end == '\0') {
      return value;
    }
  }
  if (std::regex_match(text, float_pattern())) {
    return std::strtod(text.c_str(), nullptr);
  }
  if (is_one_of(text, {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"})) {
    return std::numeric_limits<double>::infinity();
  }
  if (is_one_of(text, {"-.inf", "-.Inf", "-.INF"})) {
    return -std::numeric_limits<double>::infinity();
  }
  if (is_one_of(text, {".nan", ".NaN", ".NAN"})) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return text;
}

std::string where(const YAML::Node& node) {
  const auto mark = node.Mark();
  return mark.is_null() ? std::string() : fmt::format(" (line {})", mark.line + 1);
}

// True when a plain scalar with this text would not read back as the same string, in YAML 1.2 or
// in the YAML 1.1 readers Kubernetes tools use (which also take yes/no/on/off as booleans).
bool needs_quotes(const std::string& text) {
  if (!resolve_plain_scalar(text).is_string()) {
    return true;
  }
  return is_one_of(text, {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On",
                          "ON", "off", "Off", "OFF", "=", "<<"}) ||
         text.find('\n') != std::string::npos;
}

void emit(YAML::Emitter& out, const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::object:
      if (value.empty()) {
        out << YAML::Flow;  // "{}" rather than a block that cannot show emptiness
      }
      out << YAML::BeginMap;
      for (const auto& [key, item] : value.items()) {
        out << YAML::Key;
        if (needs_quotes(key)) {
          out << YAML::DoubleQuoted;
        }
        out << key << YAML::Value;
        emit(out, item);
      }
      out << YAML::EndMap;
      break;
    case nlohmann::json::value_t::array:
      if (value.empty()) {
        out << YAML::Flow;
      }
      out << YAML::BeginSeq;
      for (const auto& item : value) {
        emit(out, item);
      }
      out << YAML::EndSeq;
      break;
    case nlohmann::json::value_t::string: {
      const auto& text = value.get_ref<const std::string&>();
      if (needs_quotes(text)) {
        out << YAML::DoubleQuoted;
      }
      out << text;
      break;
    }
    case nlohmann::json::value_t::boolean:
      out << (value.get<bool>() ? "true" : "false");
      break;
    case nlohmann::json::value_t::number_integer:
      out << value.get<std::int64_t>();
      break;
    case nlohmann::json::value_t::number_unsigned:
      out << value.get<std::uint64_t>();
      break;
    case nlohmann::json::value_t::number_float:
      // nlohmann prints the shortest text that reads back as the same double.
      out << value.dump();
      break;
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
    case nlohmann::json::value_t::binary:
      out << YAML::Null;
      break;
  }
}

}  // namespace

nlohmann::json yaml_to_json(const YAML::Node& node, const ScalarHook& hook) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar: {
      // yaml-cpp tags plain scalars "?" and quoted ones "!"; explicitly tagged ones (!!str) are
      // kept as strings.
      const bool plain = node.Tag() == "?";
      if (hook) {
        if (auto replaced = hook(node.Scalar(), plain)) {
          return *std::move(replaced);
        }
      }
      return plain ? resolve_plain_scalar(node.Scalar()) : nlohmann::json(node.Scalar());
    }
    case YAML::NodeType::Sequence: {
      auto array = nlohmann::json::array();
      for (const auto& item : node) {
        array.push_back(yaml_to_json(item, hook));
      }
      return array;
    }
    case YAML::NodeType::Map: {
      auto object = nlohmann::json::object();
      for (const auto& entry : node) {
        if (!entry.first.IsScalar()) {
          throw UsageError("YAML map keys must be strings" + where(entry.first));
        }
        const auto& key = entry.first.Scalar();
        if (key == "<<") {
          throw UsageError("YAML merge keys (<<) are not supported" + where(entry.first));
        }
        if (hook && hook(key, entry.first.Tag() == "?")) {
          throw UsageError(fmt::format("placeholders are not allowed in map keys: \"{}\"{}", key,
                                       where(entry.first)));
        }
        if (object.contains(key)) {
          throw UsageError(fmt::format("duplicate key \"{}\"{}", key, where(entry.first)));
        }
        object[key] = yaml_to_json(entry.second, hook);
      }
      return object;
    }
  }
  return nullptr;
}

std::vector<nlohmann::json> parse_yaml_documents(std::string_view text, std::string_view source,
                                                 const ScalarHook& hook) {
  std::vector<YAML::Node> nodes;
  try {
    nodes = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& error) {
    throw UsageError(fmt::format("{}: invalid YAML at line {}, column {}: {}", source,
                                 error.mark.line + 1, error.mark.column + 1, error.msg));
  }
  std::vector<nlohmann::json> documents;
  documents.reserve(nodes.size());
  for (const auto& node : nodes) {
    if (node.IsNull()) {
      continue;
    }
    try {
      documents.push_back(yaml_to_json(node, hook));
    } catch (const RenderError&) {
      throw;  // the hook's errors already name their source
    } catch (const UsageError& error) {
      throw UsageError(fmt::format("{}: {}", source, error.what()));
    }
  }
  return documents;
}

std::string json_to_yaml(const nlohmann::json& document) {
  YAML::Emitter out;
  out.SetIndent(2);
  out.SetSeqFormat(YAML::Block);
  out.SetMapFormat(YAML::Block);
  emit(out, document);
  if (!out.good()) {
    throw Error("cannot emit YAML: " + out.GetLastError());
  }
  std::string text = out.c_str();
  text.push_back('\n');
  return text;
}

}  // namespace deployapps

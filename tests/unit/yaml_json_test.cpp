#include <yaml-cpp/yaml.h>
#include <catch2/catch.hpp>

#include "deployapps/errors.hpp"
#include "deployapps/yaml_json.hpp"

using deployapps::json_to_yaml;
using deployapps::parse_yaml_documents;
using nlohmann::json;

TEST_CASE("plain scalars resolve by the YAML 1.2 core schema", "[yaml]") {
  const auto [text, expected] = GENERATE(table<std::string, json>({
      {"a: 42", json{{"a", 42}}},
      {"a: -7", json{{"a", -7}}},
      {"a: 0x1F", json{{"a", 31}}},
      {"a: 1.5", json{{"a", 1.5}}},
      {"a: 1e3", json{{"a", 1000.0}}},
      {"a: true", json{{"a", true}}},
      {"a: False", json{{"a", false}}},
      {"a: null", json{{"a", nullptr}}},
      {"a: ~", json{{"a", nullptr}}},
      {"a:", json{{"a", nullptr}}},
      {"a: yes", json{{"a", "yes"}}},  // a string in YAML 1.2
      {"a: 100m", json{{"a", "100m"}}},
      {"a: 127.0.0.1:5000", json{{"a", "127.0.0.1:5000"}}},
  }));
  CAPTURE(text);
  const auto documents = parse_yaml_documents(text, "test");
  REQUIRE(documents.size() == 1);
  CHECK(documents.front() == expected);
}

TEST_CASE("quoted scalars always stay strings", "[yaml]") {
  const auto documents = parse_yaml_documents("a: \"8080\"\nb: 'true'\nc: !!str 1.5\n", "test");
  CHECK(documents.front() == json{{"a", "8080"}, {"b", "true"}, {"c", "1.5"}});
}

TEST_CASE("several documents are read, empty ones skipped", "[yaml]") {
  const auto documents = parse_yaml_documents("---\na: 1\n---\n---\n- x\n- y\n", "test");
  REQUIRE(documents.size() == 2);
  CHECK(documents[0] == json{{"a", 1}});
  CHECK(documents[1] == json::array({"x", "y"}));
}

TEST_CASE("syntax errors name the source and line", "[yaml]") {
  CHECK_THROWS_WITH(parse_yaml_documents("a: 1\nb: [unclosed\n", "manifests/x.yaml"),
                    Catch::Contains("manifests/x.yaml") && Catch::Contains("line"));
  CHECK_THROWS_AS(parse_yaml_documents("a: 1\na: 2\n", "dup.yaml"), deployapps::UsageError);
  CHECK_THROWS_WITH(parse_yaml_documents("a: 1\na: 2\n", "dup.yaml"),
                    Catch::Contains("duplicate key \"a\""));
}

TEST_CASE("the scalar hook replaces values and knows quoting", "[yaml]") {
  std::vector<std::pair<std::string, bool>> seen;
  const auto documents =
      parse_yaml_documents("a: plain\nb: \"quoted\"\nkey: 1\n", "test",
                           [&](const std::string& text, bool plain) -> std::optional<json> {
                             seen.emplace_back(text, plain);
                             if (text == "plain") {
                               return json(7);
                             }
                             return std::nullopt;
                           });
  CHECK(documents.front() == json{{"a", 7}, {"b", "quoted"}, {"key", 1}});
  CHECK(std::find(seen.begin(), seen.end(), std::pair<std::string, bool>{"quoted", false}) !=
        seen.end());
}

TEST_CASE("emitted YAML reads back as the same value", "[yaml]") {
  const json document = {
      {"strings", json::array({"8080", "true", "no", "on", "", "1e3", "null", "~", "plain text",
                               "multi\nline", "0x10", "-", "a: b", "#hash", "100m"})},
      {"numbers", json::array({0, -3, 42, 1.5, 1e-3})},
      {"flags", json::array({true, false})},
      {"nothing", nullptr},
      {"empty_map", json::object()},
      {"empty_list", json::array()},
      {"nested", {{"a", {{"b", json::array({{{"c", 1}}})}}}}},
      {"8080", "numeric key"}};
  const auto text = json_to_yaml(document);
  CAPTURE(text);
  const auto documents = parse_yaml_documents(text, "round trip");
  REQUIRE(documents.size() == 1);
  CHECK(documents.front() == document);
  // Strings that YAML 1.1 readers (kubectl) take as booleans are quoted too.
  CHECK(text.find("\"no\"") != std::string::npos);
  CHECK(text.find("\"on\"") != std::string::npos);
}

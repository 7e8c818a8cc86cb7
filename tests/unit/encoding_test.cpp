#include <catch2/catch.hpp>

#include "deployapps/encoding.hpp"

TEST_CASE("base64 round trips and rejects garbage", "[encoding]") {
  const auto text = GENERATE(as<std::string>{}, "", "a", "ab", "abc", "abcd", "-----BEGIN CERT");
  const auto encoded = deployapps::base64_encode(text);
  CHECK(deployapps::base64_decode(encoded) == text);
  CHECK(deployapps::base64_decode("YWJj\nZA==\n") == std::string("abcd"));
  CHECK_FALSE(deployapps::base64_decode("abc").has_value());
  CHECK_FALSE(deployapps::base64_decode("a$c=").has_value());
}

TEST_CASE("query values are percent-encoded", "[encoding]") {
  CHECK(deployapps::url_encode("metadata.name=go-app") == "metadata.name%3Dgo-app");
  CHECK(deployapps::url_encode("a b/c~") == "a%20b%2Fc~");
}

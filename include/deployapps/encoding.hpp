// Small text encodings the API needs.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace deployapps {

// Standard base64 with padding; whitespace is ignored. nullopt when malformed.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text);
[[nodiscard]] std::string base64_encode(std::string_view bytes);

// Percent-encodes a URL query value (RFC 3986 unreserved characters stay as they are).
[[nodiscard]] std::string url_encode(std::string_view text);

// Escapes text for an XML attribute or element (&, <, >, "). Hand-written: the card's packages
// hold no XML writer, and a JUnit file needs only escaped text in a fixed shape.
[[nodiscard]] std::string xml_escape(std::string_view text);

// Trims ASCII whitespace at both ends. The result views `text`: keep what it views alive.
[[nodiscard]] std::string_view trim(std::string_view text) noexcept;

}  // namespace deployapps

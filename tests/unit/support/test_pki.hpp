// Throwaway certificates made at test time with OpenSSL: a CA, and leaf certificates it signs
// with chosen names and validity.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace deployapps::testing {

struct CertifiedKey {
  std::string certificate_pem;
  std::string key_pem;
};

struct LeafSpec {
  std::string common_name = "test";
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  std::chrono::seconds not_before{-3600};  // relative to now
  std::chrono::seconds not_after{3600};
  bool client = false;  // clientAuth instead of serverAuth
};

class TestCa {
 public:
  explicit TestCa(const std::string& name);
  [[nodiscard]] const CertifiedKey& ca() const noexcept { return ca_; }
  [[nodiscard]] CertifiedKey issue(const LeafSpec& spec) const;

 private:
  CertifiedKey ca_;
};

}  // namespace deployapps::testing

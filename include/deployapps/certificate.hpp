// The zero-failure certificate of one rollout (issue 17 item 4): one machine-readable record of
// what its checks saw, for whoever signs a release off and for CI systems.
//   - requests by kind and by what each kind sent (method and path), and through which URL;
//   - failures by class, the ingress's real-traffic counts, the old pods' drain timelines and
//     exit codes;
//   - the bound the evidence supports: 0 failures in N judged requests put the failure rate below
//     1 - 0.05^(1/N) (about 3/N, the "rule of three") with 95 % confidence;
//   - one verdict per check, and one overall.
// certificate.json holds it; junit.xml holds the same checks as JUnit test cases.
//
// Pure: built from the rollout's report and what its checks measured.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "deployapps/ingress_check.hpp"
#include "deployapps/probe/config.hpp"
#include "deployapps/probe/report.hpp"
#include "deployapps/rollout.hpp"

namespace deployapps {

// What the checks measured, beside the rollout's report.
struct CertificateEvidence {
  std::string namespace_name;
  std::string issued_at;  // RFC 3339
  // The in-flight probe: what it was told to send and what it saw; unset when it did not run.
  std::optional<probe::Config> probe;
  std::optional<probe::Summary> probe_summary;
  std::optional<IngressJudgement> ingress;  // the real-traffic check; unset when it did not run
  std::string ingress_url;
  bool drain_checked = false;    // the drain-race timelines were recorded
  std::size_t min_requests = 0;  // --min-requests; 0: none required
};

enum class CheckStatus { kPassed, kFailed, kSkipped };
[[nodiscard]] std::string_view check_status_name(CheckStatus status) noexcept;

struct CertificateCheck {
  std::string name;
  CheckStatus status = CheckStatus::kSkipped;
  std::string detail;  // the numbers behind the status, or why it was skipped
};

// The checks, in a fixed order: requests, evidence, real traffic, drain race, old pods' exits,
// the rollout's own result.
[[nodiscard]] std::vector<CertificateCheck> certificate_checks(const RolloutReport& rollout,
                                                               const CertificateEvidence& evidence);

// "passed": no check failed and some requests were judged; "failed": a check failed;
// "no evidence": nothing failed, but no request was judged either.
[[nodiscard]] std::string certificate_verdict(const std::vector<CertificateCheck>& checks,
                                              const CertificateEvidence& evidence);

[[nodiscard]] nlohmann::json certificate_json(const RolloutReport& rollout,
                                              const CertificateEvidence& evidence);

// For people, one line: the verdict, the judged requests and the bound, or the failed checks.
[[nodiscard]] std::string certificate_line(const RolloutReport& rollout,
                                           const CertificateEvidence& evidence);

// The same checks as a JUnit XML test suite, one test case each, with the counts as properties.
[[nodiscard]] std::string certificate_junit(const RolloutReport& rollout,
                                            const CertificateEvidence& evidence);

}  // namespace deployapps

#include "deployapps/certificate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "deployapps/encoding.hpp"
#include "deployapps/probe/probe.hpp"

namespace deployapps {
namespace {

using nlohmann::json;

std::size_t judged_requests(const probe::Summary& summary) {
  return summary.requests - summary.cancelled;
}

std::string failures_text(const std::map<probe::ErrorClass, std::size_t>& by_class) {
  std::string text;
  for (const auto& [error, count] : by_class) {
    text += fmt::format("{}{} {}", text.empty() ? "" : ", ", probe::to_string(error), count);
  }
  return text;
}

CertificateCheck requests_check(const CertificateEvidence& evidence) {
  CertificateCheck check{"in-flight requests: 0 failed", CheckStatus::kSkipped, ""};
  if (!evidence.probe_summary) {
    check.detail = "the in-flight probe did not run (no probe URL, --no-probe or --no-verify)";
    return check;
  }
  const auto& summary = *evidence.probe_summary;
  if (summary.failed > 0) {
    check.status = CheckStatus::kFailed;
    check.detail = fmt::format("{} of {} judged requests failed: {}", summary.failed,
                               judged_requests(summary), failures_text(summary.failures_by_class));
    return check;
  }
  check.status = CheckStatus::kPassed;
  check.detail = fmt::format("0 of {} judged requests failed", judged_requests(summary));
  if (summary.cancelled > 0) {
    check.detail +=
        fmt::format(" ({} cancelled by the probe itself, not judged)", summary.cancelled);
  }
  return check;
}

CertificateCheck evidence_check(const CertificateEvidence& evidence) {
  CertificateCheck check{"evidence: at least --min-requests judged", CheckStatus::kSkipped, ""};
  if (evidence.min_requests == 0) {
    check.detail = "no minimum required (--min-requests)";
    return check;
  }
  const std::size_t judged = evidence.probe_summary ? judged_requests(*evidence.probe_summary) : 0;
  check.status = judged >= evidence.min_requests ? CheckStatus::kPassed : CheckStatus::kFailed;
  check.detail = fmt::format("{} judged, {} required", judged, evidence.min_requests);
  return check;
}

CertificateCheck real_traffic_check(const CertificateEvidence& evidence) {
  CertificateCheck check{"real traffic: no ingress error beyond the baseline",
                         CheckStatus::kSkipped, ""};
  if (!evidence.ingress) {
    check.detail = "the real-traffic check did not run (no ingress metrics endpoint)";
    return check;
  }
  check.status = evidence.ingress->failed ? CheckStatus::kFailed : CheckStatus::kPassed;
  check.detail = evidence.ingress->summary;
  return check;
}

CertificateCheck drain_check(const RolloutReport& rollout, const CertificateEvidence& evidence) {
  CertificateCheck check{"drain race: every old pod stopped listening after no router sent to it",
                         CheckStatus::kSkipped, ""};
  if (!evidence.drain_checked) {
    check.detail = "not recorded (--no-drain-check, --no-verify, or no pod replaced)";
    return check;
  }
  if (rollout.drain_timelines.empty()) {
    check.detail = "no old pod was deleted while it was recorded";
    return check;
  }
  std::size_t failed = 0;
  std::size_t measured = 0;
  double smallest = std::numeric_limits<double>::infinity();
  double needed = 0;
  double configured = 0;
  for (const auto& timeline : rollout.drain_timelines) {
    failed += timeline.value("failed", false) ? 1U : 0U;
    if (const auto margin = timeline.find("marginSeconds");
        margin != timeline.end() && margin->is_number()) {
      ++measured;
      smallest = std::min(smallest, margin->get<double>());
    }
    if (const auto pause = timeline.find("pauseNeededSeconds");
        pause != timeline.end() && pause->is_number()) {
      needed = std::max(needed, pause->get<double>());
    }
    configured = timeline.value("pauseConfiguredSeconds", configured);
  }
  check.status = failed > 0 ? CheckStatus::kFailed : CheckStatus::kPassed;
  check.detail =
      fmt::format("{} old pods, {} margins measured", rollout.drain_timelines.size(), measured);
  if (measured > 0) {
    check.detail +=
        fmt::format(", smallest {:.3f} s; drain pause needed up to {:.3f} s of {:.0f} s configured",
                    smallest, needed, configured);
  }
  if (failed > 0) {
    check.detail += fmt::format("; {} negative", failed);
  }
  return check;
}

CertificateCheck exits_check(const RolloutReport& rollout) {
  CertificateCheck check{"old pods: every one exited 0", CheckStatus::kSkipped, ""};
  if (rollout.old_pods.empty()) {
    check.detail = "no old pod exit was recorded";
    return check;
  }
  std::size_t clean = 0;
  std::size_t unseen = 0;
  std::vector<std::string> bad;
  for (const auto& pod : rollout.old_pods) {
    if (!pod.exit_code) {
      ++unseen;
    } else if (*pod.exit_code == 0) {
      ++clean;
    } else {
      bad.push_back(fmt::format("{} exited {} ({})", pod.pod, *pod.exit_code, pod.reason));
    }
  }
  check.status = bad.empty() ? CheckStatus::kPassed : CheckStatus::kFailed;
  check.detail = fmt::format("{} of {} exited 0", clean, rollout.old_pods.size());
  if (unseen > 0) {
    check.detail += fmt::format("; {} deleted before their exit code was seen", unseen);
  }
  for (const auto& line : bad) {
    check.detail += "; " + line;
  }
  return check;
}

CertificateCheck result_check(const RolloutReport& rollout) {
  CertificateCheck check{"rollout: the new version is out", CheckStatus::kFailed, ""};
  const auto result = std::string(result_name(rollout.result));
  if (rollout.result == RolloutResult::kSucceeded || rollout.result == RolloutResult::kUnchanged) {
    check.status = CheckStatus::kPassed;
    check.detail = fmt::format("{}: {}", result, rollout.new_version);
    return check;
  }
  check.detail = fmt::format("{}{}: {}", result,
                             rollout.rolled_back ? fmt::format(" to {}", rollout.old_version) : "",
                             rollout.failure);
  return check;
}

json counts_json(const IngressCounts& counts) {
  return {{"requests", counts.requests},   {"5xx", counts.server_errors},
          {"502", counts.bad_gateway},     {"503", counts.service_unavailable},
          {"504", counts.gateway_timeout}, {"499", counts.client_closed}};
}

json requests_json(const CertificateEvidence& evidence) {
  if (!evidence.probe_summary) {
    return nullptr;
  }
  const auto& summary = *evidence.probe_summary;
  json by_kind = json::array();
  for (const auto& [kind, counts] : summary.by_kind) {
    by_kind.push_back(
        {{"kind", probe::to_string(kind)},
         {"request", evidence.probe ? probe::request_line(*evidence.probe, kind) : std::string()},
         {"requests", counts.requests},
         {"failed", counts.failed}});
  }
  json versions = json::array();
  for (const auto& [version, responses] : summary.versions) {
    versions.push_back({{"version", version}, {"responses", responses}});
  }
  return {{"url", evidence.probe ? evidence.probe->url : std::string()},
          {"host", evidence.probe ? evidence.probe->host_header : std::string()},
          {"total", summary.requests},
          {"judged", judged_requests(summary)},
          {"cancelled", summary.cancelled},
          {"failed", summary.failed},
          {"byKind", by_kind},
          {"longLivedBeforeRollout",
           {{"requests", summary.long_lived_before_rollout.requests},
            {"failed", summary.long_lived_before_rollout.failed}}},
          {"versions", versions},
          {"connectionsOpened", summary.connections_opened}};
}

json bound_json(const CertificateEvidence& evidence) {
  if (!evidence.probe_summary || evidence.probe_summary->failed > 0) {
    return nullptr;
  }
  const auto judged = judged_requests(*evidence.probe_summary);
  const auto bound = probe::zero_failure_upper_bound_95(judged);
  if (!bound) {
    return nullptr;
  }
  return {{"judged", judged},
          {"confidence", 0.95},
          {"failureRateUpperBound", *bound},
          {"rule", "0 failures in N independent requests: below 1 - 0.05^(1/N), about 3/N"}};
}

json real_traffic_json(const CertificateEvidence& evidence) {
  if (!evidence.ingress) {
    return nullptr;
  }
  const auto& ingress = *evidence.ingress;
  return {
      {"metrics", evidence.ingress_url},
      {"duringRollout", counts_json(ingress.during)},
      {"baseline", counts_json(ingress.baseline)},
      {"allowedErrors", ingress.allowed_errors},
      {"judged", ingress.during.requests > 0},
      // Traefik v3 counts open connections per entry point only, not per service.
      {"openConnectionsToIngress",
       {{"atApply", ingress.open_connections_at_apply}, {"peak", ingress.open_connections_peak}}}};
}

}  // namespace

std::string_view check_status_name(CheckStatus status) noexcept {
  switch (status) {
    case CheckStatus::kPassed:
      return "passed";
    case CheckStatus::kFailed:
      return "failed";
    case CheckStatus::kSkipped:
      return "skipped";
  }
  return "unknown";
}

std::vector<CertificateCheck> certificate_checks(const RolloutReport& rollout,
                                                 const CertificateEvidence& evidence) {
  return {requests_check(evidence),       evidence_check(evidence), real_traffic_check(evidence),
          drain_check(rollout, evidence), exits_check(rollout),     result_check(rollout)};
}

std::string certificate_verdict(const std::vector<CertificateCheck>& checks,
                                const CertificateEvidence& evidence) {
  if (std::any_of(checks.begin(), checks.end(),
                  [](const auto& check) { return check.status == CheckStatus::kFailed; })) {
    return "failed";
  }
  const bool probed = evidence.probe_summary && judged_requests(*evidence.probe_summary) > 0;
  const bool real_traffic = evidence.ingress && evidence.ingress->during.requests > 0;
  return probed || real_traffic ? "passed" : "no evidence";
}

json certificate_json(const RolloutReport& rollout, const CertificateEvidence& evidence) {
  const auto checks = certificate_checks(rollout, evidence);
  json checks_out = json::array();
  for (const auto& check : checks) {
    checks_out.push_back({{"name", check.name},
                          {"status", check_status_name(check.status)},
                          {"detail", check.detail}});
  }
  json failures = json::object();
  if (evidence.probe_summary) {
    for (const auto& [error, count] : evidence.probe_summary->failures_by_class) {
      failures[std::string(probe::to_string(error))] = count;
    }
  }
  return {{"certificate", "deploy-apps zero-failure certificate"},
          {"formatVersion", 1},
          {"app", rollout.app},
          {"namespace", evidence.namespace_name},
          {"oldVersion", rollout.old_version},
          {"newVersion", rollout.new_version},
          {"result", result_name(rollout.result)},
          {"rolledBack", rollout.rolled_back},
          {"failure", rollout.failure},
          {"issuedAt", evidence.issued_at},
          {"durationSeconds", static_cast<double>(rollout.duration.count()) / 1000.0},
          {"verdict", certificate_verdict(checks, evidence)},
          {"checks", checks_out},
          {"requests", requests_json(evidence)},
          {"failuresByClass", failures},
          {"bound95", bound_json(evidence)},
          {"minRequests", evidence.min_requests},
          {"realTraffic", real_traffic_json(evidence)},
          {"drainTimelines", rollout.drain_timelines},
          {"oldPods", old_pods_json(rollout.old_pods)}};
}

std::string certificate_line(const RolloutReport& rollout, const CertificateEvidence& evidence) {
  const auto checks = certificate_checks(rollout, evidence);
  auto line = certificate_verdict(checks, evidence);
  std::string failed;
  for (const auto& check : checks) {
    if (check.status == CheckStatus::kFailed) {
      failed += fmt::format("{}{} ({})", failed.empty() ? "" : "; ", check.name, check.detail);
    }
  }
  if (!failed.empty()) {
    return line + ": " + failed;
  }
  if (const auto bound = bound_json(evidence); !bound.is_null()) {
    line += fmt::format(": 0 failed in {} judged requests; failure rate below {:.2g} (95 %)",
                        bound["judged"].get<std::size_t>(),
                        bound["failureRateUpperBound"].get<double>());
  }
  if (evidence.ingress && evidence.ingress->during.requests > 0) {
    line += fmt::format("; {:.0f} real requests through the ingress, {:.0f} errors",
                        evidence.ingress->during.requests, evidence.ingress->during.errors());
  }
  return line;
}

std::string certificate_junit(const RolloutReport& rollout, const CertificateEvidence& evidence) {
  const auto checks = certificate_checks(rollout, evidence);
  const auto count = [&](CheckStatus status) {
    return std::count_if(checks.begin(), checks.end(),
                         [&](const auto& check) { return check.status == status; });
  };
  const double seconds = static_cast<double>(rollout.duration.count()) / 1000.0;
  const auto suite =
      fmt::format("{} rollout {} -> {}", rollout.app,
                  rollout.old_version.empty() ? "-" : rollout.old_version, rollout.new_version);
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += fmt::format(
      "<testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3f}\" "
      "timestamp=\"{}\">\n",
      xml_escape(suite), checks.size(), count(CheckStatus::kFailed), count(CheckStatus::kSkipped),
      seconds, xml_escape(evidence.issued_at));
  out += "  <properties>\n";
  const auto property = [&](std::string_view key, const std::string& value) {
    out += fmt::format("    <property name=\"{}\" value=\"{}\"/>\n", key, xml_escape(value));
  };
  property("verdict", certificate_verdict(checks, evidence));
  if (evidence.probe_summary) {
    const auto& summary = *evidence.probe_summary;
    property("requests", std::to_string(judged_requests(summary)));
    property("failed", std::to_string(summary.failed));
    for (const auto& [kind, counts] : summary.by_kind) {
      property(fmt::format("requests.{}", probe::to_string(kind)), std::to_string(counts.requests));
    }
    for (const auto& [error, failed] : summary.failures_by_class) {
      property(fmt::format("failed.{}", probe::to_string(error)), std::to_string(failed));
    }
  }
  const auto bound = bound_json(evidence);
  property("failure_rate_upper_bound_95",
           bound.is_null() ? std::string("none")
                           : fmt::format("{:.3g}", bound["failureRateUpperBound"].get<double>()));
  if (evidence.ingress) {
    property("real_traffic.requests", fmt::format("{:.0f}", evidence.ingress->during.requests));
    property("real_traffic.errors", fmt::format("{:.0f}", evidence.ingress->during.errors()));
  }
  out += "  </properties>\n";
  for (const auto& check : checks) {
    out += fmt::format("  <testcase classname=\"deploy-apps.{}\" name=\"{}\" time=\"{:.3f}\">\n",
                       xml_escape(rollout.app), xml_escape(check.name), seconds);
    if (check.status == CheckStatus::kFailed) {
      out += fmt::format("    <failure message=\"{}\"/>\n", xml_escape(check.detail));
    } else if (check.status == CheckStatus::kSkipped) {
      out += fmt::format("    <skipped message=\"{}\"/>\n", xml_escape(check.detail));
    } else {
      out += fmt::format("    <system-out>{}</system-out>\n", xml_escape(check.detail));
    }
    out += "  </testcase>\n";
  }
  out += "</testsuite>\n";
  return out;
}

}  // namespace deployapps

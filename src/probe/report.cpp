#include "deployapps/probe/report.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace deployapps::probe {
namespace {

using nlohmann::json;

constexpr std::array kKindNames = {
    std::pair{RequestKind::keepalive_get, std::string_view{"keepalive-get"}},
    std::pair{RequestKind::keepalive_post, std::string_view{"keepalive-post"}},
    std::pair{RequestKind::fresh_get, std::string_view{"fresh-get"}},
    std::pair{RequestKind::long_get, std::string_view{"long-get"}},
    std::pair{RequestKind::stream, std::string_view{"stream"}},
};

constexpr std::array kErrorNames = {
    std::pair{ErrorClass::none, std::string_view{"none"}},
    std::pair{ErrorClass::refused, std::string_view{"refused"}},
    std::pair{ErrorClass::reset, std::string_view{"reset"}},
    std::pair{ErrorClass::eof, std::string_view{"eof"}},
    std::pair{ErrorClass::timeout, std::string_view{"timeout"}},
    std::pair{ErrorClass::truncated, std::string_view{"truncated"}},
    std::pair{ErrorClass::http_5xx, std::string_view{"5xx"}},
    std::pair{ErrorClass::http_4xx, std::string_view{"4xx"}},
    std::pair{ErrorClass::other, std::string_view{"other"}},
    std::pair{ErrorClass::cancelled, std::string_view{"cancelled"}},
};

template <typename Enum, std::size_t N>
std::string_view name_of(const std::array<std::pair<Enum, std::string_view>, N>& names,
                         Enum value) noexcept {
  for (const auto& [candidate, name] : names) {
    if (candidate == value) {
      return name;
    }
  }
  return "?";
}

template <typename Enum, std::size_t N>
Enum value_of(const std::array<std::pair<Enum, std::string_view>, N>& names, std::string_view name,
              std::string_view what) {
  for (const auto& [value, candidate] : names) {
    if (candidate == name) {
      return value;
    }
  }
  throw std::invalid_argument("unknown " + std::string(what) + " '" + std::string(name) + "'");
}

bool is_short(RequestKind kind) noexcept {
  return kind == RequestKind::keepalive_get || kind == RequestKind::keepalive_post ||
         kind == RequestKind::fresh_get;
}

double to_ms(Offset offset) {
  return static_cast<double>(offset.count()) / 1000.0;
}
double to_seconds(Offset offset) {
  return static_cast<double>(offset.count()) / 1e6;
}

LatencyStats latency_stats(std::vector<Offset> latencies) {
  LatencyStats stats;
  stats.count = latencies.size();
  if (latencies.empty()) {
    return stats;
  }
  stats.p50 = nearest_rank_percentile(latencies, 50);
  stats.p99 = nearest_rank_percentile(latencies, 99);
  stats.max = latencies.back();  // sorted by the call above
  return stats;
}

struct VersionSpan {
  Offset first{Offset::max()};
  Offset last{Offset::min()};
  std::size_t responses = 0;
};

// Counts responses per version in order of first response, over the records `keep` selects.
template <typename Predicate>
std::vector<std::pair<std::string, VersionSpan>> version_spans(const RecordLog& records,
                                                               Predicate keep) {
  std::map<std::string, VersionSpan> spans;
  for (const Record& record : records) {
    if (!record.response || !keep(record)) {
      continue;
    }
    VersionSpan& span = spans[record.version];
    span.first = std::min(span.first, *record.response);
    span.last = std::max(span.last, *record.response);
    ++span.responses;
  }
  std::vector<std::pair<std::string, VersionSpan>> ordered(spans.begin(), spans.end());
  std::stable_sort(ordered.begin(), ordered.end(), [](const auto& left, const auto& right) {
    return left.second.first < right.second.first;
  });
  return ordered;
}

std::vector<VersionCount> to_counts(const std::vector<std::pair<std::string, VersionSpan>>& spans) {
  std::vector<VersionCount> counts;
  counts.reserve(spans.size());
  for (const auto& [version, span] : spans) {
    counts.push_back({version, span.responses});
  }
  return counts;
}

std::optional<SwitchOver> switch_over_of(const RecordLog& records) {
  const auto spans = version_spans(records, [](const Record& record) {
    return is_short(record.kind) && !record.version.empty();
  });
  if (spans.size() < 2) {
    return std::nullopt;
  }
  const auto& [old_version, old_span] = spans.front();
  const auto& [new_version, new_span] = spans.back();
  return SwitchOver{old_version, new_version, Window{new_span.first, old_span.last}};
}

Offset run_end(const RecordLog& records, const RunInfo& info) {
  Offset end = info.elapsed;
  for (const Record& record : records) {
    end = std::max(end, record.end);
  }
  return end;
}

json latency_json(const LatencyStats& stats) {
  return {{"count", stats.count},
          {"p50_ms", to_ms(stats.p50)},
          {"p99_ms", to_ms(stats.p99)},
          {"max_ms", to_ms(stats.max)}};
}

json window_json(const Window& window) {
  return {{"start_s", to_seconds(window.start)},
          {"end_s", to_seconds(window.end)},
          {"length_s", to_seconds(window.length())}};
}

json versions_json(const std::vector<VersionCount>& versions) {
  json out = json::array();
  for (const auto& [version, responses] : versions) {
    out.push_back({{"version", version}, {"responses", responses}});
  }
  return out;
}

json summary_json(const Summary& summary) {
  json out{{"requests", summary.requests},
           {"failed", summary.failed},
           {"cancelled", summary.cancelled},
           {"failures_by_class", json::object()},
           {"by_kind", json::object()},
           {"versions", versions_json(summary.versions)},
           {"switch_over", nullptr},
           {"rollout", nullptr},
           {"latency_steady", latency_json(summary.steady)},
           {"latency_during_rollout", latency_json(summary.during_rollout)},
           {"long_lived_before_rollout",
            {{"requests", summary.long_lived_before_rollout.requests},
             {"failed", summary.long_lived_before_rollout.failed}}},
           {"versions_after_rollout", versions_json(summary.versions_after_rollout)},
           {"connections_opened", summary.connections_opened},
           {"reused_requests", summary.reused_requests},
           {"server_closes", summary.server_closes},
           {"stale_replacements", summary.stale_replacements},
           {"zero_failure_bound_95", nullptr}};
  // What 0 failures in N requests prove: the failure rate is below this bound with 95 % confidence.
  if (const auto bound = summary.failed == 0
                             ? zero_failure_upper_bound_95(summary.requests - summary.cancelled)
                             : std::nullopt) {
    out["zero_failure_bound_95"] = {{"requests", summary.requests - summary.cancelled},
                                    {"failure_rate_upper_bound", *bound}};
  }
  for (const auto& [error, count] : summary.failures_by_class) {
    out["failures_by_class"][std::string(to_string(error))] = count;
  }
  for (const auto& [kind, counts] : summary.by_kind) {
    out["by_kind"][std::string(to_string(kind))] = {{"requests", counts.requests},
                                                    {"failed", counts.failed}};
  }
  if (summary.switch_over) {
    out["switch_over"] = window_json(summary.switch_over->window);
    out["switch_over"]["old_version"] = summary.switch_over->old_version;
    out["switch_over"]["new_version"] = summary.switch_over->new_version;
  }
  if (summary.rollout) {
    out["rollout"] = window_json(*summary.rollout);
    out["rollout"]["source"] = summary.rollout_source;
  }
  return out;
}

json record_json(const Record& record) {
  return {{"id", record.id},
          {"kind", to_string(record.kind)},
          {"worker", record.worker},
          {"connection", record.connection},
          {"connection_reused", record.connection_reused},
          {"stale_connection_replaced", record.stale_connection_replaced},
          {"start_us", record.start.count()},
          {"response_us", record.response ? json(record.response->count()) : json(nullptr)},
          {"end_us", record.end.count()},
          {"status", record.status},
          {"error", to_string(record.error)},
          {"detail", record.detail},
          {"version", record.version},
          {"served_by", record.served_by},
          {"connection_served_by", record.connection_served_by},
          {"server_closed", record.server_closed},
          {"stream_lines", record.stream_lines}};
}

Record record_from_json(const json& in) {
  Record record;
  record.id = in.at("id").get<std::uint64_t>();
  record.kind = request_kind_from_string(in.at("kind").get<std::string>());
  record.worker = in.at("worker").get<int>();
  record.connection = in.at("connection").get<std::uint64_t>();
  record.connection_reused = in.at("connection_reused").get<bool>();
  record.stale_connection_replaced = in.at("stale_connection_replaced").get<bool>();
  record.start = Offset{in.at("start_us").get<std::int64_t>()};
  if (const json& response = in.at("response_us"); !response.is_null()) {
    record.response = Offset{response.get<std::int64_t>()};
  }
  record.end = Offset{in.at("end_us").get<std::int64_t>()};
  record.status = in.at("status").get<int>();
  record.error = error_class_from_string(in.at("error").get<std::string>());
  record.detail = in.at("detail").get<std::string>();
  record.version = in.at("version").get<std::string>();
  record.served_by = in.at("served_by").get<std::string>();
  record.connection_served_by = in.at("connection_served_by").get<std::string>();
  record.server_closed = in.at("server_closed").get<bool>();
  record.stream_lines = in.at("stream_lines").get<std::uint32_t>();
  return record;
}

std::string format_latency(const LatencyStats& stats) {
  if (stats.count == 0) {
    return "no requests";
  }
  return fmt::format("n={} p50 {:.1f} ms, p99 {:.1f} ms, max {:.1f} ms", stats.count,
                     to_ms(stats.p50), to_ms(stats.p99), to_ms(stats.max));
}

std::string format_versions(const std::vector<VersionCount>& versions) {
  if (versions.empty()) {
    return "none";
  }
  std::string out;
  for (const auto& [version, responses] : versions) {
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ",
                       version.empty() ? "(no X-App-Version)" : version, responses);
  }
  return out;
}

}  // namespace

std::string_view to_string(RequestKind kind) noexcept {
  return name_of(kKindNames, kind);
}
std::string_view to_string(ErrorClass error) noexcept {
  return name_of(kErrorNames, error);
}
RequestKind request_kind_from_string(std::string_view name) {
  return value_of(kKindNames, name, "request kind");
}
ErrorClass error_class_from_string(std::string_view name) {
  return value_of(kErrorNames, name, "error class");
}

bool is_failure(ErrorClass error) noexcept {
  return error != ErrorClass::none && error != ErrorClass::cancelled;
}

Offset nearest_rank_percentile(std::vector<Offset>& values, double p) {
  if (values.empty()) {
    return Offset{0};
  }
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(p / 100.0 * static_cast<double>(values.size()));
  const auto index =
      static_cast<std::size_t>(std::clamp(rank, 1.0, static_cast<double>(values.size()))) - 1;
  return values[index];
}

Report::Report(RunInfo info, RecordLog records, std::vector<Mark> marks)
    : info_(std::move(info)), records_(std::move(records)), marks_(std::move(marks)) {}

Report::Report(RunInfo info, const std::vector<Record>& records, std::vector<Mark> marks)
    : Report(std::move(info), RecordLog(records), std::move(marks)) {}

std::optional<Offset> Report::mark(std::string_view name) const {
  for (const Mark& mark : marks_) {
    if (mark.name == name) {
      return mark.at;
    }
  }
  return std::nullopt;
}

Summary Report::summary() const {
  Summary summary;
  summary.requests = records_.size();
  std::set<std::uint64_t> connections;
  for (const Record& record : records_) {
    KindCounts& kind = summary.by_kind[record.kind];
    ++kind.requests;
    if (record.failed()) {
      ++summary.failed;
      ++kind.failed;
      ++summary.failures_by_class[record.error];
    } else if (record.error == ErrorClass::cancelled) {
      ++summary.cancelled;
    }
    if (record.connection != 0) {
      connections.insert(record.connection);
    }
    summary.reused_requests += record.connection_reused ? 1U : 0U;
    summary.server_closes += record.server_closed ? 1U : 0U;
    summary.stale_replacements += record.stale_connection_replaced ? 1U : 0U;
  }
  summary.connections_opened = connections.size();
  summary.versions = to_counts(version_spans(records_, [](const Record&) { return true; }));
  summary.switch_over = switch_over_of(records_);

  if (const auto start = mark(kRolloutStart)) {
    const auto end = mark(kRolloutEnd);
    summary.rollout = Window{*start, end && *end >= *start ? *end : run_end(records_, info_)};
    summary.rollout_source = "marks";
  } else if (summary.switch_over) {
    // Without marks the transition is where the versions hand over, overlapping or not.
    const Window& handover = summary.switch_over->window;
    summary.rollout =
        Window{std::min(handover.start, handover.end), std::max(handover.start, handover.end)};
    summary.rollout_source = "switch-over";
  }

  std::vector<Offset> steady;
  std::vector<Offset> during;
  for (const Record& record : records_) {
    if (!is_short(record.kind) || record.error != ErrorClass::none) {
      continue;
    }
    const bool in_rollout = summary.rollout && summary.rollout->overlaps(record.start, record.end);
    (in_rollout ? during : steady).push_back(record.latency());
  }
  summary.steady = latency_stats(std::move(steady));
  summary.during_rollout = latency_stats(std::move(during));

  if (summary.rollout) {
    const Window rollout = *summary.rollout;
    for (const Record& record : records_) {
      const bool long_lived =
          record.kind == RequestKind::long_get || record.kind == RequestKind::stream;
      if (long_lived && record.start < rollout.start) {
        ++summary.long_lived_before_rollout.requests;
        summary.long_lived_before_rollout.failed += record.failed() ? 1U : 0U;
      }
    }
    summary.versions_after_rollout = to_counts(version_spans(
        records_, [&rollout](const Record& record) { return record.start > rollout.end; }));
  }
  return summary;
}

std::optional<double> zero_failure_upper_bound_95(std::size_t requests) {
  if (requests == 0) {
    return std::nullopt;
  }
  return 1.0 - std::pow(0.05, 1.0 / static_cast<double>(requests));
}

bool Report::failed() const {
  return std::any_of(records_.begin(), records_.end(),
                     [](const Record& record) { return record.failed(); });
}

std::vector<Record> Report::failures() const {
  std::vector<Record> failed;
  std::copy_if(records_.begin(), records_.end(), std::back_inserter(failed),
               [](const Record& record) { return record.failed(); });
  std::sort(failed.begin(), failed.end(),
            [](const Record& left, const Record& right) { return left.end < right.end; });
  return failed;
}

// Everything but the records.
json Report::head_json() const {
  json marks = json::array();
  for (const Mark& mark : marks_) {
    marks.push_back({{"name", mark.name}, {"at_us", mark.at.count()}});
  }
  return {{"probe",
           {{"url", info_.url},
            {"host_header", info_.host_header},
            {"started_at", info_.started_at},
            {"elapsed_us", info_.elapsed.count()}}},
          {"summary", summary_json(summary())},
          {"marks", std::move(marks)}};
}

nlohmann::json Report::to_json() const {
  json records = json::array();
  for (const Record& record : records_) {
    records.push_back(record_json(record));
  }
  auto document = head_json();
  document["records"] = std::move(records);
  return document;
}

void Report::write_json(std::ostream& out) const {
  const auto head = head_json();
  out << "{\n";
  for (const auto& [key, value] : head.items()) {
    out << json(key).dump() << ": " << value.dump(2) << ",\n";
  }
  out << "\"records\": [";
  const char* separator = "\n";
  for (const Record& record : records_) {
    out << separator << record_json(record).dump();
    separator = ",\n";
  }
  out << "\n]\n}\n";
}

Report Report::from_json(const nlohmann::json& in) {
  const json& probe = in.at("probe");
  RunInfo info{probe.at("url").get<std::string>(), probe.at("host_header").get<std::string>(),
               probe.at("started_at").get<std::string>(),
               Offset{probe.at("elapsed_us").get<std::int64_t>()}};
  std::vector<Mark> marks;
  for (const json& mark : in.at("marks")) {
    marks.push_back(
        {mark.at("name").get<std::string>(), Offset{mark.at("at_us").get<std::int64_t>()}});
  }
  RecordLog records;
  for (const json& record : in.at("records")) {
    records.push_back(record_from_json(record));
  }
  return {std::move(info), std::move(records), std::move(marks)};
}

std::string Report::summary_text() const {
  const Summary summary = this->summary();
  std::string out = fmt::format("probe {}{} for {:.1f} s (started {})\n", info_.url,
                                info_.host_header.empty() ? "" : " Host: " + info_.host_header,
                                to_seconds(run_end(records_, info_)), info_.started_at);
  out +=
      fmt::format("requests: {} total, {} failed{}\n", summary.requests, summary.failed,
                  summary.cancelled != 0 ? fmt::format(", {} cancelled", summary.cancelled) : "");
  std::string classes;
  for (const auto& [error, count] : summary.failures_by_class) {
    classes += fmt::format("{}{} {}", classes.empty() ? "" : ", ", to_string(error), count);
  }
  out += fmt::format("failures by class: {}\n", classes.empty() ? "none" : classes);
  std::string kinds;
  for (const auto& [kind, counts] : summary.by_kind) {
    kinds += fmt::format("{}{} {} ({} failed)", kinds.empty() ? "" : ", ", to_string(kind),
                         counts.requests, counts.failed);
  }
  out += fmt::format("by kind: {}\n", kinds.empty() ? "none" : kinds);
  out += fmt::format("versions: {}\n", format_versions(summary.versions));
  if (summary.switch_over) {
    const Window& window = summary.switch_over->window;
    out += fmt::format("switch-over {} -> {}: first {} at {:.3f} s, last {} at {:.3f} s ({})\n",
                       summary.switch_over->old_version, summary.switch_over->new_version,
                       summary.switch_over->new_version, to_seconds(window.start),
                       summary.switch_over->old_version, to_seconds(window.end),
                       window.end >= window.start
                           ? fmt::format("both served for {:.3f} s", to_seconds(window.length()))
                           : std::string("no overlap"));
  } else {
    out += "switch-over: none (one version answered)\n";
  }
  if (summary.rollout) {
    out += fmt::format("rollout window ({}): {:.3f} s .. {:.3f} s\n", summary.rollout_source,
                       to_seconds(summary.rollout->start), to_seconds(summary.rollout->end));
    out += fmt::format("long requests and streams started before it: {} ({} failed)\n",
                       summary.long_lived_before_rollout.requests,
                       summary.long_lived_before_rollout.failed);
    out += fmt::format("versions of requests started after it: {}\n",
                       format_versions(summary.versions_after_rollout));
  }
  out += fmt::format("latency of short requests, steady: {}\n", format_latency(summary.steady));
  out += fmt::format("latency of short requests, during rollout: {}\n",
                     format_latency(summary.during_rollout));
  out += fmt::format(
      "connections: {} opened, {} requests reused one, {} responses with Connection: close, "
      "{} closed by the server while idle\n",
      summary.connections_opened, summary.reused_requests, summary.server_closes,
      summary.stale_replacements);
  for (const auto& mark : marks_) {
    out += fmt::format("mark {:.3f} s: {}\n", to_seconds(mark.at), mark.name);
  }
  const std::vector<Record> failed = failures();
  constexpr std::size_t kShown = 20;
  for (std::size_t i = 0; i < failed.size() && i < kShown; ++i) {
    const Record& record = failed[i];
    out += fmt::format(
        "FAILED {:.3f} s..{:.3f} s {} #{} (request probe-{}, connection {}{}{}): {}{}{}\n",
        to_seconds(record.start), to_seconds(record.end), to_string(record.kind), record.worker,
        record.id, record.connection, record.connection_reused ? ", reused" : "",
        record.connection_served_by.empty() ? "" : ", pinned to " + record.connection_served_by,
        to_string(record.error), record.status != 0 ? fmt::format(" HTTP {}", record.status) : "",
        record.detail.empty() ? "" : ": " + record.detail);
  }
  if (failed.size() > kShown) {
    out += fmt::format("... and {} more failures (see the JSON report)\n", failed.size() - kShown);
  }
  return out;
}

}  // namespace deployapps::probe

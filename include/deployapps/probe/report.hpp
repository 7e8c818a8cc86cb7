// What the probe measured: one Record per request, the caller's marks, and the summary math.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "deployapps/probe/record.hpp"
#include "deployapps/probe/record_log.hpp"

namespace deployapps::probe {

// A named moment the caller marked, e.g. kRolloutStart.
struct Mark {
  std::string name;
  Offset at{0};
  bool operator==(const Mark&) const = default;
};

// The marks that delimit the rollout window for the latency comparison.
inline constexpr std::string_view kRolloutStart = "rollout-start";
inline constexpr std::string_view kRolloutEnd = "rollout-end";
// Recorded by the probe when it stops starting requests (duration over, stop or cancel).
inline constexpr std::string_view kProbeStopped = "probe-stopped";
// Recorded when the probe stops starting long requests and streams (stop_long_requests()).
inline constexpr std::string_view kLongRequestsStopped = "long-requests-stopped";

struct Window {
  Offset start{0};
  Offset end{0};
  [[nodiscard]] Offset length() const noexcept { return end - start; }
  // Closed-interval overlap with [from, to].
  [[nodiscard]] bool overlaps(Offset from, Offset to) const noexcept {
    return from <= end && to >= start;
  }
};

// Nearest-rank percentiles of the latency of successful short requests.
struct LatencyStats {
  std::size_t count = 0;
  Offset p50{0};
  Offset p99{0};
  Offset max{0};
};

struct VersionCount {
  std::string version;  // "" when a response carried no X-App-Version
  std::size_t responses = 0;
};

// From the first response of the newest version to the last response of the oldest one, over the
// short requests (they show where *new* requests are routed; long ones finish late by design).
// `end` before `start` means the versions never overlapped.
struct SwitchOver {
  std::string old_version;
  std::string new_version;
  Window window;
};

struct KindCounts {
  std::size_t requests = 0;
  std::size_t failed = 0;
};

struct Summary {
  std::size_t requests = 0;
  std::size_t failed = 0;
  std::size_t cancelled = 0;
  std::map<ErrorClass, std::size_t> failures_by_class;  // only classes that occurred
  std::map<RequestKind, KindCounts> by_kind;
  std::vector<VersionCount> versions;  // in order of first response
  std::optional<SwitchOver> switch_over;

  // The rollout window: the kRolloutStart..kRolloutEnd marks (a missing end means the end of the
  // run); without marks, the switch-over window when the versions overlapped.
  std::optional<Window> rollout;
  std::string rollout_source;  // "marks", "switch-over" or ""
  // Short requests overlapping the rollout window vs. all other short requests.
  LatencyStats steady;
  LatencyStats during_rollout;

  // Long requests and streams that started before the rollout window: they must all complete.
  KindCounts long_lived_before_rollout;
  // Versions that answered requests started after the rollout window (should be the new one only).
  std::vector<VersionCount> versions_after_rollout;

  std::size_t connections_opened = 0;
  std::size_t reused_requests = 0;
  std::size_t server_closes = 0;       // responses with Connection: close
  std::size_t stale_replacements = 0;  // kept-alive connections found closed before reuse
};

// The 95 % upper confidence bound on the failure rate that 0 failures in `requests` independent
// requests support: 1 - 0.05^(1/n), about 3/n for large n (the "rule of three"). nullopt for n = 0.
[[nodiscard]] std::optional<double> zero_failure_upper_bound_95(std::size_t requests);

// Computes `p` (0 < p <= 100) by nearest rank: the smallest value with at least p% of the values at
// or below it. Returns 0 for an empty input. Sorts `values`.
[[nodiscard]] Offset nearest_rank_percentile(std::vector<Offset>& values, double p);

struct RunInfo {
  std::string url;
  std::string host_header;
  std::string started_at;  // UTC, RFC 3339, wall clock at Offset 0
  Offset elapsed{0};       // until the last request ended
  bool operator==(const RunInfo&) const = default;
};

class Report {
 public:
  Report() = default;
  Report(RunInfo info, RecordLog records, std::vector<Mark> marks);
  Report(RunInfo info, const std::vector<Record>& records, std::vector<Mark> marks);

  [[nodiscard]] const RunInfo& info() const noexcept { return info_; }
  [[nodiscard]] const RecordLog& records() const noexcept { return records_; }
  [[nodiscard]] const std::vector<Mark>& marks() const noexcept { return marks_; }
  // Adds a moment someone else measured (e.g. the drain race's), for the summary and the chart.
  void add_mark(Mark mark) { marks_.push_back(std::move(mark)); }
  // First mark with that name.
  [[nodiscard]] std::optional<Offset> mark(std::string_view name) const;

  [[nodiscard]] Summary summary() const;
  // Any failed request (cancelled ones excluded): a deploy must not pass.
  [[nodiscard]] bool failed() const;
  [[nodiscard]] std::vector<Record> failures() const;

  // {"probe": RunInfo, "summary": ..., "marks": [...], "records": [...]}; from_json reads back
  // everything but the summary, which is derived. from_json throws nlohmann::json::exception or
  // std::invalid_argument on malformed input.
  [[nodiscard]] nlohmann::json to_json() const;
  [[nodiscard]] static Report from_json(const nlohmann::json& in);
  // The same document written record by record, a line each: a JSON tree of every record took
  // about 2 KB per record (tens of MB for a rollout) just to be dumped.
  void write_json(std::ostream& out) const;

  // For people: totals, failures by class, versions, switch-over, latency, the first failures.
  [[nodiscard]] std::string summary_text() const;

  // Writes the gnuplot script next to `path` (same name, .gp; kept for re-drawing) and runs
  // gnuplot to draw `path` (.png or .svg):
  // responses per second by version with failures marked, and each request's latency over time.
  // Throws ChartError; on failure `path` is not left half-written.
  void write_chart(const std::filesystem::path& path) const;

  bool operator==(const Report&) const = default;

 private:
  [[nodiscard]] nlohmann::json head_json() const;  // the document without its records

  RunInfo info_;
  RecordLog records_;
  std::vector<Mark> marks_;
};

// The gnuplot script write_chart runs, with the data inline (exposed for tests).
[[nodiscard]] std::string chart_script(const Report& report, const std::filesystem::path& output);

}  // namespace deployapps::probe

// The packed record log: every field comes back as it went in, and a record costs a fraction of
// an unpacked one (issue 16: a two-app rollout's deployer within 30 MB).
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "deployapps/probe/record_log.hpp"

namespace probe = deployapps::probe;
using probe::ErrorClass;
using probe::Offset;
using probe::RequestKind;

namespace {

// What the deployer's probe records in a rollout: two versions, a few pods, long pod names.
probe::Record typical(std::uint64_t id) {
  probe::Record record;
  record.id = id;
  record.kind = static_cast<RequestKind>(id % 5);
  record.worker = static_cast<int>(id % 4);
  record.connection = id / 3 + 1;
  record.connection_reused = id % 3 != 0;
  record.start = Offset{static_cast<std::int64_t>(id) * 1000};
  record.response = record.start + Offset{800};
  record.end = record.start + Offset{900};
  record.status = 200;
  record.version = id < 500 ? "v1" : "v2";
  record.served_by = "go-app-6d8f7b9c5d-" + std::to_string(id % 3) + "x9kq";
  record.connection_served_by = record.served_by;
  return record;
}

}  // namespace

TEST_CASE("record log: every field round-trips, absent ones too", "[probe][record-log]") {
  probe::Record full = typical(7);
  full.stale_connection_replaced = true;
  full.server_closed = true;
  full.stream_lines = 12;
  full.error = ErrorClass::truncated;
  full.detail = "stream ended after 12 of 15 lines";
  full.status = 503;
  full.connection_served_by = "go-app-old-pod";

  probe::Record bare;  // defaults: no response, no strings, no flags
  bare.id = 8;
  bare.error = ErrorClass::refused;
  bare.start = Offset{-5};  // before the probe's clock start: still kept as is

  probe::RecordLog log;
  log.push_back(full);
  log.push_back(bare);
  log.push_back(full);

  REQUIRE(log.size() == 3);
  CHECK(log[0] == full);
  CHECK(log[1] == bare);
  CHECK_FALSE(log[1].response);
  CHECK(log[2] == full);
  CHECK_THROWS_AS(static_cast<void>(log[3]), std::out_of_range);

  std::vector<probe::Record> copied(log.begin(), log.end());
  CHECK(copied == std::vector<probe::Record>{full, bare, full});
  CHECK(std::count_if(log.begin(), log.end(),
                      [](const probe::Record& record) { return record.failed(); }) == 3);
}

TEST_CASE("record log: equality is by records, not by string tables", "[probe][record-log]") {
  probe::Record a = typical(1);
  probe::Record b = typical(600);
  probe::RecordLog ab(std::vector<probe::Record>{a, b});
  probe::RecordLog ba_then_ab;  // interns b's strings first
  ba_then_ab.push_back(b);
  probe::RecordLog ab_again;
  ab_again.push_back(a);
  ab_again.push_back(b);
  CHECK(ab == ab_again);
  CHECK_FALSE(ab == ba_then_ab);
  ba_then_ab = probe::RecordLog(std::vector<probe::Record>{a, b});
  CHECK(ab == ba_then_ab);
  CHECK(probe::RecordLog() == probe::RecordLog());
  CHECK(probe::RecordLog().empty());
}

TEST_CASE("record log: a request costs at most 80 bytes, a third of an unpacked record",
          "[probe][record-log]") {
  constexpr std::size_t kRecords = 20'000;  // one app's probe over a rollout
  probe::RecordLog log;
  log.reserve(kRecords);
  for (std::uint64_t id = 1; id <= kRecords; ++id) {
    log.push_back(typical(id));
  }
  const double per_record = static_cast<double>(log.bytes()) / kRecords;
  // Unpacked: the struct plus two pod names on the heap (malloc rounds 30 bytes up to 48).
  const double unpacked = sizeof(probe::Record) + 2 * 48.0;
  CAPTURE(per_record, unpacked, sizeof(probe::Record));
  CHECK(per_record <= 80.0);
  CHECK(per_record * 3 <= unpacked);
  CHECK(log[kRecords - 1] == typical(kRecords));
}

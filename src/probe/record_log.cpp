#include "deployapps/probe/record_log.hpp"

#include <limits>
#include <stdexcept>

namespace deployapps::probe {
namespace {

constexpr std::int64_t kNoResponse = std::numeric_limits<std::int64_t>::min();
constexpr std::uint8_t kReused = 1U;
constexpr std::uint8_t kStaleReplaced = 2U;
constexpr std::uint8_t kServerClosed = 4U;

}  // namespace

RecordLog::RecordLog(const std::vector<Record>& records) {
  packed_.reserve(records.size());
  for (const Record& record : records) {
    push_back(record);
  }
}

std::uint32_t RecordLog::intern(std::string_view text) {
  if (text.empty()) {
    return 0;
  }
  if (strings_.empty()) {
    strings_.emplace_back();
  }
  if (const auto found = index_.find(text); found != index_.end()) {
    return found->second;
  }
  if (strings_.size() > std::numeric_limits<std::uint32_t>::max()) {
    throw std::length_error("probe record log: too many distinct strings");
  }
  const auto index = static_cast<std::uint32_t>(strings_.size());
  strings_.emplace_back(text);
  index_.emplace(strings_.back(), index);
  return index;
}

void RecordLog::push_back(const Record& record) {
  Packed packed;
  packed.id = record.id;
  packed.connection = record.connection;
  packed.start_us = record.start.count();
  packed.response_us = record.response ? record.response->count() : kNoResponse;
  packed.end_us = record.end.count();
  packed.detail = intern(record.detail);
  packed.version = intern(record.version);
  packed.served_by = intern(record.served_by);
  packed.connection_served_by = intern(record.connection_served_by);
  packed.worker = record.worker;
  packed.status = record.status;
  packed.stream_lines = record.stream_lines;
  packed.kind = static_cast<std::uint8_t>(record.kind);
  packed.error = static_cast<std::uint8_t>(record.error);
  packed.flags =
      static_cast<std::uint8_t>((record.connection_reused ? kReused : 0U) |
                                (record.stale_connection_replaced ? kStaleReplaced : 0U) |
                                (record.server_closed ? kServerClosed : 0U));
  packed_.push_back(packed);
}

Record RecordLog::operator[](std::size_t index) const {
  const Packed& packed = packed_.at(index);
  const auto text = [this](std::uint32_t at) { return at == 0 ? std::string() : strings_[at]; };
  Record record;
  record.id = packed.id;
  record.kind = static_cast<RequestKind>(packed.kind);
  record.worker = packed.worker;
  record.connection = packed.connection;
  record.connection_reused = (packed.flags & kReused) != 0;
  record.stale_connection_replaced = (packed.flags & kStaleReplaced) != 0;
  record.start = Offset{packed.start_us};
  if (packed.response_us != kNoResponse) {
    record.response = Offset{packed.response_us};
  }
  record.end = Offset{packed.end_us};
  record.status = packed.status;
  record.error = static_cast<ErrorClass>(packed.error);
  record.detail = text(packed.detail);
  record.version = text(packed.version);
  record.served_by = text(packed.served_by);
  record.connection_served_by = text(packed.connection_served_by);
  record.server_closed = (packed.flags & kServerClosed) != 0;
  record.stream_lines = packed.stream_lines;
  return record;
}

std::size_t RecordLog::bytes() const noexcept {
  std::size_t total = packed_.capacity() * sizeof(Packed);
  for (const std::string& text : strings_) {
    total += sizeof(std::string) + text.capacity();
  }
  return total;
}

bool RecordLog::operator==(const RecordLog& other) const {
  if (size() != other.size()) {
    return false;
  }
  for (std::size_t i = 0; i < size(); ++i) {
    if ((*this)[i] != other[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace deployapps::probe

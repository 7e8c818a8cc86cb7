// Every request's Record, stored packed (issue 16): the deployer keeps one probe per app for the
// whole rollout, tens of thousands of requests. A Record is about 220 bytes plus its pod names on
// the heap; packed with its strings interned it is 72 bytes, and nothing is lost: operator[]
// gives back the same Record. Interning pays because a rollout sees a handful of versions and pods.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "deployapps/probe/record.hpp"

namespace deployapps::probe {

class RecordLog {
 public:
  // Yields Records by value (they are rebuilt from the packed form): enough for range-for and the
  // standard algorithms that take input iterators (they advance with prefix ++ only).
  class const_iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Record;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Record;

    const_iterator() = default;
    const_iterator(const RecordLog* log, std::size_t index) : log_(log), index_(index) {}
    Record operator*() const { return (*log_)[index_]; }
    const_iterator& operator++() {
      ++index_;
      return *this;
    }
    bool operator==(const const_iterator& other) const noexcept { return index_ == other.index_; }

   private:
    const RecordLog* log_ = nullptr;
    std::size_t index_ = 0;
  };

  RecordLog() = default;
  explicit RecordLog(const std::vector<Record>& records);

  void push_back(const Record& record);
  void reserve(std::size_t records) { packed_.reserve(records); }

  [[nodiscard]] std::size_t size() const noexcept { return packed_.size(); }
  [[nodiscard]] bool empty() const noexcept { return packed_.empty(); }
  [[nodiscard]] Record operator[](std::size_t index) const;
  [[nodiscard]] const_iterator begin() const noexcept { return {this, 0}; }
  [[nodiscard]] const_iterator end() const noexcept { return {this, packed_.size()}; }

  // Bytes held, for the memory benchmark's breakdown.
  [[nodiscard]] std::size_t bytes() const noexcept;

  // Equal when they hold the same Records in the same order (the string tables may differ).
  bool operator==(const RecordLog& other) const;

 private:
  struct Packed {
    std::uint64_t id = 0;
    std::uint64_t connection = 0;
    std::int64_t start_us = 0;
    std::int64_t response_us = 0;  // kNoResponse when no headers arrived
    std::int64_t end_us = 0;
    std::uint32_t detail = 0;  // indexes into strings_
    std::uint32_t version = 0;
    std::uint32_t served_by = 0;
    std::uint32_t connection_served_by = 0;
    std::int32_t worker = 0;
    std::int32_t status = 0;
    std::uint32_t stream_lines = 0;
    std::uint8_t kind = 0;
    std::uint8_t error = 0;
    std::uint8_t flags = 0;  // kReused | kStaleReplaced | kServerClosed
  };

  std::uint32_t intern(std::string_view text);

  std::vector<Packed> packed_;
  std::vector<std::string> strings_;                         // index 0 is ""
  std::map<std::string, std::uint32_t, std::less<>> index_;  // strings_ by text
};

}  // namespace deployapps::probe

// Ctrl-C handling: SIGINT and SIGTERM are counted instead of killing the process, so that a
// command can stop cleanly (the first one) or give up waiting (the second one).
#pragma once

#include <atomic>

namespace deployapps {

class InterruptCounter {
 public:
  // Installs the handlers; the previous ones come back when this object is destroyed. Only one
  // counter may exist at a time (signal dispositions are process-wide).
  InterruptCounter();
  ~InterruptCounter();
  InterruptCounter(const InterruptCounter&) = delete;
  InterruptCounter& operator=(const InterruptCounter&) = delete;
  InterruptCounter(InterruptCounter&&) = delete;
  InterruptCounter& operator=(InterruptCounter&&) = delete;

  // How many SIGINT/SIGTERM arrived since this object was created.
  // A member, not static: the count only means something while the handlers are installed.
  [[nodiscard]] const std::atomic<int>& count() const noexcept;
};

}  // namespace deployapps

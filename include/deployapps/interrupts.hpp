// Ctrl-C handling: SIGINT, SIGTERM and SIGHUP are counted instead of killing the process, so
// that a command can stop cleanly (the first one) or give up waiting (a second Ctrl-C). A command
// may also name the interrupt that ends the process at once, with exit code 130 and a message
// that says what is left: the first one while nothing has changed yet, the second one once there
// is a rollback to wait for.
// Past the first, only a Ctrl-C (SIGINT) ends the process: SIGTERM and SIGHUP come from
// supervisors, which ask for the clean stop the first interrupt began, not for it to be dropped.
// GitHub cancels a job with SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that: the
// SIGTERM must leave the rollback running.
#pragma once

#include <atomic>
#include <string_view>

namespace deployapps {

inline constexpr int kInterruptedExitCode = 130;  // 128 + SIGINT, as shells report it

class InterruptCounter {
 public:
  // Installs the handlers; the previous ones come back when this object is destroyed. Only one
  // counter may exist at a time (signal dispositions are process-wide). Counts only, until
  // exit_at() says otherwise.
  InterruptCounter();
  ~InterruptCounter();
  InterruptCounter(const InterruptCounter&) = delete;
  InterruptCounter& operator=(const InterruptCounter&) = delete;
  InterruptCounter(InterruptCounter&&) = delete;
  InterruptCounter& operator=(InterruptCounter&&) = delete;

  // From now on, the `nth` interrupt since this object was created (or any later one; past the
  // first, only a Ctrl-C) ends the process at once, exit 130, after writing `message` to stderr and
  // `document` (unless empty) to stdout. 0: none does. The texts are copied (a signal handler
  // cannot allocate); longer than 8 KiB, they are cut. A member, not static: it only means
  // something while the handlers are installed.
  void exit_at(int nth, std::string_view message, std::string_view document = {});

  // How many SIGINT/SIGTERM/SIGHUP arrived since this object was created.
  [[nodiscard]] const std::atomic<int>& count() const noexcept;
};

}  // namespace deployapps

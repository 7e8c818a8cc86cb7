// The client-side traffic probe: a mixed HTTP load that records every request, to prove (or
// disprove) that a rollout interrupts nothing.
//
//   probe::Probe probe(config);
//   probe.start();                      // traffic runs on the probe's own thread
//   probe.mark(probe::kRolloutStart);   // ... start the rollout ...
//   if (probe.failure_count() > 0) { /* abort early */ }
//   probe.mark(probe::kRolloutEnd);
//   probe.stop_and_wait();              // stop starting requests, drain the ones in flight
//   const probe::Report report = probe.report();
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "deployapps/probe/config.hpp"
#include "deployapps/probe/report.hpp"

namespace deployapps::probe {

class Probe {
 public:
  // Throws ConfigError when the configuration is invalid.
  explicit Probe(Config config);
  // Cancels whatever is still running and joins the thread.
  ~Probe();
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;
  Probe(Probe&&) = delete;
  Probe& operator=(Probe&&) = delete;

  // Resolves the host (bounded by connect_timeout) and starts the traffic on a new thread.
  // Throws Error if the host does not resolve or the probe was started before.
  void start();

  // Records a named moment (thread-safe), e.g. kRolloutStart / kRolloutEnd.
  void mark(std::string_view name);

  // Stops starting long requests and streams; short ones go on, and those in flight finish.
  // A deployer calls it once every old pod is deleted: a long request started later can only
  // reach the new version, and would hold the final stop_and_wait() for up to its whole length.
  // Thread-safe, non-blocking; marks kLongRequestsStopped.
  void stop_long_requests();
  // Stops starting requests; requests in flight finish (each is bounded by its own deadline).
  // Non-blocking and thread-safe; the duration running out does the same.
  void request_stop();
  // Blocks until the duration ran out or request_stop() was called, and every request in flight
  // has ended. Not from the probe's own thread.
  void wait();
  void stop_and_wait() {
    request_stop();
    wait();
  }
  // Ends every request in flight at once (recorded as ErrorClass::cancelled), e.g. on a second
  // Ctrl-C. Thread-safe, non-blocking; follow with wait().
  void cancel();

  // Live counters, cheap and thread-safe: a deployer polls failure_count() to abort a rollout
  // early.
  [[nodiscard]] std::size_t failure_count() const noexcept;
  [[nodiscard]] std::size_t completed_count() const noexcept;
  [[nodiscard]] bool running() const noexcept;

  // A snapshot of everything recorded so far (thread-safe; complete after wait()).
  [[nodiscard]] Report report() const;
  // The whole report, its records moved out rather than copied (a rollout records tens of
  // thousands): after wait(), once. The probe holds no records afterwards.
  [[nodiscard]] Report take_report();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// What a request of `kind` sends, e.g. "POST /?sleep=0" (the URL's path prefix included), for
// reports. Throws ConfigError when the URL is invalid.
[[nodiscard]] std::string request_line(const Config& config, RequestKind kind);

}  // namespace deployapps::probe

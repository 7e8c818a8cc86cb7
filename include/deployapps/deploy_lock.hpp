// One deploy at a time per app: a coordination.k8s.io Lease, "<app>-deploy-lock" in the app's
// namespace, held from before the first apply to the end of the rollout (or rollback).
//
// The judge (judge_lease) is pure; DeployLocks is the shell that reads and writes the Leases and
// renews them from a thread of its own. A second run for the same app refuses at once, naming the
// holder, or with --wait-for-lock waits for it with progress. A holder that stopped renewing (a
// run killed with SIGKILL, a lost machine) frees its lock after kLockLeaseDuration, and the next
// run says whose lock it took over.
//
// client-go's leaderelection package does this for Go controllers; there is no C++ equivalent, so
// the few rules it follows are written here: optimistic concurrency on resourceVersion, expiry by
// renewTime + leaseDurationSeconds, release by clearing holderIdentity.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "deployapps/apply.hpp"
#include "deployapps/kube_client.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

class Console;

// What a Lease says about the lock at a given time.
enum class LockState {
  kAbsent,    // no Lease yet: create it
  kReleased,  // no holder: take it
  kExpired,   // its holder stopped renewing it: take it over
  kHeld,      // another run holds it
  kOurs,      // this run holds it
};

struct LockView {
  LockState state = LockState::kAbsent;
  std::string holder;  // holderIdentity, when there is one
  // Since its last renewal, and until it expires (negative once expired); unset without a
  // renewTime.
  std::optional<Duration> since_renewal;
  std::optional<Duration> expires_in;
};

// Judges a Lease (nullopt: none exists) for the run named `identity` at wall time `now`.
[[nodiscard]] LockView judge_lease(const std::optional<nlohmann::json>& lease,
                                   std::string_view identity, WallTime now);

// The Lease as a holder writes it when it takes or renews the lock (`previous` is the Lease read
// before, for its resourceVersion, acquireTime and transitions; nullopt to create one).
[[nodiscard]] nlohmann::json held_lease(const std::string& name, const std::string& namespace_name,
                                        const std::string& identity, WallTime now,
                                        const std::optional<nlohmann::json>& previous);
// The Lease as its holder leaves it at the end: no holder, so the next run takes it at once.
[[nodiscard]] nlohmann::json released_lease(const nlohmann::json& held, WallTime now);

// Kubernetes MicroTime: "2026-12-06T04:20:01.123456Z".
[[nodiscard]] std::string format_micro_time(WallTime when);

// The name this run holds locks under: "user@host pid N #xxxx" (a random suffix, so that two runs
// never share one, even in containers with the same hostname and pid).
[[nodiscard]] std::string lock_identity(std::string_view user, std::string_view host, long pid,
                                        std::uint32_t nonce);

// The Lease's name for an app.
[[nodiscard]] std::string lock_name(std::string_view app);

struct LockTarget {
  std::string app;
  std::string namespace_name;
  // The app's Namespace object, applied first when the Lease cannot be created because the
  // namespace does not exist yet (a first deploy).
  std::optional<PlannedObject> namespace_object;
};

// How taking one app's lock went, for the report.
struct LockOutcome {
  std::string app;
  std::string lease;           // "NAMESPACE/NAME"
  std::string took_over_from;  // the holder whose expired lock was taken, else ""
  std::string waited_for;      // the holder it waited for, else ""
  Duration waited{};
  bool lost = false;  // a renewal found another holder
};

class DeployLocks {
 public:
  DeployLocks(const RestConfig& config, std::string identity, Console& console);
  // Stops renewing and releases every lock still held (best effort, kLockReleaseMinimum).
  ~DeployLocks();
  DeployLocks(const DeployLocks&) = delete;
  DeployLocks& operator=(const DeployLocks&) = delete;
  DeployLocks(DeployLocks&&) = delete;
  DeployLocks& operator=(DeployLocks&&) = delete;

  // Takes every target's lock, in (namespace, app) order so that two runs of overlapping apps
  // cannot wait for each other. A lock held by another run: with `wait`, waits for it until
  // `deadline`; without, throws DeployFailed naming the holder. Any failure releases the locks
  // already taken and throws: nothing was applied. Starts renewing them.
  void acquire(std::vector<LockTarget> targets, bool wait, Deadline deadline);
  // Stops renewing and releases every lock by `deadline`, or within kLockReleaseMinimum when it
  // is nearer (idempotent); outcomes() still lists them. A lock it cannot release expires
  // kLockLeaseDuration after its last renewal.
  void release(Deadline deadline);

  [[nodiscard]] const std::string& identity() const noexcept { return identity_; }
  // One per target, once acquire() returned; `lost` is up to date.
  [[nodiscard]] std::vector<LockOutcome> outcomes() const;

 private:
  struct Held {
    LockTarget target;
    std::string path;
    nlohmann::json lease;  // as last written
    Clock::time_point renewed_at;
    LockOutcome outcome;
    bool released = false;
  };

  Held take(const LockTarget& target, bool wait, Deadline deadline);
  void create_namespace(const LockTarget& target, Deadline deadline);
  void renew_loop();
  void renew(Held& held, Deadline deadline);

  KubeClient client_;  // guarded by mutex_
  std::string identity_;
  Console& console_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::vector<Held> held_;
  std::thread renewer_;
};

}  // namespace deployapps

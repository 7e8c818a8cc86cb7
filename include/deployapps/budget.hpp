// Every timeout of a deploy, in one place, and the budget that --timeout gives a deploy.
//
// The timeline of one `deploy-apps` run:
//   git describe                kGitTimeout
//   local cluster status/start  kLocalClusterStatusTimeout, then --cluster-timeout
//   image builds and pushes     kBuildTimeout (nothing in the cluster changes meanwhile)
//   deploy locks                taken at once, or with --wait-for-lock within --timeout
//   plan, apply, rollout,       --timeout, as a Budget: every request, watch, drain wait and
//   drain, rollback             rollback below it ends by Budget::overall
//   releasing the deploy locks  what is left of Budget::overall, at least kLockReleaseMinimum
#pragma once

#include <algorithm>
#include <chrono>

#include "deployapps/time.hpp"

namespace deployapps {

// `git describe` and `git status`, for the version tag.
inline constexpr Duration kGitTimeout = std::chrono::seconds(10);
// `scripts/cluster status` and `kubeconfig`: a few kubectl calls.
inline constexpr Duration kLocalClusterStatusTimeout = std::chrono::seconds(60);
// Image builds get their own deadline: a cold build is slow, and nothing changes meanwhile.
inline constexpr Duration kBuildTimeout = std::chrono::minutes(20);
// The longest a credential plugin may run (it may wait for a browser login).
inline constexpr Duration kExecPluginTimeout = std::chrono::minutes(2);
// One API request (a retry gets a new one); the budget's deadline cuts it shorter.
inline constexpr Duration kDefaultRequestTimeout = std::chrono::seconds(30);
// Closing a TLS connection politely before dropping it.
inline constexpr Duration kConnectionShutdownTimeout = std::chrono::milliseconds(500);
// Server-side watch length; the watch is resumed from its last resourceVersion after it. Short,
// so that silence is news: the server ends every watch after this, events or not.
inline constexpr int kWatchTimeoutSeconds = 30;
// No byte for this long on a watch (or no progress connecting to it) means the connection is
// dead: a healthy server would have ended the watch by now. Within 45 s, as issue 18 asks.
inline constexpr Duration kWatchIdleTimeout = std::chrono::seconds(kWatchTimeoutSeconds + 15);
// How long the in-flight checks watch traffic after a change that replaces no pod (a Service,
// Ingress or NetworkPolicy alone): the ingress controller and kube-proxy act on it within
// seconds (Traefik batches provider updates for 2 s).
inline constexpr Duration kObjectChangeSettle = std::chrono::seconds(5);
// The deploy lock (deploy_lock.hpp): a Lease nobody renewed for kLockLeaseDuration is free. The
// holder renews it three times per duration, so two lost renewals in a row still keep it; a run
// killed with SIGKILL holds it for at most this long. client-go's leader election uses 15 s too.
inline constexpr Duration kLockLeaseDuration = std::chrono::seconds(15);
inline constexpr Duration kLockRenewInterval = kLockLeaseDuration / 3;
// How often a run that waits for a lock looks at it again, and says so.
inline constexpr Duration kLockPollInterval = std::chrono::seconds(2);
inline constexpr Duration kLockProgressInterval = std::chrono::seconds(10);
// One renewal request: short, so that the end of a run never waits long for the renewer, and a
// failed one leaves time for two more before the lease expires.
inline constexpr Duration kLockRenewRequestTimeout = std::chrono::seconds(2);
// Releasing the locks at the end gets what is left of --timeout, but at least this long: a lock
// left behind only costs the next run kLockLeaseDuration, so a stalled API is not waited for.
inline constexpr Duration kLockReleaseMinimum = std::chrono::seconds(1);
// The real-traffic check (ingress_check.hpp) reads the ingress controller's counters this often,
// each reading bounded by the timeout (a local endpoint answers in milliseconds).
inline constexpr Duration kIngressScrapeInterval = std::chrono::seconds(1);
inline constexpr Duration kIngressScrapeTimeout = std::chrono::seconds(2);
// The drain-race timeline (drain_timeline.hpp) asks the ingress's API this often which pods it
// routes to, while an old pod is still listed there; its moment "left the ingress" is up to one
// interval late.
inline constexpr Duration kDrainIngressPollInterval = std::chrono::milliseconds(200);
inline constexpr Duration kDrainIngressPollTimeout = std::chrono::seconds(1);
// A deleted pod's log is followed from this far back (a watch event may arrive late), and a
// silence this long ends the reading (a drain without traffic logs little until it ends).
inline constexpr Duration kDrainLogLookBack = std::chrono::seconds(5);
inline constexpr Duration kDrainLogIdle = std::chrono::minutes(5);
// After the old pods exited, their log readers get this long to see the last lines; a pod whose
// exit the recorder has not seen within kDrainExitSeen is still draining (a Ctrl-C, a timeout),
// and its log is not waited for.
inline constexpr Duration kDrainLogFinish = std::chrono::seconds(3);
inline constexpr Duration kDrainExitSeen = std::chrono::milliseconds(500);
// Old pods get their own termination grace period plus this to report an exit code.
inline constexpr Duration kDrainMargin = std::chrono::seconds(15);

// The part of --timeout kept for a rollback: a third, at least 5 s and at most 2 min. The
// rollout (and the old pods' drain) must be judged by then; the rollback ends by the overall
// deadline, so a failed deploy exits within --timeout too.
inline constexpr Duration kRollbackReserveMin = std::chrono::seconds(5);
inline constexpr Duration kRollbackReserveMax = std::chrono::minutes(2);

[[nodiscard]] constexpr Duration rollback_reserve(Duration timeout) {
  return std::clamp<Duration>(timeout / 3, kRollbackReserveMin, kRollbackReserveMax);
}

// --timeout, started when the first change may be made (after the builds).
struct Budget {
  Deadline rollout;  // waiting for the rollout and the drain stops here
  Deadline overall;  // everything, the rollback included, ends here

  static Budget starting_now(Duration timeout) {
    const auto now = Clock::now();
    // A timeout shorter than the reserve leaves half of it to the rollout.
    const auto reserve = std::min(rollback_reserve(timeout), timeout / 2);
    return {Deadline::at(now + timeout - reserve), Deadline::at(now + timeout)};
  }
  // No bound at all (for tests and tools that wait as long as it takes).
  static Budget unbounded() { return {Deadline::never(), Deadline::never()}; }
};

}  // namespace deployapps

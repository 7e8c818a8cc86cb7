#include "deployapps/deploy_lock.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <algorithm>
#include <ctime>
#include <tuple>

#include "deployapps/budget.hpp"
#include "deployapps/console.hpp"
#include "deployapps/encoding.hpp"
#include "deployapps/errors.hpp"

namespace deployapps {
using nlohmann::json;

namespace {

constexpr std::string_view kLeaseApiVersion = "coordination.k8s.io/v1";
constexpr int kLeaseDurationSeconds =
    static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(kLockLeaseDuration).count());

std::string lease_path(const std::string& namespace_name, const std::string& name = "") {
  auto path = fmt::format("/apis/coordination.k8s.io/v1/namespaces/{}/leases", namespace_name);
  if (!name.empty()) {
    path += "/" + name;
  }
  return path;
}

std::string describe(const LockView& view) {
  std::string text = view.holder;
  if (view.since_renewal) {
    text += fmt::format(", renewed {} ago", format_duration(*view.since_renewal));
  }
  if (view.expires_in && view.expires_in->count() > 0) {
    text += fmt::format(", free in {} at most", format_duration(*view.expires_in));
  }
  return text;
}

bool is_conflict(const ApiError& error) {
  return error.http_status() == 409;
}

}  // namespace

std::string format_micro_time(WallTime when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(when.time_since_epoch()).count() %
      1'000'000;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, micros);
}

std::string lock_identity(std::string_view user, std::string_view host, long pid,
                          std::uint32_t nonce) {
  return fmt::format("{}@{} pid {} #{:04x}", user.empty() ? "unknown" : user,
                     host.empty() ? "unknown" : host, pid, nonce & 0xffffU);
}

std::string lock_name(std::string_view app) {
  return fmt::format("{}-deploy-lock", app);
}

LockView judge_lease(const std::optional<json>& lease, std::string_view identity, WallTime now) {
  LockView view;
  if (!lease) {
    return view;
  }
  const auto spec = lease->value("spec", json::object());
  view.holder = spec.value("holderIdentity", "");
  if (view.holder.empty()) {
    view.state = LockState::kReleased;
    return view;
  }
  if (view.holder == identity) {
    view.state = LockState::kOurs;
    return view;
  }
  const int duration_seconds = spec.value("leaseDurationSeconds", 0);
  const std::string renewed = spec.value("renewTime", spec.value("acquireTime", ""));
  if (renewed.empty() || duration_seconds <= 0) {
    // A holder that never said when it renewed, or for how long: nothing makes it expire, so it
    // is held until its writer clears it (a lock cannot be judged free on a guess).
    view.state = LockState::kHeld;
    return view;
  }
  WallTime renewed_at;
  try {
    renewed_at = parse_rfc3339(renewed);
  } catch (const ConfigError&) {
    view.state = LockState::kHeld;
    return view;
  }
  view.since_renewal = std::chrono::duration_cast<Duration>(now - renewed_at);
  view.expires_in = std::chrono::duration_cast<Duration>(
      renewed_at + std::chrono::seconds(duration_seconds) - now);
  view.state = view.expires_in->count() < 0 ? LockState::kExpired : LockState::kHeld;
  return view;
}

json held_lease(const std::string& name, const std::string& namespace_name,
                const std::string& identity, WallTime now, const std::optional<json>& previous) {
  json lease = previous.value_or(json::object());
  lease["apiVersion"] = kLeaseApiVersion;
  lease["kind"] = "Lease";
  auto& metadata = lease["metadata"];
  metadata["name"] = name;
  metadata["namespace"] = namespace_name;
  metadata["labels"]["app.kubernetes.io/managed-by"] = "deploy-apps";
  auto& spec = lease["spec"];
  if (!spec.is_object()) {
    spec = json::object();
  }
  const bool taking = spec.value("holderIdentity", "") != identity;
  if (taking) {
    spec["acquireTime"] = format_micro_time(now);
    if (previous) {
      spec["leaseTransitions"] = spec.value("leaseTransitions", 0) + 1;
    } else {
      spec["leaseTransitions"] = 0;
    }
  }
  spec["holderIdentity"] = identity;
  spec["leaseDurationSeconds"] = kLeaseDurationSeconds;
  spec["renewTime"] = format_micro_time(now);
  return lease;
}

json released_lease(const json& held, WallTime now) {
  json lease = held;
  auto& spec = lease["spec"];
  spec.erase("holderIdentity");
  spec["renewTime"] = format_micro_time(now);
  return lease;
}

DeployLocks::DeployLocks(const RestConfig& config, std::string identity, Console& console)
    : client_(config), identity_(std::move(identity)), console_(console) {}

DeployLocks::~DeployLocks() {
  try {
    release(Deadline::after(kLockReleaseMinimum));
  } catch (const std::exception& error) {
    spdlog::warn("releasing the deploy locks: {}", error.what());
  }
}

std::vector<LockOutcome> DeployLocks::outcomes() const {
  const std::lock_guard lock(mutex_);
  std::vector<LockOutcome> outcomes;
  outcomes.reserve(held_.size());
  for (const auto& held : held_) {
    outcomes.push_back(held.outcome);
  }
  return outcomes;
}

void DeployLocks::acquire(std::vector<LockTarget> targets, bool wait, Deadline deadline) {
  std::sort(targets.begin(), targets.end(), [](const LockTarget& a, const LockTarget& b) {
    return std::tie(a.namespace_name, a.app) < std::tie(b.namespace_name, b.app);
  });
  {
    const std::lock_guard lock(mutex_);
    stopping_ = false;
  }
  // Renewal starts with the first lock: a run that then waits for another app's lock must not
  // lose the ones it has.
  renewer_ = std::thread([this] { renew_loop(); });
  try {
    for (const auto& target : targets) {
      auto held = take(target, wait, deadline);
      const std::lock_guard lock(mutex_);
      held_.push_back(std::move(held));
    }
  } catch (...) {
    release(deadline);
    throw;
  }
}

DeployLocks::Held DeployLocks::take(const LockTarget& target, bool wait, Deadline deadline) {
  const auto name = lock_name(target.app);
  const auto path = lease_path(target.namespace_name, name);
  const auto lease_text = fmt::format("{}/{}", target.namespace_name, name);
  Held held;
  held.target = target;
  held.path = path;
  held.outcome.app = target.app;
  held.outcome.lease = lease_text;
  const auto started = Clock::now();
  auto last_progress = Clock::time_point{};
  // Expiry is judged on renewTime against this machine's clock. A holder whose clock runs behind
  // would look expired early, so a Lease is also judged by what this run saw: unchanged (same
  // resourceVersion) for a whole lease duration plus a poll on the local monotonic clock means
  // its holder stopped renewing, whatever the clocks say.
  std::string observed_version;
  auto observed_since = Clock::now();
  const auto fail = [&](const std::string& why) {
    throw DeployFailed(fmt::format("{}: the deploy lock (Lease {}) {}; nothing was applied",
                                   target.app, lease_text, why));
  };
  for (;;) {
    std::optional<json> lease;
    try {
      const std::lock_guard lock(mutex_);
      lease = client_.get_if_exists(path, deadline);
    } catch (const Error& error) {
      fail(fmt::format("could not be read: {}", error.what()));
    }
    auto view = judge_lease(lease, identity_, std::chrono::system_clock::now());
    if (lease) {
      const auto version = lease->value("metadata", json::object()).value("resourceVersion", "");
      if (version != observed_version) {
        observed_version = version;
        observed_since = Clock::now();
      } else if (view.state == LockState::kHeld &&
                 Clock::now() - observed_since > kLockLeaseDuration + kLockPollInterval) {
        view.state = LockState::kExpired;
      }
    }
    if (view.state == LockState::kHeld) {
      if (!wait) {
        fail(
            fmt::format("is held by {}: another deploy of {} is in progress (or was killed: "
                        "its lock expires {} after its last renewal). Retry later, or give "
                        "--wait-for-lock to wait for it",
                        describe(view), target.app, format_duration(kLockLeaseDuration)));
      }
      held.outcome.waited_for = view.holder;
      if (Clock::now() - last_progress >= kLockProgressInterval) {
        console_.line(target.app, fmt::format("waiting for the deploy lock {}, held by {}",
                                              lease_text, describe(view)));
        last_progress = Clock::now();
      }
      console_.progress(target.app, "waiting for the deploy lock held by " + view.holder);
      std::this_thread::sleep_for(std::min(kLockPollInterval, deadline.remaining()));
      if (deadline.expired()) {
        fail(fmt::format(
            "could not be taken within --timeout (waited {}): still held by {}",
            format_duration(std::chrono::duration_cast<Duration>(Clock::now() - started)),
            describe(view)));
      }
      continue;
    }
    const auto now = std::chrono::system_clock::now();
    try {
      const std::lock_guard lock(mutex_);
      if (view.state == LockState::kAbsent) {
        ApiRequest create;
        create.method = "POST";
        create.path = lease_path(target.namespace_name);
        create.body = held_lease(name, target.namespace_name, identity_, now, std::nullopt);
        create.idempotent = false;
        create.description = "create the deploy lock " + lease_text;
        try {
          held.lease = client_.request(create, deadline).body;
        } catch (const ApiError& error) {
          // A first deploy: the Lease lives in the app's namespace, which does not exist yet.
          if (error.http_status() != 404 || !target.namespace_object) {
            throw;
          }
          create_namespace(target, deadline);
          held.lease = client_.request(create, deadline).body;
        }
      } else {
        ApiRequest update;
        update.method = "PUT";
        update.path = path;
        update.body = held_lease(name, target.namespace_name, identity_, now, lease);
        update.description = "take the deploy lock " + lease_text;
        held.lease = client_.request(update, deadline).body;
      }
    } catch (const ApiError& error) {
      if (is_conflict(error)) {  // another run wrote it first: judge it again
        continue;
      }
      fail(fmt::format("could not be taken: {}", error.what()));
    } catch (const Error& error) {
      fail(fmt::format("could not be taken: {}", error.what()));
    }
    console_.clear_progress(target.app);
    held.renewed_at = Clock::now();
    held.outcome.waited = std::chrono::duration_cast<Duration>(Clock::now() - started);
    if (view.state == LockState::kExpired) {
      held.outcome.took_over_from = view.holder;
      console_.line(target.app,
                    fmt::format("took over the deploy lock {} as {} from {}: it stopped "
                                "renewing it (renewed {} ago)",
                                lease_text, identity_, view.holder,
                                view.since_renewal ? format_duration(*view.since_renewal)
                                                   : std::string("at an unknown time")));
    } else if (!held.outcome.waited_for.empty()) {
      console_.line(
          target.app,
          fmt::format("took the deploy lock {} as {} after waiting {} for {}", lease_text,
                      identity_, format_duration(held.outcome.waited), held.outcome.waited_for));
    } else {
      console_.line(target.app,
                    fmt::format("took the deploy lock {} as {}", lease_text, identity_));
    }
    return held;
  }
}

void DeployLocks::create_namespace(const LockTarget& target, Deadline deadline) {
  const auto& object = *target.namespace_object;
  // The same server-side apply as the deploy's own (same manager, same object), only earlier; no
  // GET first, as the deployer's ClusterRole may only patch namespaces.
  client_.request(apply_request(object.path, object.object, kFieldManager, false, true), deadline);
  console_.line(target.app,
                fmt::format("{} applied first, to hold the deploy lock", object.display()));
}

void DeployLocks::renew_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, kLockRenewInterval, [this] { return stopping_; });
    if (stopping_) {
      break;
    }
    // One deadline for the round, so that a stalled API holds the end of the run up by at most
    // kLockRenewRequestTimeout, however many apps there are.
    const auto deadline = Deadline::after(kLockRenewRequestTimeout);
    for (auto& held : held_) {
      renew(held, deadline);
    }
  }
}

// Called with mutex_ held.
void DeployLocks::renew(Held& held, Deadline deadline) {
  if (held.outcome.lost || held.released) {
    return;
  }
  try {
    ApiRequest update;
    update.method = "PUT";
    update.path = held.path;
    update.body = held_lease(lock_name(held.target.app), held.target.namespace_name, identity_,
                             std::chrono::system_clock::now(), held.lease);
    update.description = "renew the deploy lock " + held.outcome.lease;
    held.lease = client_.request(update, deadline).body;
    held.renewed_at = Clock::now();
  } catch (const ApiError& error) {
    if (!is_conflict(error)) {
      spdlog::warn("{}: renewing the deploy lock: {}", held.target.app, error.what());
      return;
    }
    // Someone else wrote it: ours only if it still names us (then renew from that version).
    try {
      auto current = client_.get_if_exists(held.path, deadline);
      const auto view = judge_lease(current, identity_, std::chrono::system_clock::now());
      if (view.state == LockState::kOurs) {
        held.lease = std::move(*current);
        return;
      }
      held.outcome.lost = true;
      console_.line(held.target.app,
                    fmt::format("warning: lost the deploy lock {} to {}: another deploy may now "
                                "interleave with this one",
                                held.outcome.lease,
                                current ? view.holder : std::string("nobody (it was deleted)")));
    } catch (const Error& read_error) {
      spdlog::warn("{}: reading the deploy lock: {}", held.target.app, read_error.what());
    }
  } catch (const Error& error) {
    spdlog::warn("{}: renewing the deploy lock: {}", held.target.app, error.what());
  }
  if (Clock::now() - held.renewed_at > kLockLeaseDuration) {
    console_.line(held.target.app,
                  fmt::format("warning: the deploy lock {} was not renewed for {}: it may have "
                              "expired",
                              held.outcome.lease, format_duration(kLockLeaseDuration)));
  }
}

void DeployLocks::release(Deadline deadline) {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (renewer_.joinable()) {
    renewer_.join();
  }
  const std::lock_guard lock(mutex_);
  if (deadline.remaining() < kLockReleaseMinimum) {
    deadline = Deadline::after(kLockReleaseMinimum);
  }
  for (auto& held : held_) {
    if (held.outcome.lost || held.released) {
      continue;
    }
    held.released = true;  // tried once: a failure is reported, not retried by the destructor
    try {
      ApiRequest update;
      update.method = "PUT";
      update.path = held.path;
      update.body = released_lease(held.lease, std::chrono::system_clock::now());
      update.description = "release the deploy lock " + held.outcome.lease;
      client_.request(update, deadline);
      console_.line(held.target.app, "released the deploy lock " + held.outcome.lease);
    } catch (const Error& error) {
      console_.line(
          held.target.app,
          fmt::format("warning: could not release the deploy lock {} ({}): the next "
                      "deploy waits until it expires, {} after its last renewal",
                      held.outcome.lease, error.what(), format_duration(kLockLeaseDuration)));
    }
  }
}

}  // namespace deployapps

// Watching the three collections of one app's rollout (its Deployment, ReplicaSets and Pods):
// each on a thread and a connection of its own, all feeding one queue that the rollout drains.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "deployapps/kube_client.hpp"
#include "deployapps/time.hpp"

namespace deployapps {

enum class WatchSource { kDeployment, kReplicaSet, kPod, kEndpointSlice };

struct WatchEvent {
  WatchSource source = WatchSource::kDeployment;
  std::string type;  // ADDED, MODIFIED, DELETED, or RELIST (object = the list's items)
  nlohmann::json object;
  Clock::time_point received = Clock::now();
  std::string error;  // type ERROR: a watch that cannot continue
};

class EventQueue {
 public:
  void push(WatchEvent event);
  // Everything queued, waiting up to `wait` for the first.
  std::vector<WatchEvent> take(Duration wait);

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<WatchEvent> events_;
};

// What a watch does after failing: try again after `delay`, or give up. It gives up only where
// retrying cannot help (401, 403, 404); an unavailable API (no answer, 5xx, 429) is retried,
// 1, 2, 4, then every 8 s, until the budget's deadline ends the wait. `http_status` 0: no
// HTTP answer (connect, TLS, silence).
struct WatchRetry {
  bool give_up = false;
  Duration delay{};
};
inline constexpr Duration kWatchRetryFirst = std::chrono::seconds(1);
inline constexpr Duration kWatchRetryMax = std::chrono::seconds(8);
[[nodiscard]] WatchRetry watch_retry(int consecutive_failures, unsigned http_status);

// One collection: list (when no resourceVersion is known), then watch from there. Relists after
// 410 Expired, resumes after a normal end of the stream, backs off after errors, and ends by
// `deadline` at the latest.
class CollectionWatcher {
 public:
  CollectionWatcher(const RestConfig& config, WatchSource source, std::string path,
                    QueryParameters query, std::string resource_version, EventQueue& queue,
                    Deadline deadline);
  CollectionWatcher(const CollectionWatcher&) = delete;
  CollectionWatcher& operator=(const CollectionWatcher&) = delete;
  CollectionWatcher(CollectionWatcher&&) = delete;
  CollectionWatcher& operator=(CollectionWatcher&&) = delete;
  ~CollectionWatcher() { stop(); }

  void stop();
  // Valid after stop().
  [[nodiscard]] std::size_t requests_sent() const noexcept { return client_.requests_sent(); }
  // The last resourceVersion seen, where a new watch resumes (replaying every event since).
  // Valid after stop().
  [[nodiscard]] const std::string& resource_version() const noexcept { return resource_version_; }
  [[nodiscard]] WatchSource source() const noexcept { return source_; }

 private:
  void loop();
  void watch_once(int& failures);
  void list();
  bool backoff(WatchRetry retry, const std::string& what);

  KubeClient client_;
  WatchSource source_;
  std::string path_;
  QueryParameters query_;
  std::string resource_version_;
  EventQueue& queue_;
  Deadline deadline_;  // the budget's overall deadline: no watch outlives the command
  std::atomic<bool> stopping_{false};
  std::thread thread_;  // last: starts after everything above is ready
};

[[nodiscard]] inline std::string name_of(const nlohmann::json& object) {
  return object.value(nlohmann::json::json_pointer("/metadata/name"), std::string());
}

[[nodiscard]] inline std::string resource_version_of(const nlohmann::json& object) {
  return object.value(nlohmann::json::json_pointer("/metadata/resourceVersion"), std::string());
}

}  // namespace deployapps

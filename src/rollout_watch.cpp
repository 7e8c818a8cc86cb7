#include "deployapps/rollout_watch.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <algorithm>

#include "deployapps/budget.hpp"

namespace deployapps {
using nlohmann::json;
using namespace std::chrono_literals;

void EventQueue::push(WatchEvent event) {
  {
    const std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  ready_.notify_one();
}

std::vector<WatchEvent> EventQueue::take(Duration wait) {
  std::unique_lock lock(mutex_);
  ready_.wait_for(lock, wait, [this] { return !events_.empty(); });
  std::vector<WatchEvent> taken(std::make_move_iterator(events_.begin()),
                                std::make_move_iterator(events_.end()));
  events_.clear();
  return taken;
}

WatchRetry watch_retry(int consecutive_failures, unsigned http_status) {
  // Retrying cannot fix credentials, RBAC or a deleted namespace.
  if (http_status == 401 || http_status == 403 || http_status == 404) {
    return {true, {}};
  }
  const int doublings = std::clamp(consecutive_failures - 1, 0, 3);
  return {false, std::min<Duration>(kWatchRetryFirst * (1 << doublings), kWatchRetryMax)};
}

CollectionWatcher::CollectionWatcher(const RestConfig& config, WatchSource source, std::string path,
                                     QueryParameters query, std::string resource_version,
                                     EventQueue& queue, Deadline deadline)
    : client_(config),
      source_(source),
      path_(std::move(path)),
      query_(std::move(query)),
      resource_version_(std::move(resource_version)),
      queue_(queue),
      deadline_(deadline),
      thread_([this] { loop(); }) {}

void CollectionWatcher::stop() {
  stopping_ = true;
  client_.cancel_watch();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void CollectionWatcher::loop() {
  int failures = 0;
  while (!stopping_ && !deadline_.expired()) {
    try {
      if (resource_version_.empty()) {
        list();
      }
      watch_once(failures);
    } catch (const ApiError& error) {
      if (error.http_status() == 410) {
        resource_version_.clear();  // too old: list again
        continue;
      }
      if (!backoff(watch_retry(++failures, error.http_status()), error.what())) {
        return;
      }
    } catch (const Error& error) {
      if (!backoff(watch_retry(++failures, 0), error.what())) {
        return;
      }
    }
  }
}

// One watch request, until the server ends it (timeoutSeconds), it fails, or stop().
void CollectionWatcher::watch_once(int& failures) {
  ApiRequest request;
  request.path = path_;
  request.query = query_;
  request.query.insert(request.query.end(),
                       {{"watch", "1"},
                        {"resourceVersion", resource_version_},
                        {"allowWatchBookmarks", "true"},
                        {"timeoutSeconds", std::to_string(kWatchTimeoutSeconds)}});
  request.description = "watch " + path_;
  client_.watch(
      request,
      [&](const json& event) {
        if (stopping_) {
          return false;
        }
        const auto type = event.value("type", "");
        const auto& object = event.contains("object") ? event["object"] : json::object();
        if (type == "ERROR") {
          if (is_expired(object)) {
            resource_version_.clear();
            return false;
          }
          throw ApiError(fmt::format("watch {}: {}", path_, object.value("message", "")),
                         static_cast<unsigned>(object.value("code", 500)),
                         object.value("reason", ""));
        }
        resource_version_ = resource_version_of(object);
        if (type != "BOOKMARK") {
          queue_.push({source_, type, object, Clock::now(), {}});
        }
        failures = 0;
        return true;
      },
      kWatchIdleTimeout, deadline_);
}

void CollectionWatcher::list() {
  ApiRequest request;
  request.path = path_;
  request.query = query_;
  const auto body = client_.request(request, deadline_).body;
  resource_version_ = resource_version_of(body);
  queue_.push({source_, "RELIST", body.value("items", json::array()), Clock::now(), {}});
}

// Waits before trying again, or tells the rollout that the watch cannot go on. The budget's
// deadline ends a watch that keeps failing; a Ctrl-C or stop() ends the wait at once.
bool CollectionWatcher::backoff(WatchRetry retry, const std::string& what) {
  if (stopping_) {
    return false;
  }
  if (retry.give_up) {
    queue_.push({source_, "ERROR", json::object(), Clock::now(), what});
    return false;
  }
  spdlog::warn("{} (retrying in {})", what, format_duration(retry.delay));
  const auto until = std::min(Clock::now() + retry.delay, deadline_.when());
  while (Clock::now() < until && !stopping_) {
    std::this_thread::sleep_for(std::min<Duration>(250ms, retry.delay));
  }
  return !stopping_;
}

}  // namespace deployapps

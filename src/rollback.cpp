#include "deployapps/rollback.hpp"

#include <fmt/format.h>

namespace deployapps {
using nlohmann::json;

RollbackResult roll_back(const PreApplyState& before, const RolloutTarget& target,
                         const std::string& old_version, KubeClient& client,
                         RolloutFollower& follower, Deadline deadline, Console& console) {
  RollbackResult result;
  const auto finish = [&](std::string state) {
    result.state_left = std::move(state);
    console.line(target.app, result.state_left);
    return result;
  };
  std::string not_restored;  // the objects that could not be put back, and why
  const auto restore_objects = [&] {
    const auto objects = before.objects.restore(client, deadline);
    for (const auto& line : objects.lines) {
      console.line(target.app, line);
      if (line.find(" NOT restored: ") != std::string::npos) {
        not_restored += "; " + line;
      }
    }
    return objects.ok;
  };
  if (!before.template_changed) {
    const bool objects_ok = restore_objects();
    const auto version = old_version.empty() ? std::string("-") : old_version;
    if (before.objects.empty()) {
      return finish(fmt::format(
          "this run did not change the pod template, so nothing was rolled back: version {} is "
          "left as it was",
          version));
    }
    result.rolled_back = objects_ok;
    result.complete = objects_ok;
    return finish(fmt::format("version {} is left as it was (its pod template was not changed); {}",
                              version,
                              objects_ok ? before.objects.describe() + " restored"
                                         : "some objects could not be restored" + not_restored));
  }
  const auto follow_hint =
      fmt::format("kubectl -n {} rollout status deployment/{}", target.namespace_name, target.app);
  if (!before.pod_template) {
    (void)restore_objects();
    return finish(fmt::format(
        "not rolled back: this was the app's first deploy, so there is no earlier version; the "
        "failed state is left in place for inspection (kubectl -n {} describe deployment/{})",
        target.namespace_name, target.app));
  }
  const auto version = template_version(*before.pod_template);
  ApiRequest patch;
  patch.method = "PATCH";
  patch.path =
      fmt::format("/apis/apps/v1/namespaces/{}/deployments/{}", target.namespace_name, target.app);
  patch.content_type = "application/json-patch+json";
  patch.body = json::array(
      {{{"op", "replace"}, {"path", "/spec/template"}, {"value", *before.pod_template}}});
  patch.description = fmt::format("rollback of deployment.apps/{}", target.app);
  try {
    // Judged from the object the PATCH returned, not a stale one from before it.
    follower.restoring(client.request(patch, deadline).body);
  } catch (const Error& error) {
    (void)restore_objects();
    return finish(fmt::format(
        "failed restoring the pre-apply template (version {}): {}; the new template may still "
        "be rolling out (follow it with: {})",
        version, error.what(), follow_hint));
  }
  console.line(target.app,
               fmt::format("rolled back to the pre-apply pod template (version {})", version));
  result.rolled_back = true;
  // The template first (its pods take longest), then the rest while they start.
  const bool objects_ok = restore_objects();
  if (follower.wait(deadline, true).kind != Verdict::Kind::kDone) {
    return finish(fmt::format(
        "rollback to version {} still in progress in the cluster: {} (follow it with: {})", version,
        follower.status().message, follow_hint));
  }
  result.complete = objects_ok;
  return finish(fmt::format(
      "version {} is running and healthy{}", version,
      objects_ok ? std::string() : "; some other objects could not be restored" + not_restored));
}

}  // namespace deployapps

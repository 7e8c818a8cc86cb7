#include <catch2/catch.hpp>

#include <sstream>

#include "deployapps/console.hpp"
#include "deployapps/deploy_lock.hpp"
#include "deployapps/errors.hpp"
#include "support/fake_api.hpp"

using namespace std::chrono_literals;
using deployapps::Console;
using deployapps::Deadline;
using deployapps::DeployFailed;
using deployapps::DeployLocks;
using deployapps::judge_lease;
using deployapps::KubeClient;
using deployapps::LockState;
using deployapps::LockTarget;
using deployapps::WallTime;
using deployapps::testing::FakeApiServer;
using nlohmann::json;

namespace {

constexpr auto kNamespacePath = "/api/v1/namespaces/shop";
constexpr auto kLeases = "/apis/coordination.k8s.io/v1/namespaces/shop/leases";
constexpr auto kLeasePath =
    "/apis/coordination.k8s.io/v1/namespaces/shop/leases/go-app-deploy-lock";

// 2026-12-06T04:20:01.123456Z
const WallTime kNow =
    WallTime(std::chrono::seconds(1796530801)) + std::chrono::microseconds(123456);

json lease_held_by(const std::string& holder, WallTime renewed, int duration_seconds = 15) {
  return {{"apiVersion", "coordination.k8s.io/v1"},
          {"kind", "Lease"},
          {"metadata", {{"name", "go-app-deploy-lock"}, {"namespace", "shop"}}},
          {"spec",
           {{"holderIdentity", holder},
            {"leaseDurationSeconds", duration_seconds},
            {"acquireTime", deployapps::format_micro_time(renewed)},
            {"renewTime", deployapps::format_micro_time(renewed)},
            {"leaseTransitions", 3}}}};
}

// Stores an object through the fake's own API, as another client would.
json create(FakeApiServer& api, const std::string& collection, const json& object) {
  KubeClient client(api.rest_config());
  deployapps::ApiRequest request;
  request.method = "POST";
  request.path = collection;
  request.body = object;
  return client.request(request, Deadline::after(10s)).body;
}

void create_namespace(FakeApiServer& api) {
  create(api, "/api/v1/namespaces",
         {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "shop"}}}});
}

LockTarget go_app_target(bool with_namespace_object = false) {
  LockTarget target{"go-app", "shop", std::nullopt};
  if (with_namespace_object) {
    deployapps::PlannedObject object;
    object.object = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "shop"}}}};
    object.resource.kind = "Namespace";
    object.name = "shop";
    object.path = kNamespacePath;
    target.namespace_object = object;
  }
  return target;
}

std::size_t count_requests(const FakeApiServer& api, const std::string& method,
                           const std::string& path) {
  std::size_t count = 0;
  for (const auto& request : api.requests()) {
    if (request.method == method && request.path == path) {
      ++count;
    }
  }
  return count;
}

// The fake API with the namespace and go-app's Lease, held by `holder` and renewed at `renewed`.
void hold_go_app_lease(FakeApiServer& api, const std::string& holder, WallTime renewed) {
  create_namespace(api);
  create(api, kLeases, lease_held_by(holder, renewed));
}

std::string holder_of(const FakeApiServer& api) {
  const auto lease = api.stored(kLeasePath);
  REQUIRE(lease);
  return lease->at("spec").value("holderIdentity", "");
}

}  // namespace

TEST_CASE("judge_lease: absent, released, ours, held and expired", "[lock]") {
  CHECK(judge_lease(std::nullopt, "me", kNow).state == LockState::kAbsent);

  auto released = lease_held_by("other", kNow - 1s);
  released["spec"].erase("holderIdentity");
  CHECK(judge_lease(released, "me", kNow).state == LockState::kReleased);

  CHECK(judge_lease(lease_held_by("me", kNow - 60s), "me", kNow).state == LockState::kOurs);

  const auto held = judge_lease(lease_held_by("other", kNow - 1s), "me", kNow);
  CHECK(held.state == LockState::kHeld);
  CHECK(held.holder == "other");
  REQUIRE(held.since_renewal);
  CHECK(*held.since_renewal == 1s);
  REQUIRE(held.expires_in);
  // renewTime is read to the millisecond: 14 s less what the parser drops.
  CHECK(*held.expires_in > 13'998ms);
  CHECK(*held.expires_in <= 14s);

  const auto expired = judge_lease(lease_held_by("other", kNow - 16s), "me", kNow);
  CHECK(expired.state == LockState::kExpired);
  CHECK(expired.holder == "other");
  CHECK(*expired.expires_in < 0s);
}

TEST_CASE("judge_lease never frees a lock it cannot date", "[lock]") {
  auto no_time = lease_held_by("other", kNow - 1h);
  no_time["spec"].erase("renewTime");
  no_time["spec"].erase("acquireTime");
  CHECK(judge_lease(no_time, "me", kNow).state == LockState::kHeld);

  CHECK(judge_lease(lease_held_by("other", kNow - 1h, 0), "me", kNow).state == LockState::kHeld);

  auto garbled = lease_held_by("other", kNow - 1h);
  garbled["spec"]["renewTime"] = "yesterday";
  CHECK(judge_lease(garbled, "me", kNow).state == LockState::kHeld);
}

TEST_CASE("held_lease: created, taken over and renewed as client-go's leader election does",
          "[lock]") {
  const auto created =
      deployapps::held_lease("go-app-deploy-lock", "shop", "me", kNow, std::nullopt);
  CHECK(created["apiVersion"] == "coordination.k8s.io/v1");
  CHECK(created["kind"] == "Lease");
  CHECK(created["metadata"]["name"] == "go-app-deploy-lock");
  CHECK(created["metadata"]["namespace"] == "shop");
  CHECK(created["spec"]["holderIdentity"] == "me");
  CHECK(created["spec"]["leaseDurationSeconds"] == 15);
  CHECK(created["spec"]["leaseTransitions"] == 0);
  CHECK(created["spec"]["acquireTime"] == "2026-12-06T04:20:01.123456Z");
  CHECK(created["spec"]["renewTime"] == "2026-12-06T04:20:01.123456Z");

  auto theirs = lease_held_by("other", kNow - 20s);
  theirs["metadata"]["resourceVersion"] = "42";
  const auto taken = deployapps::held_lease("go-app-deploy-lock", "shop", "me", kNow, theirs);
  CHECK(taken["metadata"]["resourceVersion"] == "42");  // the update is conditional on it
  CHECK(taken["spec"]["holderIdentity"] == "me");
  CHECK(taken["spec"]["leaseTransitions"] == 4);
  CHECK(taken["spec"]["acquireTime"] == "2026-12-06T04:20:01.123456Z");

  const auto renewed = deployapps::held_lease("go-app-deploy-lock", "shop", "me", kNow + 5s, taken);
  CHECK(renewed["spec"]["leaseTransitions"] == 4);
  CHECK(renewed["spec"]["acquireTime"] == "2026-12-06T04:20:01.123456Z");
  CHECK(renewed["spec"]["renewTime"] == "2026-12-06T04:20:06.123456Z");

  const auto released = deployapps::released_lease(renewed, kNow + 6s);
  CHECK_FALSE(released["spec"].contains("holderIdentity"));
  CHECK(judge_lease(released, "anyone", kNow + 6s).state == LockState::kReleased);
}

TEST_CASE("MicroTime round-trips through the RFC 3339 parser (to its millisecond)", "[lock]") {
  const auto parsed = deployapps::parse_rfc3339(deployapps::format_micro_time(kNow));
  CHECK(kNow - parsed >= 0ms);
  CHECK(kNow - parsed < 1ms);
  CHECK(deployapps::lock_identity("ci", "runner-7", 4242, 0x1beef) == "ci@runner-7 pid 4242 #beef");
  CHECK(deployapps::lock_identity("", "", 1, 0) == "unknown@unknown pid 1 #0000");
}

TEST_CASE("DeployLocks creates the Lease, holds it, and releases it at the end", "[lock]") {
  FakeApiServer api;
  create_namespace(api);
  std::ostringstream out;
  Console console(out, false);
  {
    DeployLocks locks(api.rest_config(), "me", console);
    locks.acquire({go_app_target()}, false, Deadline::after(10s));
    CHECK(holder_of(api) == "me");
    CHECK(count_requests(api, "POST", kLeases) == 1);
    locks.release(Deadline::after(10s));
    CHECK(holder_of(api).empty());
    REQUIRE(locks.outcomes().size() == 1);
    CHECK(locks.outcomes()[0].lease == "shop/go-app-deploy-lock");
    CHECK(locks.outcomes()[0].took_over_from.empty());
  }
  CHECK(count_requests(api, "PUT", kLeasePath) == 1);  // the destructor released nothing twice
  CHECK(out.str().find("took the deploy lock shop/go-app-deploy-lock as me") != std::string::npos);
  CHECK(out.str().find("released the deploy lock shop/go-app-deploy-lock") != std::string::npos);
}

TEST_CASE("a first deploy applies the app's namespace before the Lease that lives in it",
          "[lock]") {
  FakeApiServer api;
  std::ostringstream out;
  Console console(out, false);
  DeployLocks locks(api.rest_config(), "me", console);
  locks.acquire({go_app_target(true)}, false, Deadline::after(10s));
  CHECK(api.stored(kNamespacePath));
  CHECK(holder_of(api) == "me");
  CHECK(out.str().find("namespace/shop applied first") != std::string::npos);
}

TEST_CASE("a lock held by another run is refused at once, naming the holder", "[lock]") {
  FakeApiServer api;
  hold_go_app_lease(api, "ci@runner pid 7 #0001", std::chrono::system_clock::now());
  std::ostringstream out;
  Console console(out, false);
  DeployLocks locks(api.rest_config(), "me", console);
  try {
    locks.acquire({go_app_target()}, false, Deadline::after(10s));
    FAIL("acquired a lock another run holds");
  } catch (const DeployFailed& error) {
    const std::string text = error.what();
    CHECK(text.find("is held by ci@runner pid 7 #0001") != std::string::npos);
    CHECK(text.find("nothing was applied") != std::string::npos);
    CHECK(text.find("--wait-for-lock") != std::string::npos);
  }
  CHECK(holder_of(api) == "ci@runner pid 7 #0001");
  CHECK(count_requests(api, "PUT", kLeasePath) == 0);
}

TEST_CASE("waiting for a held lock ends at the deadline, saying who still holds it", "[lock]") {
  FakeApiServer api;
  hold_go_app_lease(api, "other", std::chrono::system_clock::now());
  std::ostringstream out;
  Console console(out, false);
  DeployLocks locks(api.rest_config(), "me", console);
  CHECK_THROWS_WITH(locks.acquire({go_app_target()}, true, Deadline::after(1s)),
                    Catch::Contains("could not be taken within --timeout (waited 1") &&
                        Catch::Contains("s): still held by other"));
  CHECK(out.str().find("waiting for the deploy lock shop/go-app-deploy-lock, held by other") !=
        std::string::npos);
}

TEST_CASE("an expired lock is taken over, and the outcome says from whom", "[lock]") {
  FakeApiServer api;
  hold_go_app_lease(api, "killed", std::chrono::system_clock::now() - 20s);
  std::ostringstream out;
  Console console(out, false);
  DeployLocks locks(api.rest_config(), "me", console);
  locks.acquire({go_app_target()}, false, Deadline::after(10s));
  CHECK(holder_of(api) == "me");
  CHECK(api.stored(kLeasePath)->at("spec")["leaseTransitions"] == 4);
  REQUIRE(locks.outcomes().size() == 1);
  CHECK(locks.outcomes()[0].took_over_from == "killed");
  CHECK(out.str().find("took over the deploy lock shop/go-app-deploy-lock as me from killed") !=
        std::string::npos);
}

TEST_CASE("a lock that cannot be taken releases the ones already taken", "[lock]") {
  FakeApiServer api;
  create_namespace(api);
  auto node_app_lease = lease_held_by("other", std::chrono::system_clock::now());
  node_app_lease["metadata"]["name"] = "node-app-deploy-lock";
  create(api, kLeases, node_app_lease);
  std::ostringstream out;
  Console console(out, false);
  DeployLocks locks(api.rest_config(), "me", console);
  // Given out of order: locks are taken in (namespace, app) order, go-app first.
  CHECK_THROWS_AS(locks.acquire({LockTarget{"node-app", "shop", std::nullopt}, go_app_target()},
                                false, Deadline::after(10s)),
                  DeployFailed);
  CHECK(holder_of(api).empty());                     // go-app's was taken, then released
  CHECK(count_requests(api, "POST", kLeases) == 2);  // the test's own, then go-app's
}

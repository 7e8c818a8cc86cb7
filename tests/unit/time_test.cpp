#include <catch2/catch.hpp>

#include "deployapps/budget.hpp"
#include "deployapps/errors.hpp"
#include "deployapps/time.hpp"

using namespace std::chrono_literals;
using deployapps::Deadline;
using deployapps::Duration;

TEST_CASE("durations parse like Go's, a bare number meaning seconds", "[time]") {
  const auto [text, expected] = GENERATE(table<std::string, Duration>({
      {"90", 90s},
      {"90s", 90s},
      {"1500ms", 1500ms},
      {"5m", 5min},
      {"1h30m", 90min},
      {"2m5s", 125s},
  }));
  CAPTURE(text);
  CHECK(deployapps::parse_duration(text) == expected);
}

TEST_CASE("bad durations are usage errors", "[time]") {
  const auto text =
      GENERATE(as<std::string>{}, "", "0", "0s", "-5s", "5x", "m", "1h30", "1.5s", "9999999999s");
  CAPTURE(text);
  CHECK_THROWS_AS(deployapps::parse_duration(text), deployapps::UsageError);
}

TEST_CASE("durations format for people", "[time]") {
  CHECK(deployapps::format_duration(350ms) == "350ms");
  CHECK(deployapps::format_duration(2s) == "2s");
  CHECK(deployapps::format_duration(2500ms) == "2.5s");
  CHECK(deployapps::format_duration(125s) == "2m5s");
  CHECK(deployapps::format_duration(3600s) == "1h");
}

TEST_CASE("deadlines shrink but never grow", "[time]") {
  const auto later = Deadline::after(10s);
  CHECK(later.at_most(1s).when() < later.when());
  CHECK(later.at_most(1h).when() == later.when());
  CHECK(Deadline::never().is_never());
  CHECK_FALSE(Deadline::never().at_most(1s).is_never());
  CHECK(Deadline::after(-1s).remaining() == Duration::zero());
  CHECK(Deadline::after(-1s).expired());
}

TEST_CASE("RFC 3339 timestamps", "[time]") {
  using std::chrono::system_clock;
  const auto base = deployapps::parse_rfc3339("2026-01-02T03:04:05Z");
  CHECK(system_clock::to_time_t(base) == 1767323045);
  CHECK(deployapps::parse_rfc3339("2026-01-02T04:04:05+01:00") == base);
  CHECK(deployapps::parse_rfc3339("2026-01-02T03:04:05.250Z") - base == 250ms);
  CHECK_THROWS_AS(deployapps::parse_rfc3339("2026-01-02 03:04"), deployapps::ConfigError);
  CHECK_THROWS_AS(deployapps::parse_rfc3339("yesterday"), deployapps::ConfigError);
}

TEST_CASE("a rollback keeps a third of --timeout within 5 s and 2 min", "[time][budget]") {
  using deployapps::rollback_reserve;
  using std::chrono::minutes;
  using std::chrono::seconds;
  CHECK(rollback_reserve(seconds(6)) == seconds(5));
  CHECK(rollback_reserve(minutes(5)) == seconds(100));
  CHECK(rollback_reserve(minutes(60)) == minutes(2));
  // The rollout gets the rest, and never less than half of a short timeout.
  const auto now = deployapps::Clock::now();
  const auto budget = deployapps::Budget::starting_now(seconds(6));
  CHECK(budget.overall.when() - now >= seconds(6));
  CHECK(budget.overall.when() - now < seconds(7));
  CHECK(budget.overall.when() - budget.rollout.when() == seconds(3));
  const auto standard = deployapps::Budget::starting_now(minutes(5));
  CHECK(standard.overall.when() - standard.rollout.when() == seconds(100));
}

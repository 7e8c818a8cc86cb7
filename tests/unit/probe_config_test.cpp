#include <catch2/catch.hpp>

#include "deployapps/probe/config.hpp"
#include "probe_test_support.hpp"

namespace probe = deployapps::probe;
using deployapps::probe::testing::MessageContains;
using namespace std::chrono_literals;

TEST_CASE("config: target URL parsing", "[probe][config]") {
  SECTION("IP and port") {
    const auto target = probe::Target::parse("http://127.0.0.1:8088");
    CHECK(target.host == "127.0.0.1");
    CHECK(target.port == 8088);
    CHECK(target.path_prefix.empty());
    CHECK(target.authority == "127.0.0.1:8088");
  }
  SECTION("default port is left out of the Host authority") {
    const auto target = probe::Target::parse("http://go-app.localhost:80/");
    CHECK(target.host == "go-app.localhost");
    CHECK(target.port == 80);
    CHECK(target.authority == "go-app.localhost");
  }
  SECTION("no port means 80") {
    CHECK(probe::Target::parse("http://10.96.0.12").port == 80);
  }
  SECTION("IPv6 literal") {
    const auto target = probe::Target::parse("http://[::1]:8080");
    CHECK(target.host == "::1");
    CHECK(target.port == 8080);
    CHECK(target.authority == "[::1]:8080");
  }
  SECTION("path prefix without trailing slashes") {
    CHECK(probe::Target::parse("http://h:1/app//").path_prefix == "/app");
  }
}

TEST_CASE("config: target bad URLs are rejected with the reason", "[probe][config]") {
  const auto [url, reason] = GENERATE(table<std::string, std::string>({
      {"https://x", "http://"},
      {"127.0.0.1:80", "http://"},
      {"http://", "needs a host"},
      {"http://:80", "invalid host"},
      {"http://u@h", "needs a host"},
      {"http://h:0", "invalid port"},
      {"http://h:65536", "invalid port"},
      {"http://h:8o", "invalid port"},
      {"http://h:", "invalid port"},
      {"http://h/?a=1", "query"},
      {"http://[::1", "IPv6"},
      {"http://[::1]x", "junk"},
  }));
  CAPTURE(url);
  CHECK_THROWS_MATCHES(probe::Target::parse(url), probe::ConfigError, MessageContains(reason));
}

TEST_CASE("config: validation", "[probe][config]") {
  probe::Config config;
  config.url = "http://127.0.0.1:8080";
  CHECK_NOTHROW(config.validate());

  SECTION("no workers at all") {
    config.keepalive_get_workers = config.keepalive_post_workers = 0;
    config.fresh_connection_workers = config.initial_long_requests = 0;
    config.long_request_workers = config.initial_streams = config.stream_workers = 0;
    CHECK_THROWS_MATCHES(config.validate(), probe::ConfigError, MessageContains("no workers"));
  }
  SECTION("negative count") {
    config.stream_workers = -1;
    CHECK_THROWS_MATCHES(config.validate(), probe::ConfigError, MessageContains("stream workers"));
  }
  SECTION("too many connections") {
    config.keepalive_get_workers = 5000;
    CHECK_THROWS_AS(config.validate(), probe::ConfigError);
  }
  SECTION("zero duration") {
    config.duration = 0ms;
    CHECK_THROWS_MATCHES(config.validate(), probe::ConfigError, MessageContains("duration"));
  }
  SECTION("zero timeout") {
    config.request_timeout = 0ms;
    CHECK_THROWS_AS(config.validate(), probe::ConfigError);
  }
  SECTION("header injection") {
    config.host_header = "a\r\nX: y";
    CHECK_THROWS_AS(config.validate(), probe::ConfigError);
  }
  SECTION("bad URL") {
    config.url = "ftp://x";
    CHECK_THROWS_AS(config.validate(), probe::ConfigError);
  }
  SECTION("negative rate") {
    config.max_short_requests_per_second = -1;
    CHECK_THROWS_MATCHES(config.validate(), probe::ConfigError, MessageContains("rate"));
  }
}

TEST_CASE("config: a rate bound spreads the short workers apart", "[probe][config]") {
  probe::Config config;  // 4 keep-alive GET, 2 POST, 2 new-connection workers: 8 short ones
  config.request_interval = 10ms;
  CHECK(config.short_request_interval() == 10ms);  // no bound: the interval alone paces

  config.max_short_requests_per_second = 100;
  CHECK(config.short_request_interval() == 80ms);  // 8 workers x 12.5 /s each

  config.max_short_requests_per_second = 3;  // 8000 / 3 rounds up, never over the bound
  CHECK(config.short_request_interval() == 2667ms);

  config.max_short_requests_per_second = 10000;  // looser than the interval: the interval wins
  CHECK(config.short_request_interval() == 10ms);

  config.keepalive_get_workers = config.keepalive_post_workers = 0;
  config.fresh_connection_workers = 0;  // only long requests and streams: nothing to pace
  CHECK(config.short_request_interval() == 10ms);
}

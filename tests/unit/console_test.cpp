// The deployer's output: every line carries its app; progress is redrawn in place on a terminal
// and printed as timestamped lines (only when it changes) otherwise.
#include <catch2/catch.hpp>

#include <regex>
#include <sstream>

#include "deployapps/console.hpp"

TEST_CASE("plain output: timestamped lines, progress only when it changes", "[console]") {
  std::ostringstream out;
  {
    deployapps::Console console(out, false);
    console.line("go-app", "building");
    console.progress("go-app", "1/2 updated");
    console.progress("go-app", "1/2 updated");
    console.progress("node-app", "0/2 updated");
    console.progress("go-app", "2/2 updated");
    console.clear_progress("go-app");
  }
  const auto text = out.str();
  const std::regex line(R"(\d\d:\d\d:\d\d\.\d\d\d (go-app|node-app): [^\n]+\n)");
  std::size_t lines = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), line); it != std::sregex_iterator();
       ++it) {
    ++lines;
  }
  CHECK(lines == 4);  // the repeated progress line is not printed again
  CHECK(text.find('\x1b') == std::string::npos);
  CHECK_THAT(text, Catch::Contains("go-app: 2/2 updated"));
}

TEST_CASE("terminal output: progress lines stay below the log and are redrawn", "[console]") {
  std::ostringstream out;
  {
    deployapps::Console console(out, true);
    console.progress("go-app", "1/2 updated");
    console.progress("node-app", "0/2 updated");
    console.line("go-app", "old pod exited 0");
    console.progress("go-app", "2/2 updated");
  }
  const auto text = out.str();
  // The log line is written after erasing the two progress lines, which come back below it.
  CHECK_THAT(text, Catch::Contains("\x1b[2F\x1b[Jgo-app: old pod exited 0\ngo-app: 1/2 updated\n"
                                   "node-app: 0/2 updated\n"));
  CHECK_THAT(text, Catch::EndsWith("\x1b[2F\x1b[J"));  // nothing left behind at the end
  CHECK(text.find("go-app: 2/2 updated\nnode-app: 0/2 updated\n") != std::string::npos);
}

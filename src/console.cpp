#include "deployapps/console.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ostream>

namespace deployapps {
namespace {

std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  return fmt::format("{:%H:%M:%S}.{:03}", fmt::gmtime(std::chrono::system_clock::to_time_t(now)),
                     millis);
}

}  // namespace

bool is_interactive_terminal(int fd, const std::optional<std::string>& term) {
  return ::isatty(fd) == 1 && term && !term->empty() && *term != "dumb";
}

Console::Console(std::ostream& out, bool interactive) : out_(out), interactive_(interactive) {}

Console::~Console() {
  const std::lock_guard lock(mutex_);
  erase_block();
  out_.flush();
}

void Console::erase_block() {
  if (interactive_ && drawn_lines_ > 0) {
    // Up to the first progress line, then clear to the end of the screen.
    out_ << fmt::format("\x1b[{}F\x1b[J", drawn_lines_);
    drawn_lines_ = 0;
  }
}

void Console::draw_block() {
  if (!interactive_) {
    return;
  }
  for (const auto& [app, text] : progress_) {
    out_ << app << ": " << text << '\n';
  }
  drawn_lines_ = progress_.size();
  out_.flush();
}

void Console::line(std::string_view app, std::string_view text) {
  const std::lock_guard lock(mutex_);
  erase_block();
  if (interactive_) {
    out_ << app << ": " << text << '\n';
  } else {
    out_ << timestamp() << ' ' << app << ": " << text << '\n';
  }
  draw_block();
  out_.flush();
}

void Console::progress(std::string_view app, std::string_view text) {
  const std::lock_guard lock(mutex_);
  auto it = std::find_if(progress_.begin(), progress_.end(),
                         [&](const auto& entry) { return entry.first == app; });
  if (it != progress_.end() && it->second == text) {
    return;
  }
  if (it == progress_.end()) {
    progress_.emplace_back(std::string(app), std::string(text));
  } else {
    it->second = std::string(text);
  }
  if (interactive_) {
    erase_block();
    draw_block();
  } else {
    out_ << timestamp() << ' ' << app << ": " << text << '\n';
    out_.flush();
  }
}

void Console::clear_progress(std::string_view app) {
  const std::lock_guard lock(mutex_);
  erase_block();
  std::erase_if(progress_, [&](const auto& entry) { return entry.first == app; });
  draw_block();
}

}  // namespace deployapps

// The deployer's output when several apps roll out at once: every line carries its app, and each
// app has a live progress line. On a terminal the progress lines are redrawn in place below the
// log; otherwise (CI) a progress line is printed, with a timestamp, whenever it changes.
#pragma once

#include <iosfwd>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace deployapps {

class Console {
 public:
  Console(std::ostream& out, bool interactive);
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;
  Console(Console&&) = delete;
  Console& operator=(Console&&) = delete;

  // A permanent line: `[HH:MM:SS] app: text` (the time only when not interactive). Thread-safe.
  void line(std::string_view app, std::string_view text);
  // The app's live progress. Thread-safe; unchanged text prints nothing.
  void progress(std::string_view app, std::string_view text);
  // Removes the app's progress line (its rollout is over).
  void clear_progress(std::string_view app);

  [[nodiscard]] bool interactive() const noexcept { return interactive_; }

 private:
  void erase_block();
  void draw_block();

  std::ostream& out_;
  bool interactive_;
  std::mutex mutex_;
  std::vector<std::pair<std::string, std::string>> progress_;  // in order of first appearance
  std::size_t drawn_lines_ = 0;
};

// True when `fd` is a terminal and $TERM (given) is set and not "dumb".
[[nodiscard]] bool is_interactive_terminal(int fd, const std::optional<std::string>& term);

}  // namespace deployapps

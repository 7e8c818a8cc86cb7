#include "deployapps/interrupts.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstddef>

namespace deployapps {
namespace {

// A signal handler can only reach static storage; a lock-free atomic is async-signal-safe.
std::atomic<int> g_interrupts{0};
std::atomic<int> g_exit_at{0};
std::atomic<bool> g_last_was_ctrl_c{false};
static_assert(std::atomic<int>::is_always_lock_free);

// What the handler writes before _exit. Published by g_exit_at (release, then acquire).
constexpr std::size_t kTextCapacity = 8192;
std::array<char, kTextCapacity> g_message{};
std::size_t g_message_size = 0;
std::array<char, kTextCapacity> g_document{};
std::size_t g_document_size = 0;

struct sigaction g_previous_int {};
struct sigaction g_previous_term {};
struct sigaction g_previous_hup {};

void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const auto written = ::write(fd, data, size);
    if (written <= 0) {
      return;  // nothing else is safe to do here
    }
    data += written;  // NOLINT(cppcoreguidelines-pro-bounds-pointer-arithmetic): a raw buffer
    size -= static_cast<std::size_t>(written);
  }
}

// Only async-signal-safe calls: write(2) and _exit(2).
[[noreturn]] void exit_now() {
  write_all(STDERR_FILENO, g_message.data(), g_message_size);
  write_all(STDOUT_FILENO, g_document.data(), g_document_size);
  ::_exit(kInterruptedExitCode);
}

// Past the first interrupt, only a Ctrl-C ends the process at once (see the header).
bool ends_process(int count, int exit_at, bool ctrl_c) {
  return exit_at > 0 && count >= exit_at && (count == 1 || ctrl_c);
}

extern "C" void on_interrupt(int signal) {
  const bool ctrl_c = signal == SIGINT;
  g_last_was_ctrl_c.store(ctrl_c, std::memory_order_relaxed);
  const int count = g_interrupts.fetch_add(1, std::memory_order_relaxed) + 1;
  if (ends_process(count, g_exit_at.load(std::memory_order_acquire), ctrl_c)) {
    exit_now();
  }
}

std::size_t copy_text(std::string_view text, std::array<char, kTextCapacity>& into) {
  const auto size = std::min(text.size(), into.size());
  std::copy_n(text.data(), size, into.data());
  return size;
}

}  // namespace

InterruptCounter::InterruptCounter() {
  g_interrupts.store(0);
  g_exit_at.store(0);
  struct sigaction action {};
  action.sa_handler = on_interrupt;  // NOLINT(cppcoreguidelines-pro-type-union-access)
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
  sigaction(SIGHUP, &action, &g_previous_hup);
}

InterruptCounter::~InterruptCounter() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
  sigaction(SIGHUP, &g_previous_hup, nullptr);
  g_exit_at.store(0);
}

// NOLINTNEXTLINE(readability-convert-member-functions-to-static): see the header
void InterruptCounter::exit_at(int nth, std::string_view message, std::string_view document) {
  // Unpublished while the texts change, so a handler never reads half of them.
  g_exit_at.store(0, std::memory_order_release);
  g_message_size = copy_text(message, g_message);
  g_document_size = copy_text(document, g_document);
  g_exit_at.store(nth, std::memory_order_release);
  // An interrupt that came before this call counts: exit now if it already reached `nth`.
  if (ends_process(g_interrupts.load(), nth, g_last_was_ctrl_c.load())) {
    exit_now();
  }
}

// NOLINTNEXTLINE(readability-convert-member-functions-to-static): see the header
const std::atomic<int>& InterruptCounter::count() const noexcept {
  return g_interrupts;
}

}  // namespace deployapps

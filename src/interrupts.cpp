#include "deployapps/interrupts.hpp"

#include <csignal>

namespace deployapps {
namespace {

// A signal handler can only reach static storage; a lock-free atomic is async-signal-safe.
std::atomic<int> g_interrupts{0};
static_assert(std::atomic<int>::is_always_lock_free);

struct sigaction g_previous_int {};
struct sigaction g_previous_term {};

extern "C" void count_interrupt(int /*signal*/) {
  g_interrupts.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

InterruptCounter::InterruptCounter() {
  g_interrupts.store(0);
  struct sigaction action {};
  action.sa_handler = count_interrupt;  // NOLINT(cppcoreguidelines-pro-type-union-access)
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
}

InterruptCounter::~InterruptCounter() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
}

// NOLINTNEXTLINE(readability-convert-member-functions-to-static): see the header
const std::atomic<int>& InterruptCounter::count() const noexcept {
  return g_interrupts;
}

}  // namespace deployapps

#include "deployapps/subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>

#include <fmt/format.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <system_error>

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX, not in any header

namespace deployapps {
namespace {

// Output kept per stream; anything beyond is dropped (a runaway build log must not eat memory).
constexpr std::size_t kMaxCapturedBytes = std::size_t{16} * 1024 * 1024;

class Pipe {
 public:
  Pipe() {
    if (::pipe2(fds_.data(), O_CLOEXEC) != 0) {
      throw Error(fmt::format("pipe: {}", std::generic_category().message(errno)));
    }
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  Pipe(Pipe&&) = delete;
  Pipe& operator=(Pipe&&) = delete;
  ~Pipe() {
    close_read();
    close_write();
  }
  [[nodiscard]] int read_end() const { return fds_[0]; }
  [[nodiscard]] int write_end() const { return fds_[1]; }
  void close_read() { close_fd(fds_[0]); }
  void close_write() { close_fd(fds_[1]); }

 private:
  static void close_fd(int& fd) {
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
  }
  std::array<int, 2> fds_{-1, -1};
};

class SpawnActions {
 public:
  SpawnActions() { posix_spawn_file_actions_init(&actions_); }
  SpawnActions(const SpawnActions&) = delete;
  SpawnActions& operator=(const SpawnActions&) = delete;
  SpawnActions(SpawnActions&&) = delete;
  SpawnActions& operator=(SpawnActions&&) = delete;
  ~SpawnActions() { posix_spawn_file_actions_destroy(&actions_); }
  posix_spawn_file_actions_t* get() { return &actions_; }

 private:
  posix_spawn_file_actions_t actions_{};
};

std::vector<std::string> build_environment(const EnvironmentVariables& extra) {
  std::map<std::string, std::string> merged;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const auto equals = text.find('=');
    if (equals != std::string_view::npos) {
      merged[std::string(text.substr(0, equals))] = std::string(text.substr(equals + 1));
    }
  }
  for (const auto& [name, value] : extra) {
    merged[name] = value;
  }
  std::vector<std::string> out;
  out.reserve(merged.size());
  for (const auto& [name, value] : merged) {
    out.push_back(fmt::format("{}={}", name, value));
  }
  return out;
}

// Collects one output stream, handing complete lines to a callback.
struct OutputStream {
  int fd = -1;
  std::string* captured = nullptr;
  const std::function<void(std::string_view)>* on_line = nullptr;
  std::string partial;

  void append(const char* data, std::size_t size) {
    if (captured->size() < kMaxCapturedBytes) {
      captured->append(data, std::min(size, kMaxCapturedBytes - captured->size()));
    }
    if (on_line == nullptr || !*on_line) {
      return;
    }
    partial.append(data, size);
    std::size_t start = 0;
    for (auto newline = partial.find('\n'); newline != std::string::npos;
         newline = partial.find('\n', start)) {
      (*on_line)(std::string_view(partial).substr(start, newline - start));
      start = newline + 1;
    }
    partial.erase(0, start);
  }

  void finish() {
    if (on_line != nullptr && *on_line && !partial.empty()) {
      (*on_line)(partial);
      partial.clear();
    }
  }
};

int wait_for_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return -1;
    }
  }
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

}  // namespace

ProcessResult run_process(const ProcessOptions& options) {
  if (options.argv.empty()) {
    throw SpawnError("no command given", EINVAL);
  }
  Pipe out_pipe;
  std::optional<Pipe> err_pipe;
  if (!options.inherit_stderr) {
    err_pipe.emplace();
  }
  SpawnActions actions;
  posix_spawn_file_actions_adddup2(actions.get(), out_pipe.write_end(), STDOUT_FILENO);
  if (err_pipe) {
    posix_spawn_file_actions_adddup2(actions.get(), err_pipe->write_end(), STDERR_FILENO);
  }
  if (!options.inherit_stdin) {
    posix_spawn_file_actions_addopen(actions.get(), STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  }
  if (options.working_directory) {
    posix_spawn_file_actions_addchdir_np(actions.get(), options.working_directory->c_str());
  }

  std::vector<char*> argv;
  for (const auto& arg : options.argv) {
    argv.push_back(const_cast<char*>(arg.c_str()));  // NOLINT: posix_spawn's historical signature
  }
  argv.push_back(nullptr);
  auto environment = build_environment(options.environment);
  std::vector<char*> envp;
  envp.reserve(environment.size() + 1);
  for (auto& entry : environment) {
    envp.push_back(entry.data());
  }
  envp.push_back(nullptr);

  pid_t pid = 0;
  const int spawn_error =
      ::posix_spawnp(&pid, argv[0], actions.get(), nullptr, argv.data(), envp.data());
  if (spawn_error != 0) {
    throw SpawnError(fmt::format("cannot run {}: {}", options.argv[0],
                                 std::generic_category().message(spawn_error)),
                     spawn_error);
  }
  out_pipe.close_write();
  if (err_pipe) {
    err_pipe->close_write();
  }

  ProcessResult result;
  std::vector<OutputStream> streams;
  streams.push_back(
      OutputStream{out_pipe.read_end(), &result.stdout_text, &options.on_stdout_line, {}});
  if (err_pipe) {
    streams.push_back(
        OutputStream{err_pipe->read_end(), &result.stderr_text, &options.on_stderr_line, {}});
  }

  std::array<char, 16384> buffer{};
  std::size_t open_streams = streams.size();
  while (open_streams > 0) {
    std::vector<pollfd> fds;
    for (const auto& stream : streams) {
      if (stream.fd >= 0) {
        fds.push_back(pollfd{stream.fd, POLLIN, 0});
      }
    }
    const auto remaining = options.deadline.remaining();
    const int timeout_ms =
        options.deadline.is_never()
            ? -1
            : static_cast<int>(std::min<Duration::rep>(remaining.count(), 60'000));
    const int ready = ::poll(fds.data(), fds.size(), timeout_ms);
    if (ready < 0 && errno != EINTR) {
      break;
    }
    if (options.deadline.expired()) {
      ::kill(pid, SIGKILL);
      result.timed_out = true;
      break;
    }
    for (auto& stream : streams) {
      if (stream.fd < 0) {
        continue;
      }
      const auto it =
          std::find_if(fds.begin(), fds.end(), [&](const pollfd& p) { return p.fd == stream.fd; });
      if (it == fds.end() || it->revents == 0) {
        continue;
      }
      const auto count = ::read(stream.fd, buffer.data(), buffer.size());
      if (count > 0) {
        stream.append(buffer.data(), static_cast<std::size_t>(count));
      } else if (count == 0 || (errno != EINTR && errno != EAGAIN)) {
        stream.finish();
        stream.fd = -1;
        --open_streams;
      }
    }
  }
  for (auto& stream : streams) {
    stream.finish();
  }
  result.exit_code = wait_for_exit(pid);
  return result;
}

}  // namespace deployapps

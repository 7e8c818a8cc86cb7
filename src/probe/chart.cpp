// The timeline chart: the C++ side only prepares data and a gnuplot script; gnuplot draws.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "deployapps/probe/config.hpp"
#include "deployapps/probe/report.hpp"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX, not in any header

namespace deployapps::probe {
namespace {

namespace fs = std::filesystem;

constexpr std::array kVersionColours = {"#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e",
                                        "#8c564b", "#17becf", "#e377c2", "#bcbd22"};
constexpr const char* kFailureColour = "#d62728";
constexpr const char* kUnversionedColour = "#7f7f7f";
constexpr int kMaxBins = 300;

// A gnuplot single-quoted string: only '' needs escaping; line breaks would end the command.
std::string gnuplot_string(std::string_view text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'') {
      out += "''";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "'";
}

double seconds(Offset offset) {
  return static_cast<double>(offset.count()) / 1e6;
}
// Log-scale axes cannot show 0.
double latency_ms(const Record& record) {
  return std::max(0.001, static_cast<double>(record.latency().count()) / 1000.0);
}
bool long_lived(const Record& record) {
  return record.kind == RequestKind::long_get || record.kind == RequestKind::stream;
}

std::string terminal_for(const fs::path& output) {
  const std::string extension = output.extension().string();
  if (extension == ".png") {
    return "pngcairo size 1400,900 noenhanced font 'sans,10'";
  }
  if (extension == ".svg") {
    return "svg size 1400,900 noenhanced font 'sans,10' background '#ffffff'";
  }
  throw ChartError("chart " + output.string() + ": use a .png or .svg file name");
}

// Runs gnuplot on `script`; returns its exit status and what it wrote to stderr. posix_spawn rather
// than Boost.Process: Boost 1.74's Process needs the compiled Boost.Filesystem for one call.
std::pair<int, std::string> run_gnuplot(const fs::path& script) {
  std::array<int, 2> pipe_fds{};
  if (::pipe(pipe_fds.data()) != 0) {
    throw ChartError(std::string("cannot create a pipe for gnuplot: ") +
                     std::generic_category().message(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  std::string program = "gnuplot";
  std::string script_arg = script.string();
  std::array<char*, 3> argv{program.data(), script_arg.data(), nullptr};
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, "gnuplot", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (spawned != 0) {
    ::close(pipe_fds[0]);
    throw ChartError(spawned == ENOENT
                         ? std::string("gnuplot is not installed (Debian package gnuplot-nox)")
                         : std::string("cannot run gnuplot: ") +
                               std::generic_category().message(spawned));
  }
  std::string output;
  std::array<char, 4096> buffer{};
  for (;;) {
    const ssize_t n = ::read(pipe_fds[0], buffer.data(), buffer.size());
    if (n > 0) {
      output.append(buffer.data(), static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

}  // namespace

std::string chart_script(const Report& report, const fs::path& output) {
  const RecordLog& records = report.records();
  Offset end{0};
  for (const Record& record : records) {
    end = std::max(end, record.end);
  }
  const double end_s = std::max(seconds(end), 0.001);
  const Summary summary = report.summary();

  std::map<std::string, std::size_t> colour_index;  // version -> datablock / colour
  for (const VersionCount& version : summary.versions) {
    colour_index.emplace(version.version, colour_index.size());
  }
  const auto colour_of = [&](std::size_t index, const std::string& version) -> std::string {
    return version.empty() ? kUnversionedColour
                           : kVersionColours.at(index % kVersionColours.size());
  };

  // Bins sized so a 60 s run gets ~0.25 s resolution and a long run at most kMaxBins bins.
  const double bin_s = std::max(0.1, std::ceil(end_s / kMaxBins * 10.0) / 10.0);
  const auto bins = static_cast<std::size_t>(std::ceil(end_s / bin_s)) + 1;
  std::vector<std::vector<double>> rate(bins, std::vector<double>(colour_index.size() + 1, 0.0));
  std::vector<std::string> latency_blocks(colour_index.size());
  std::vector<std::string> long_lived_blocks(colour_index.size());
  std::string failures_block;
  for (const Record& record : records) {
    const auto bin = static_cast<std::size_t>(seconds(record.end) / bin_s);
    if (record.failed()) {
      rate[bin].back() += 1.0 / bin_s;
      failures_block += fmt::format("{:.6f} {:.3f}\n", seconds(record.start), latency_ms(record));
    } else if (record.response && record.error == ErrorClass::none) {
      const std::size_t index = colour_index.at(record.version);
      rate[bin][index] += 1.0 / bin_s;
      (long_lived(record) ? long_lived_blocks : latency_blocks)[index] +=
          fmt::format("{:.6f} {:.3f}\n", seconds(record.start), latency_ms(record));
    }
  }

  std::string script = "# Generated by deploy-apps probe; re-run with: gnuplot <this file>\n";
  script += fmt::format("set terminal {}\nset output {}\n", terminal_for(output),
                        gnuplot_string(output.string()));
  script += "$RATE << EOD\n";
  for (std::size_t bin = 0; bin < bins; ++bin) {
    script += fmt::format("{:.3f}", static_cast<double>(bin) * bin_s);
    for (const double value : rate[bin]) {
      script += fmt::format(" {:.2f}", value);
    }
    script += '\n';
  }
  script += "EOD\n";
  for (std::size_t index = 0; index < latency_blocks.size(); ++index) {
    script += fmt::format("$LATENCY{0} << EOD\n{1}EOD\n$LONG{0} << EOD\n{2}EOD\n", index,
                          latency_blocks[index], long_lived_blocks[index]);
  }
  script += fmt::format("$FAILURES << EOD\n{}EOD\n", failures_block);

  script += fmt::format("set xrange [0:{:.3f}]\nset grid\nset key outside right top\n", end_s);
  script += "set xlabel 'seconds since the probe started'\n";
  int object = 0;
  if (summary.rollout) {
    script += fmt::format(
        "set object {} rect from {:.6f}, graph 0 to {:.6f}, graph 1 fc rgb '#e8e8e8' "
        "fs solid 1.0 noborder behind\n",
        ++object, seconds(summary.rollout->start), seconds(summary.rollout->end));
  }
  if (summary.switch_over && summary.switch_over->window.length() >= Offset{0}) {
    script += fmt::format(
        "set object {} rect from {:.6f}, graph 0 to {:.6f}, graph 1 fc rgb '#ffe4b3' "
        "fs solid 1.0 noborder behind\n",
        ++object, seconds(summary.switch_over->window.start),
        seconds(summary.switch_over->window.end));
  }
  int arrow = 0;
  for (const Mark& mark : report.marks()) {
    script += fmt::format(
        "set arrow {0} from {1:.6f}, graph 0 to {1:.6f}, graph 1 nohead dt 2 lc rgb '#404040'\n"
        "set label {0} {2} at {1:.6f}, graph 0.98 rotate by 90 right font 'sans,8'\n",
        ++arrow, seconds(mark.at), gnuplot_string(mark.name));
  }

  script +=
      fmt::format("set multiplot layout 2,1 title {}\n",
                  gnuplot_string(fmt::format(
                      "{}{}: {} requests, {} failed (grey: rollout window, orange: both "
                      "versions answering)",
                      report.info().url,
                      report.info().host_header.empty() ? "" : " Host " + report.info().host_header,
                      summary.requests, summary.failed)));

  std::vector<std::string> rate_plots;
  std::vector<std::string> latency_plots;
  for (const auto& [version, index] : colour_index) {
    const std::string title = gnuplot_string(version.empty() ? "no X-App-Version" : version);
    const std::string colour = colour_of(index, version);
    rate_plots.push_back(fmt::format("$RATE using 1:{} with steps lw 2 lc rgb '{}' title {}",
                                     index + 2, colour, title));
    latency_plots.push_back(fmt::format(
        "$LATENCY{} using 1:2 with points pt 7 ps 0.4 lc rgb '{}' title {}", index, colour, title));
    if (!long_lived_blocks[index].empty()) {
      latency_plots.push_back(fmt::format(
          "$LONG{} using 1:2 with points pt 9 ps 1.5 lc rgb '{}' notitle", index, colour));
    }
  }
  if (summary.failed > 0) {
    rate_plots.push_back(
        fmt::format("$RATE using 1:{} with steps lw 2 lc rgb '{}' title 'failures'",
                    colour_index.size() + 2, kFailureColour));
    latency_plots.push_back(
        fmt::format("$FAILURES using 1:2 with points pt 2 ps 1.5 lw 2 lc rgb '{}' title 'failed'",
                    kFailureColour));
  }
  const auto join = [](const std::vector<std::string>& parts) {
    std::string out;
    for (const std::string& part : parts) {
      out += (out.empty() ? "" : ", \\\n     ") + part;
    }
    return out;
  };
  script += fmt::format(
      "set title 'responses per second by version, failures per second in red (by completion "
      "time)'\n"
      "set ylabel 'per second'\nset yrange [0:*]\nplot {}\n",
      join(rate_plots));
  script += fmt::format(
      "set title 'latency of each request by start time (dots: short requests, triangles: long "
      "requests and streams, crosses: failed)'\nset ylabel 'ms'\nset logscale y\nset yrange "
      "[*:*]\nplot {}\n",
      join(latency_plots));
  script += "unset multiplot\n";
  return script;
}

void Report::write_chart(const fs::path& path) const {
  if (records_.empty()) {
    throw ChartError("chart " + path.string() + ": the report has no requests to draw");
  }
  (void)terminal_for(path);  // reject a bad extension before writing anything
  fs::path script_path = path;
  script_path.replace_extension(".gp");
  {
    std::ofstream script(script_path, std::ios::trunc);
    script << chart_script(*this, path);
    script.close();
    if (!script) {
      throw ChartError("cannot write the chart script " + script_path.string());
    }
  }
  std::error_code ignored;
  fs::remove(path, ignored);  // so that success means gnuplot wrote it now
  const auto [status, output] = run_gnuplot(script_path);
  if (status != 0 || !fs::exists(path)) {
    fs::remove(path, ignored);  // never leave a half-drawn chart behind
    throw ChartError(fmt::format("gnuplot failed (exit {}, script kept at {}): {}", status,
                                 script_path.string(), output));
  }
}

}  // namespace deployapps::probe

// Timing loops run in a child process: a benchmark re-executes itself as the looping command (under
// a tracer, the agent, strace, ...), the loop writes its ns per call to a file, the parent reads it.
// Shared by bench_syscalls and bench_uprobes.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace child_loop {

// A fresh result file for one run (`tag`: the benchmark's name).
inline std::string tmp_file(const char* tag) {
  static int k = 0;
  return std::string("/tmp/") + tag + "." + std::to_string(getpid()) + "." + std::to_string(k++);
}

// In the child: the loop's ns per call.
inline bool write_result(const char* out, double ns) {
  FILE* f = std::fopen(out, "w");
  if (!f) return false;
  std::fprintf(f, "%.2f\n", ns);
  std::fclose(f);
  return true;
}

inline std::optional<double> read_result(const std::string& path) {
  std::ifstream in(path);
  double v;
  if (!(in >> v)) return std::nullopt;
  std::filesystem::remove(path);
  return v;
}

// Runs argv to its end (quiet: its output to /dev/null) and returns what the loop wrote to `out`;
// nullopt when the command failed.
inline std::optional<double> run_and_read(std::vector<std::string> argv, const std::string& out, bool quiet) {
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> av;
    for (auto& a : argv) av.push_back(a.data());
    av.push_back(nullptr);
    if (quiet && (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))) _exit(126);
    execvp(av[0], av.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return std::nullopt;
  return read_result(out);
}

// The best (lowest) of `reps` runs; nullopt when any run fails.
inline std::optional<double> best(int reps, const std::function<std::optional<double>()>& f) {
  std::optional<double> b;
  for (int i = 0; i < reps; ++i) {
    auto v = f();
    if (!v) return std::nullopt;
    if (!b || *v < *b) b = v;
  }
  return b;
}

}  // namespace child_loop

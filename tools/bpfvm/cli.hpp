// The bpfvm CLI: each command lives in its own cmd_*.cpp and registers itself here.
// The CLI uses only the public API (include/bpfvm/).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bpfvm/result.hpp"

namespace bpfvm::cli {

// Exit codes (docs/cli.md): 0 success, 1 program/object rejected or failed, 2 usage or I/O error.
enum Exit { kOk = 0, kFailed = 1, kUsage = 2 };

// A command adds its subcommand to `app` and sets `run` to what executes it; run returns the exit code.
struct CommandDef {
  const char* name;
  std::function<void(CLI::App& app, std::function<int()>& run)> setup;
  // bpftool-style keyword commands (map, prog, btf) read -j/-p among their own words; for them
  // -j/-p may also come before the command (`bpfvm -j map show`), as bpftool takes them.
  bool format_flags_before = false;
};

std::vector<CommandDef>& commands();

struct RegisterCommand {
  RegisterCommand(const char* name, std::function<void(CLI::App&, std::function<int()>&)> setup,
                  bool format_flags_before = false) {
    commands().push_back(CommandDef{name, std::move(setup), format_flags_before});
  }
};

// Prints "bpfvm: <message>" on stderr and returns `code`.
int fail(int code, const std::string& message);
int fail(int code, const Diagnostic& diag, const std::string& context = "");

// Limits on what the CLI reads (a file larger than its limit is refused, not read to the end).
constexpr size_t kMaxProgramFile = size_t{64} << 20;   // ELF objects, assembly, bytecode
constexpr size_t kMaxDataFile = size_t{64} << 20;      // --data-in (memory or packet)
constexpr size_t kMaxCtxFile = size_t{1} << 20;        // --ctx-in (a context struct)

// Reads a whole file of at most max_bytes; on error (missing, a directory, unreadable, too large)
// returns false and sets err to "cannot read <path>: <reason>". `what` names the limit's use.
bool read_file(const std::string& path, std::string& out, std::string& err, size_t max_bytes = kMaxProgramFile,
               const char* what = "a program file");

// "unknown program type 'x'; bpfvm knows: xdp, socket_filter, ..." (for --type).
std::string unknown_type_message(const std::string& option, const std::string& name);
bool write_file(const std::string& path, const void* data, size_t size, std::string& err);

}  // namespace bpfvm::cli

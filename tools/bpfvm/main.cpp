// bpfvm command-line entry point. Commands register themselves (see cli.hpp).
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include "cli.hpp"

namespace bpfvm::cli {

std::vector<CommandDef>& commands() {
  static std::vector<CommandDef> list;
  return list;
}

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "bpfvm: %s\n", message.c_str());
  return code;
}

int fail(int code, const Diagnostic& diag, const std::string& context) {
  std::string msg = context.empty() ? diag.to_string() : context + ": " + diag.to_string();
  return fail(code, msg);
}

bool read_file(const std::string& path, std::string& out, std::string& err, size_t max_bytes, const char* what) {
  // Read with a bound, not to the end: /dev/zero or a pipe must not fill memory.
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    err = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    std::fclose(f);
    err = "cannot read " + path + ": " + std::strerror(EISDIR);
    return false;
  }
  out.clear();
  char buf[65536];
  while (true) {
    size_t n = std::fread(buf, 1, sizeof buf, f);
    if (n > 0) {
      if (out.size() + n > max_bytes) {
        std::fclose(f);
        err = "cannot read " + path + ": larger than " + std::to_string(max_bytes) + " bytes, the limit for " + what;
        return false;
      }
      out.append(buf, n);
    }
    if (n < sizeof buf) break;
  }
  bool bad = std::ferror(f);
  int e = errno;
  std::fclose(f);
  if (bad) {
    err = "cannot read " + path + ": " + std::strerror(e);
    return false;
  }
  return true;
}

bool write_file(const std::string& path, const void* data, size_t size, std::string& err) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    err = "cannot write " + path + ": " + std::strerror(errno);
    return false;
  }
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) {
    err = "cannot write " + path + ": write error";
    return false;
  }
  return true;
}

}  // namespace bpfvm::cli

int main(int argc, char** argv) {
  using namespace bpfvm::cli;
  CLI::App app{"bpfvm - a user-space eBPF platform", "bpfvm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "bpfvm 0.1.0");
  std::function<int()> run;
  for (auto& c : commands()) c.setup(app, run);
  // bpftool's -j/-p before the command: moved after the command name for the keyword commands,
  // which read them among their own words.
  std::vector<char*> args(argv, argv + argc);
  size_t lead = 1;
  auto is_format_flag = [](const std::string& a) { return a == "-j" || a == "--json" || a == "-p" || a == "--pretty"; };
  while (lead < args.size() && is_format_flag(args[lead])) ++lead;
  if (lead > 1 && lead < args.size()) {
    const CommandDef* cmd = nullptr;
    for (auto& c : commands())
      if (c.name == std::string(args[lead])) cmd = &c;
    if (cmd && !cmd->format_flags_before)
      return fail(kUsage, std::string("'") + args[1] + "' before the command is taken by map, prog and btf; give it after '" +
                              args[lead] + "' (bpfvm " + args[lead] + " --help)");
    if (cmd) std::rotate(args.begin() + 1, args.begin() + lead, args.begin() + lead + 1);
  }
  argc = int(args.size());
  argv = args.data();
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (auto& c : commands()) known = known || c.name == std::string(argv[1]);
    if (!known) return fail(kUsage, std::string("unknown command '") + argv[1] + "'; run 'bpfvm --help' for the list");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "bpfvm: %s\n", e.what());
    std::fprintf(stderr, "Run 'bpfvm --help' for usage.\n");
    return kUsage;
  }
  if (!run) return fail(kUsage, "no command given");
  try {
    return run();
  } catch (const std::exception& e) {
    return fail(kUsage, std::string("internal error: ") + e.what());
  }
}

// bpfvm command-line entry point. Commands register themselves (see cli.hpp).
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

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

bool read_file(const std::string& path, std::string& out, std::string& err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    err = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    err = "cannot read " + path + ": read error";
    return false;
  }
  out = ss.str();
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

// bpftool-style verb commands (`bpfvm map ...`, `bpfvm prog ...`): the arguments after the verb, -j/-p
// anywhere after the command, and bpftool's output rules for errors and silent successes.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "cli.hpp"

namespace bpfvm::cli {

struct VerbCtx {
  std::vector<std::string> args;  // after the verb, -j/-p removed
  bool as_json = false, pretty = false;
  void print(const nlohmann::ordered_json& j) const { std::printf("%s\n", j.dump(pretty ? 2 : -1).c_str()); }
  // Errors: {"error": "..."} on stdout under -j (bpftool), else "bpfvm: ..." on stderr.
  int error(int code, const std::string& msg) const {
    if (as_json) {
      print(nlohmann::ordered_json::object({{"error", msg}}));
      return code;
    }
    return fail(code, msg);
  }
  // Success without output: bpftool prints `null` under -j.
  int done() const {
    if (as_json) std::printf("null\n");
    return kOk;
  }
};

// Registers `name` as a command whose first free argument is a verb handed to `run_verb`.
inline void register_verb_command(CLI::App& app, std::function<int()>& run, const char* name, const char* help,
                                  const char* verbs_hint, int (*run_verb)(const std::string&, VerbCtx&)) {
  auto* cmd = app.add_subcommand(name, help);
  cmd->prefix_command();
  cmd->allow_extras();
  cmd->callback([cmd, &run, name, verbs_hint, run_verb] {
    std::vector<std::string> raw = cmd->remaining();
    run = [raw, name, verbs_hint, run_verb] {
      VerbCtx c;
      std::string verb;
      for (const std::string& a : raw) {
        if (a == "-j" || a == "--json") c.as_json = true;
        else if (a == "-p" || a == "--pretty") c.as_json = c.pretty = true;
        else if (verb.empty()) verb = a;
        else c.args.push_back(a);
      }
      if (verb.empty()) return c.error(kUsage, std::string(name) + ": a verb is needed (" + verbs_hint + ")");
      return run_verb(verb, c);
    };
  });
}

}  // namespace bpfvm::cli

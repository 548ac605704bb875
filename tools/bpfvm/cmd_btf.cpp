// bpfvm btf dump file FILE [format raw|c] [-j]: bpftool's BTF dump (docs/cli.md "bpfvm btf").
#include <cstdio>
#include <nlohmann/json.hpp>

#include "bpfvm/btf.hpp"
#include "cli.hpp"

namespace bpfvm::cli {
namespace {

int btf_command(const std::vector<std::string>& raw) {
  bool json = false, pretty = false;
  std::vector<std::string> a;
  for (const auto& s : raw) {
    if (s == "-j" || s == "--json") json = true;
    else if (s == "-p" || s == "--pretty") json = pretty = true;
    else a.push_back(s);
  }
  auto error = [&](int code, const std::string& msg) {
    if (json) {
      std::printf("%s\n", nlohmann::json{{"error", msg}}.dump().c_str());
      return code;
    }
    return fail(code, msg);
  };
  if (a.size() < 3 || a[0] != "dump" || a[1] != "file")
    return error(kUsage, "usage: bpfvm btf dump file FILE [format raw|c]");
  BtfDumpFormat f = BtfDumpFormat::Raw;
  if (a.size() == 5 && a[3] == "format") {
    if (a[4] == "raw") f = BtfDumpFormat::Raw;
    else if (a[4] == "c") f = BtfDumpFormat::C;
    else return error(kUsage, "unknown format '" + a[4] + "' (raw or c)");
  } else if (a.size() != 3) {
    return error(kUsage, "unexpected argument '" + a[3] + "'; usage: bpfvm btf dump file FILE [format raw|c]");
  }
  if (json && f == BtfDumpFormat::C) return error(kUsage, "format c has no JSON form");
  auto r = btf_dump_file(a[2], f, json);
  if (!r) return error(kFailed, r.error().message);
  if (json && pretty) std::printf("%s\n", nlohmann::json::parse(*r).dump(2).c_str());
  else if (json) std::printf("%s\n", r->c_str());
  else std::fwrite(r->data(), 1, r->size(), stdout);
  return kOk;
}

RegisterCommand reg_btf("btf", [](CLI::App& app, std::function<int()>& run) {
  auto* cmd = app.add_subcommand("btf", "bpftool's btf dump (docs/cli.md)");
  cmd->prefix_command();
  cmd->allow_extras();
  cmd->callback([cmd, &run] {
    std::vector<std::string> raw = cmd->remaining();
    run = [raw] { return btf_command(raw); };
  });
}, true);

}  // namespace
}  // namespace bpfvm::cli

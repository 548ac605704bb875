// Parser of the data-driven verifier cases (tests/verifier_cases/*.cases, format in its README.md).
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bpfvm/asm.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/map.hpp"
#include "bpfvm/verifier.hpp"

namespace bpfvm::vtest {

struct Expect {
  bool accept = true;
  std::string message;  // substring of the rejection message
};

struct Case {
  std::string where;  // file:line
  std::string name;
  std::string type = "mem";
  int64_t mem_size = -1;
  std::vector<MapSpec> maps;
  Expect privileged, strict;
  bool kernel = true;
  std::vector<Insn> insns;
  std::string error;  // parse/assembly error

  VerifyOptions options(RuleSet rules) const {
    VerifyOptions o;
    o.type = find_prog_type(type);
    o.rules = rules;
    o.maps = maps;
    o.mem_size = mem_size;
    return o;
  }
};

inline std::string trim(std::string s) {
  auto h = s.find('#');
  if (h != std::string::npos) s = s.substr(0, h);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

inline Expect parse_expect(const std::string& v) {
  Expect e;
  if (v.rfind("accept", 0) == 0) return e;
  e.accept = false;
  if (v.size() > 7) e.message = trim(v.substr(7));
  return e;
}

inline std::vector<Case> load_cases(const std::filesystem::path& dir) {
  std::vector<Case> out;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".cases") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f);
    std::string line;
    int lineno = 0;
    Case* c = nullptr;
    bool in_code = false, strict_set = false;
    std::string code;
    auto finish = [&]() {
      if (!c) return;
      if (!strict_set) c->strict = c->privileged;
      auto insns = assemble_auto(code, [](std::string_view n) { return kernel_helper_id(n); });
      if (!insns) c->error = "assembly: " + insns.error().to_string();
      else c->insns = std::move(*insns);
      if (!find_prog_type(c->type)) c->error = "unknown program type " + c->type;
    };
    while (std::getline(in, line)) {
      ++lineno;
      if (line.rfind("== ", 0) == 0) {
        finish();
        out.emplace_back();
        c = &out.back();
        c->where = f.filename().string() + ":" + std::to_string(lineno);
        c->name = trim(line.substr(3));
        in_code = strict_set = false;
        code.clear();
        continue;
      }
      if (!c) continue;
      if (in_code) {
        code += line + "\n";
        continue;
      }
      std::string t = trim(line);
      if (t.empty()) continue;
      if (t == "---") {
        in_code = true;
        continue;
      }
      auto colon = t.find(':');
      if (colon == std::string::npos) {
        c->error = "expected 'key: value' or '---' at line " + std::to_string(lineno);
        continue;
      }
      std::string key = t.substr(0, colon), val = trim(t.substr(colon + 1));
      if (key == "type") c->type = val;
      else if (key == "mem-size") c->mem_size = std::stoll(val);
      else if (key == "privileged") c->privileged = parse_expect(val);
      else if (key == "strict") { c->strict = parse_expect(val); strict_set = true; }
      else if (key == "kernel") c->kernel = val != "skip";
      else if (key == "map") {
        std::istringstream ss(val);
        std::string tname;
        MapSpec m;
        ss >> tname >> m.key_size >> m.value_size >> m.max_entries;
        if (!(ss >> m.flags)) m.flags = 0;
        int t = map_type_from_name(tname);
        if (t < 0) t = map_type_from_name("BPF_MAP_TYPE_" + tname);
        if (t < 0) c->error = "unknown map type " + tname;
        m.type = static_cast<uint32_t>(t < 0 ? 0 : t);
        m.name = "m" + std::to_string(c->maps.size());
        c->maps.push_back(m);
      } else {
        c->error = "unknown key '" + key + "' at line " + std::to_string(lineno);
      }
    }
    finish();
  }
  return out;
}

}  // namespace bpfvm::vtest

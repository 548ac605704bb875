// MAP arguments of the map and prog verbs: `pinned FILE`, `name NAME` or `id N` (maps of the pin
// root), as bpftool takes them.
#pragma once

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bpfvm/map.hpp"

namespace bpfvm::cli {

// Regular files under root (recursively, at most 100,000, sorted) whose first bytes start with
// `magic`; names starting with `skip_prefix` (when not empty) are passed over.
inline std::vector<std::string> find_files_starting_with(const std::string& root, const std::string& magic,
                                                         const std::string& skip_prefix = "") {
  std::vector<std::string> out, dirs_left{root};
  while (!dirs_left.empty() && out.size() < 100000) {
    std::string d = dirs_left.back();
    dirs_left.pop_back();
    DIR* dp = opendir(d.c_str());
    if (!dp) continue;
    while (dirent* e = readdir(dp)) {
      std::string n = e->d_name;
      if (n == "." || n == ".." || (!skip_prefix.empty() && n.rfind(skip_prefix, 0) == 0)) continue;
      std::string p = d + "/" + n;
      struct stat st;
      if (lstat(p.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        dirs_left.push_back(p);
      } else if (S_ISREG(st.st_mode) && static_cast<size_t>(st.st_size) >= magic.size()) {
        std::string head(magic.size(), '\0');
        FILE* f = std::fopen(p.c_str(), "rb");
        if (!f) continue;
        size_t got = std::fread(head.data(), 1, head.size(), f);
        std::fclose(f);
        if (got == head.size() && head == magic) out.push_back(p);
      }
    }
    closedir(dp);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Every bpfvm map file under dir (the store's own temporary files skipped).
inline std::vector<std::string> list_pinned_maps(const std::string& dir) {
  return find_files_starting_with(dir, "BPFVMMAP", ".bpfvm-");
}

// Opens the MAP that starts at args[*i] and advances *i past it.
inline Result<std::shared_ptr<Map>> open_map_ref(const std::vector<std::string>& args, size_t* i) {
  if (*i + 1 >= args.size())
    return make_error(ErrorCode::InvalidArgument, "MAP expected: pinned FILE, name NAME or id N");
  const std::string kind = args[*i], what = args[*i + 1];
  *i += 2;
  if (kind == "pinned") return open_pinned_map(what);
  if (kind == "name" || kind == "id") {
    char* end = nullptr;
    unsigned long long id = kind == "id" ? std::strtoull(what.c_str(), &end, 0) : 0;
    if (kind == "id" && (what.empty() || *end))
      return make_error(ErrorCode::InvalidArgument, "'" + what + "' is not a map id");
    const std::string root = pin_root();
    std::shared_ptr<Map> found;
    int matches = 0;
    for (const std::string& p : list_pinned_maps(root)) {
      auto m = open_pinned_map(p);
      if (!m) continue;
      bool hit = kind == "id" ? (*m)->store_id() == id : (*m)->spec().name == what.substr(0, 15);
      if (hit && (!found || (*m)->store_id() != found->store_id())) {
        ++matches;
        found = *m;
      }
    }
    if (!found) return make_error(ErrorCode::InvalidArgument, "no pinned map with " + kind + " " + what + " under " + root);
    if (matches > 1)
      return make_error(ErrorCode::InvalidArgument, "several pinned maps are named " + what + " under " + root + "; use pinned FILE");
    return found;
  }
  return make_error(ErrorCode::InvalidArgument, "MAP expected: pinned FILE, name NAME or id N (got '" + kind + "')");
}

}  // namespace bpfvm::cli

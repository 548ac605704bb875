// bpfvm btf dump: the raw form and its JSON against bpftool's (when bpftool is installed), the C
// form compiled by clang.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "bpfvm/btf.hpp"

namespace bpfvm {
namespace {

namespace fs = std::filesystem;

std::string run(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  std::array<char, 65536> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  if (rc) *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

std::string bpftool() {
  for (const char* p : {"/usr/sbin/bpftool", "/usr/bin/bpftool", "/sbin/bpftool"})
    if (access(p, X_OK) == 0) return p;
  return "";
}

std::vector<std::string> inputs() {
  std::vector<std::string> v;
  for (const char* o : {"st_pinned.bpf.o", "hl_maps.bpf.o", "ld_run.bpf.o"}) {
    std::string p = std::string(BPFVM_PROGS_DIR) + "/" + o;
    if (fs::exists(p)) v.push_back(p);
  }
  // The kernel's BTF takes seconds to compare: on request (BPFVM_BTF_VMLINUX=1).
  if (std::getenv("BPFVM_BTF_VMLINUX") && access("/sys/kernel/btf/vmlinux", R_OK) == 0)
    v.push_back("/sys/kernel/btf/vmlinux");
  return v;
}

TEST(BtfDump, RawAndJsonMatchBpftool) {
  const std::string tool = bpftool();
  if (tool.empty()) GTEST_SKIP() << "bpftool is not installed";
  for (const std::string& f : inputs()) {
    int rc = 0;
    std::string want = run(tool + " btf dump file " + f + " 2>/dev/null", &rc);
    if (rc != 0) continue;  // bpftool cannot read it: nothing to compare
    auto got = btf_dump_file(f, BtfDumpFormat::Raw);
    ASSERT_TRUE(got.ok()) << got.error().to_string();
    EXPECT_TRUE(*got == want) << f << ": the raw dump differs from bpftool's";
    std::string wj = run(tool + " -j btf dump file " + f + " 2>/dev/null");
    auto gj = btf_dump_file(f, BtfDumpFormat::Raw, true);
    ASSERT_TRUE(gj.ok());
    EXPECT_TRUE(nlohmann::json::parse(*gj) == nlohmann::json::parse(wj)) << f << ": the JSON dump differs from bpftool's";
  }
}

TEST(BtfDump, CFormCompiles) {
  std::string obj = std::string(BPFVM_PROGS_DIR) + "/st_pinned.bpf.o";
  if (!fs::exists(obj)) GTEST_SKIP() << obj << " not built";
  auto c = btf_dump_file(obj, BtfDumpFormat::C);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->rfind("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n", 0), 0u);
  EXPECT_NE(c->find("#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)"),
            std::string::npos);
  EXPECT_NE(c->find("struct xdp_md {\n\t__u32 data;"), std::string::npos) << *c;
  EXPECT_NE(c->find("#endif /* __VMLINUX_H__ */\n"), std::string::npos);
  if (system("command -v clang >/dev/null 2>&1") != 0) GTEST_SKIP() << "no clang to compile the header";
  std::string dir = fs::temp_directory_path() / ("bpfvm-btf-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir + "/vm.h") << *c;
  std::ofstream(dir + "/use.c") << "#include \"vm.h\"\nint f(struct xdp_md *m) { return m->data_end - m->data; }\n";
  int rc = 0;
  std::string out = run("clang -target bpf -fsyntax-only " + dir + "/use.c 2>&1", &rc);
  fs::remove_all(dir);
  EXPECT_EQ(rc, 0) << out;
}

TEST(BtfDump, MissingOrBtfLessFileIsAnError) {
  auto r = btf_dump_file("/nonexistent/file.o", BtfDumpFormat::Raw);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("/nonexistent/file.o"), std::string::npos);
}

}  // namespace
}  // namespace bpfvm

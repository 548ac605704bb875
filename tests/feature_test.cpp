// bpfvm feature probe: bpfvm's own support, the kernel's offer (asked item by item), both side by side.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

#include "bpfvm/helpers.hpp"
#include "bpfvm/kernel_probe.hpp"
#include "bpfvm/progtype.hpp"

namespace bpfvm {
namespace {

struct CliRun {
  int exit_code = -1;
  std::string out;  // stdout and stderr
};

CliRun cli(const std::string& args, const std::string& prefix = "") {
  std::string cmd = prefix + std::string(BPFVM_BINARY_DIR) + "/bpfvm " + args + " 2>&1";
  CliRun r;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) r.out.append(buf.data(), n);
  int st = pclose(f);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

bool contains(const nlohmann::json& list, const std::string& s) {
  for (const auto& e : list)
    if (e == s) return true;
  return false;
}

TEST(FeatureProbe, BpfvmOwnSupportInBpftoolShape) {
  auto r = cli("feature probe -j");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["program_types"]["have_xdp_prog_type"], true);
  EXPECT_EQ(j["map_types"]["have_hash_map_type"], true);
  EXPECT_EQ(j["map_types"]["have_ringbuf_map_type"], true);
  auto xdp = j["helpers"]["xdp_available_helpers"];
  EXPECT_TRUE(contains(xdp, "bpf_xdp_adjust_head"));
  EXPECT_TRUE(contains(xdp, "bpf_map_lookup_elem"));
  EXPECT_FALSE(contains(xdp, "bpf_skb_load_bytes"));  // a socket-buffer helper
  EXPECT_FALSE(contains(j["helpers"]["socket_filter_available_helpers"], "bpf_xdp_adjust_head"));
  EXPECT_TRUE(contains(j["misc"]["isa_versions"], "v4"));
  EXPECT_EQ(j["jit"]["arch"], "x86_64");
  auto text = cli("feature probe");
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("eBPF program_type xdp is available"), std::string::npos);
  EXPECT_NE(text.out.find("eBPF helpers supported for program type xdp:\n"), std::string::npos);
}

TEST(FeatureProbe, KernelOfferMatchesTheProbe) {
  if (!kernel::available()) GTEST_SKIP() << "kernel unavailable: " << kernel::unavailable_reason();
  auto r = cli("feature probe kernel -j");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["syscall_config"]["have_bpf_syscall"], true);
  EXPECT_EQ(j["program_types"]["have_socket_filter_prog_type"], true);
  EXPECT_TRUE(j["program_types"]["have_tracing_prog_type"].is_null());  // needs a BTF target: not probed
  // Every helper of XDP, as listed, is what the probe answers (whatever this kernel's build offers).
  auto xdp = j["helpers"]["xdp_available_helpers"];
  for (int32_t id : {1, 44, 54, 65}) {
    bool offered = kernel::probe_helper(kProgXdp, id).offer == kernel::Offer::Yes;
    EXPECT_EQ(contains(xdp, std::string(kernel_helper_proto(id)->name)), offered) << id;
  }
  EXPECT_TRUE(contains(xdp, "bpf_map_lookup_elem"));
  // Hidden from the probe, a helper disappears from the kernel's list.
  auto hidden = cli("feature probe kernel -j", "BPFVM_KERNEL_HIDE=xdp:bpf_map_lookup_elem ");
  ASSERT_EQ(hidden.exit_code, 0) << hidden.out;
  auto jh = nlohmann::json::parse(hidden.out);
  EXPECT_FALSE(contains(jh["helpers"]["xdp_available_helpers"], "bpf_map_lookup_elem"));
  EXPECT_TRUE(contains(jh["helpers"]["sched_cls_available_helpers"], "bpf_map_lookup_elem"));
}

TEST(FeatureProbe, CompareShowsBothColumns) {
  if (!kernel::available()) GTEST_SKIP() << "kernel unavailable: " << kernel::unavailable_reason();
  auto r = cli("feature probe compare -j");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  bool found = false;
  for (const auto& row : j["program_types"]) {
    if (row["name"] == "xdp") {
      found = true;
      EXPECT_EQ(row["bpfvm"], true);
      EXPECT_EQ(row["kernel"], true);
    }
  }
  EXPECT_TRUE(found);
  auto text = cli("feature probe compare");
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("helpers for xdp:"), std::string::npos);
}

TEST(FeatureProbe, RefusesWithoutPrivilegeAndBadTargets) {
  auto bad = cli("feature probe kernels");
  EXPECT_EQ(bad.exit_code, 2) << bad.out;
  EXPECT_NE(bad.out.find("unknown target 'kernels'"), std::string::npos) << bad.out;
  if (geteuid() != 0 || access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "needs root and setpriv to drop privilege";
  auto r = cli("feature probe kernel", "/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all ");
  if (r.exit_code == 0) GTEST_SKIP() << "this kernel lets unprivileged users use bpf()";
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("cannot probe the kernel"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace bpfvm

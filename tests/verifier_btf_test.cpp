// BTF-typed contexts (fentry/fexit/fmod_ret, tp_btf, lsm, iter): bpfvm's verdicts on
// tests/progs/bt_typed.bpf.c (ok_* accepted, bad_* refused with the kernel's reason) and agreement
// with the running kernel, loading the same programs with attach_btf_id set. Needs the kernel's BTF
// (/sys/kernel/btf/vmlinux); the kernel comparison skips the targets this kernel refuses to load even
// a trivial program for (probed per target).
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

#include <cstring>

#include "bpfvm/runtime.hpp"
#include "verifier_util.hpp"

namespace {

using namespace bpfvm;
namespace fs = std::filesystem;

const char* kVmlinux = "/sys/kernel/btf/vmlinux";

std::optional<Object> load_typed(std::string* why) {
  if (access(kVmlinux, R_OK) != 0) {
    *why = std::string(kVmlinux) + " is not readable: no kernel BTF to type the contexts with";
    return std::nullopt;
  }
  auto obj = load_object_file((fs::path(BPFVM_PROGS_DIR) / "bt_typed.bpf.o").string());
  if (!obj) {
    *why = obj.error().to_string();
    return std::nullopt;
  }
  return std::move(*obj);
}

// The refused programs whose reason (kReasons) the kernel's log gives in the same words.
const char* const kKernelSameReason[] = {"bad_iter_task_nullable", "bad_tp_btf_rcu_field_maybe_null",
                                         "bad_tp_btf_rcu_or_null_deref", "bad_tp_btf_rcu_or_null_helper",
                                         "bad_tp_btf_rcu_sock_cast", "bad_tp_btf_unlisted_field_helper",
                                         "bad_iter_sleepable_untrusted_helper", "bad_tp_btf_helper_wrong_struct"};

bool want_accept(const std::string& name) { return name.rfind("ok_", 0) == 0; }

// Why each refused program is refused (a part of bpfvm's message).
const std::map<std::string, std::string> kReasons = {
    {"bad_fentry_past_args", "func 'do_unlinkat' doesn't have 3-th argument"},
    {"bad_fentry_far_past_args", "doesn't have"},
    {"bad_fentry_ctx_write", "invalid bpf_context access off=0 size=8"},
    {"bad_fentry_ptr_narrow", "size 4 must be 8"},
    {"bad_fentry_misaligned", "offset 4 is not multiple of 8"},
    {"bad_fentry_struct_write", "only read is supported"},
    {"bad_fentry_beyond_struct", "access beyond struct filename"},
    {"bad_fentry_ptr_member_part", "cannot access ptr member name"},
    {"bad_fentry_var_off", "invalid variable offset"},
    {"bad_fentry_negative", "invalid negative access"},
    {"bad_fentry_untrusted_write", "cannot write into rdonly_mem"},
    {"bad_fexit_past_ret", "doesn't have 4-th argument"},
    {"bad_fexit_void_ret", "func 'free_uid' doesn't have 3-th argument"},
    {"bad_tp_btf_past_args", "func 'sched_switch' doesn't have 5-th argument"},
    {"bad_tp_btf_ret", "doesn't have"},
    {"bad_tp_btf_member_end", "access beyond the end of member tgid"},
    {"bad_tp_btf_current_task_beyond", "access beyond struct task_struct"},
    {"bad_tp_btf_helper_wrong_struct", "R1 is of type css_set but task_struct is expected"},
    {"bad_lsm_past_ret", "doesn't have 3-th argument"},
    {"bad_iter_task_nullable", "invalid mem access 'trusted_ptr_or_null_'"},
    {"bad_tp_btf_rcu_field_maybe_null", "off=-520 size=8"},
    {"bad_tp_btf_rcu_or_null_deref", "invalid mem access 'rcu_ptr_or_null_'"},
    {"bad_tp_btf_rcu_or_null_helper", "type=rcu_ptr_or_null_ expected=sock_common"},
    {"bad_tp_btf_rcu_sock_cast", "type=rcu_ptr_ expected=sock_common"},
    {"bad_tp_btf_unlisted_field_helper", "R1 type=untrusted_ptr_ expected=ptr_, trusted_ptr_, rcu_ptr_"},
    {"bad_iter_sleepable_untrusted_helper", "R1 type=untrusted_ptr_ expected=ptr_, trusted_ptr_, rcu_ptr_"},
};

TEST(VerifierBtf, TypedContextVerdicts) {
  std::string why;
  auto obj = load_typed(&why);
  if (!obj) GTEST_SKIP() << why;
  int n = 0;
  for (const ObjectProgram& p : obj->programs) {
    ASSERT_TRUE(p.ok()) << p.name << ": " << p.error;
    VerifyOptions o = verify_options_for(*obj, p);
    ASSERT_TRUE(o.attach_btf) << p.name << ": " << o.attach_error;
    auto r = verify(p.insns, o);
    ASSERT_TRUE(r) << p.name;
    EXPECT_EQ(r->accepted, want_accept(p.name)) << p.name << ": " << r->error.to_string();
    if (!want_accept(p.name)) {
      auto it = kReasons.find(p.name);
      ASSERT_NE(it, kReasons.end()) << p.name << " has no expected reason";
      EXPECT_NE(r->error.message.find(it->second), std::string::npos)
          << p.name << ": wanted '" << it->second << "', got: " << r->error.message;
    }
    ++n;
  }
  EXPECT_EQ(n, 41);
}

// The context's types come from the prototype: the same program verified untyped (no attach target)
// reads every slot as a number, typed it is refused where the kernel refuses it.
TEST(VerifierBtf, UntypedWithoutTarget) {
  std::string why;
  auto obj = load_typed(&why);
  if (!obj) GTEST_SKIP() << why;
  for (const ObjectProgram& p : obj->programs) {
    if (p.name != "bad_fentry_past_args") continue;
    VerifyOptions o = verify_options_for(*obj, p);
    o.attach_btf.reset();
    auto r = verify(p.insns, o);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->accepted) << r->error.to_string();
  }
}

// A target the BTF does not have is a rejection naming it.
TEST(VerifierBtf, UnknownTarget) {
  if (access(kVmlinux, R_OK) != 0) GTEST_SKIP() << kVmlinux << " is not readable";
  auto a = resolve_attach_btf(BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, "no_such_function_in_the_kernel");
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message.find("no function no_such_function_in_the_kernel"), std::string::npos)
      << a.error().message;
  auto t = resolve_attach_btf(BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, "sched_switch");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->get()->type_name, "btf_trace_sched_switch");
  EXPECT_GT(t->get()->btf_id, 0u);
}

// A verified fexit program runs with given u64 arguments (dfd, name, the return value).
TEST(VerifierBtf, FexitRunsWithGivenArguments) {
  std::string why;
  auto obj = load_typed(&why);
  if (!obj) GTEST_SKIP() << why;
  auto live = instantiate(*obj);
  ASSERT_TRUE(live.ok()) << live.error().to_string();
  const ObjectProgram* fexit = nullptr;
  for (const ObjectProgram& p : obj->programs)
    if (p.name == "ok_fexit_ret") fexit = &p;
  ASSERT_NE(fexit, nullptr);
  PrepareOptions po;
  po.rules = RuleSet::Privileged;
  VerifyReport rep;
  po.report = &rep;
  auto prep = prepare_program(*fexit, *live, nullptr, po);
  ASSERT_TRUE(prep.ok()) << prep.error().to_string();
  EXPECT_TRUE(prep->verified);
  auto args = [](uint64_t dfd, uint64_t ret) {
    std::vector<uint8_t> b(3 * 8);
    const uint64_t v[3] = {dfd, 0, ret};
    std::memcpy(b.data(), v, sizeof(v));
    return b;
  };
  auto r = test_run(*prep, {}, args(7, 0));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->retval, 7u);  // ret == 0: dfd
  r = test_run(*prep, {}, args(7, static_cast<uint64_t>(-2)));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->retval, 0u);
}

TEST(VerifierBtf, AgreesWithKernel) {
  std::string why;
  auto obj = load_typed(&why);
  if (!obj) GTEST_SKIP() << why;
  if (!kernel::available()) GTEST_SKIP() << kernel::unavailable_reason();
  int compared = 0, agree = 0;
  std::map<std::string, std::string> not_judged;  // section -> why the kernel cannot judge it here
  for (const ObjectProgram& p : obj->programs) {
    VerifyOptions o = verify_options_for(*obj, p);
    ASSERT_TRUE(o.attach_btf) << p.name << ": " << o.attach_error;
    vtest::KernelVerdict k = vtest::kernel_verify_object(*obj, p, 1, false);
    if (!k.ran) {
      not_judged[p.section] = k.skip;
      continue;
    }
    auto r = verify(p.insns, o);
    ASSERT_TRUE(r);
    ++compared;
    if (r->accepted == k.accepted) ++agree;
    std::string klog = k.log.size() > 600 ? k.log.substr(k.log.size() - 600) : k.log;
    EXPECT_EQ(r->accepted, k.accepted) << p.name << "\n  kernel: " << klog << "\n  bpfvm: " << r->error.to_string();
    for (const char* n : kKernelSameReason)
      if (p.name == n && !k.accepted)
        EXPECT_NE(k.log.find(kReasons.at(p.name)), std::string::npos)
            << p.name << ": the kernel's reason differs\n  kernel: " << klog;
  }
  for (const auto& [sec, reason] : not_judged) std::printf("not judged: %s: %s\n", sec.c_str(), reason.c_str());
  std::printf("BTF-typed programs, verifier vs kernel: %d of %d agree\n", agree, compared);
  if (compared == 0) GTEST_SKIP() << "the kernel loads none of the targets";
}

}  // namespace

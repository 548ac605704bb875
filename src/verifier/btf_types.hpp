// BTF-typed contexts and kernel-object pointers: the attach target's prototype (fentry/fexit/fmod_ret,
// tp_btf, lsm, iter) resolved in kernel BTF, context argument accesses typed by it, and loads
// through BTF pointers checked against the struct layouts, with the kernel's rules
// (btf_ctx_access, btf_struct_walk).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

struct btf;

namespace bpfvm::core {
class TargetBtf;
}

namespace bpfvm::verifier {

// Behind AttachBtf::impl.
struct AttachProto {
  std::shared_ptr<const core::TargetBtf> holder;  // keeps the BTF alive
  const struct btf* btf = nullptr;
  uint32_t proto = 0;            // FUNC_PROTO id
  bool skip_first = false;       // tp_btf: btf_trace_NAME's first argument (void *__data) is not the program's
  uint32_t expected_attach = 0;  // BPF_TRACE_FENTRY, ...
  uint32_t prog_type = 0;
  bool args_trusted = false;     // the kernel's prog_args_trusted: tp_btf, iter, lsm
  bool iter = false;             // iter: the arguments after `meta` may be NULL (end of iteration)
  bool sleepable = false;        // BPF_F_SLEEPABLE (".s" sections): runs outside an RCU read section
  std::string name;              // the target ("do_unlinkat")
};

// What a context load gives.
struct CtxArg {
  std::string error;        // non-empty: the access is refused (the kernel's log line)
  bool pointer = false;     // a BTF pointer; else a scalar
  uint32_t btf_id = 0;      // the struct it points to
  bool trusted = false;
  bool nullable = false;
  bool lsm_retval = false;  // an LSM program's return value slot (the kernel gives it the hook's range)
};
CtxArg ctx_arg_access(const AttachProto& p, int64_t off, int size, bool write);

// What a load through a BTF pointer gives.
struct BtfLoad {
  std::string error;
  enum What : uint8_t { Scalar, Ptr, UntrustedMem } what = Scalar;
  uint32_t btf_id = 0;      // Ptr: the struct pointed to
  bool untrusted = false;   // Ptr: walked through a union of several members
  std::string field;        // Ptr: the pointer member's name (through nested structs: the innermost)
};
BtfLoad btf_struct_access(const struct btf* b, uint32_t struct_id, int64_t off, int size);

// How much of its parent's trust a pointer member keeps: the kernel declares, as BTF structs named
// `<struct>__safe_trusted`, `__safe_trusted_or_null`, `__safe_rcu` and `__safe_rcu_or_null`, the
// pointer members of <struct> that stay trusted (or RCU-protected), maybe NULL for the `_or_null`
// lists. A member is listed when the list has a pointer member of the same name pointing to the same
// struct (the kernel's btf_nested_type_is_trusted). A BTF without the lists lists nothing.
enum class FieldTrust : uint8_t { None, Trusted, TrustedOrNull, Rcu, RcuOrNull };
FieldTrust btf_field_trust(const struct btf* b, uint32_t parent_struct, const std::string& field, uint32_t ptr_struct);

// "task_struct" (the struct's name, "(anon)" when it has none).
std::string btf_struct_name(const struct btf* b, uint32_t id);
// Does a pointer to `have` pass for a pointer to struct `want_name`: the same struct, or `want_name`
// at offset 0 of it, member after first member (the kernel's btf_struct_ids_match)?
bool btf_struct_is(const struct btf* b, uint32_t have, const char* want_name);
// The id of struct `name`, 0 when the BTF has none.
uint32_t btf_struct_id(const struct btf* b, const char* name);

}  // namespace bpfvm::verifier

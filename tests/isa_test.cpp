// The decoder's per-instruction checks and the structural checks: each bad input gives one error
// whose message and instruction index are pinned here.
#include <gtest/gtest.h>

#include "asm_test_util.hpp"
#include "bpfvm/asm.hpp"
#include "bpfvm/insn.hpp"

using namespace bpfvm;

namespace {

RawInsn R(uint8_t code, uint8_t dst = 0, uint8_t src = 0, int16_t off = 0, int32_t imm = 0) {
  RawInsn r;
  r.code = code;
  r.dst = dst;
  r.src = src;
  r.off = off;
  r.imm = imm;
  return r;
}
const RawInsn kExit = R(0x95);
const RawInsn kMov0 = R(0xb7, 0, 0, 0, 0);

struct DecodeCase {
  const char* what;
  std::vector<RawInsn> prog;
  int isa;
  int64_t pc;
  const char* message;
};

}  // namespace

TEST(IsaDecode, RejectsMalformedInstructions) {
  const DecodeCase cases[] = {
      {"unknown opcode", {kMov0, R(0xff), kExit}, 4, 1, "unknown opcode 0xff"},
      {"unknown opcode (class ld, mode mem)", {R(0x60), kExit}, 4, 0, "unknown opcode 0x60"},
      {"reserved dst", {kMov0, R(0x95, 1)}, 4, 1, "exit: reserved dst field is 1 (must be 0)"},
      {"reserved src", {R(0x07, 1, 2, 0, 5), kExit}, 4, 0, "add: reserved src field is 2 (must be 0)"},
      {"reserved off", {R(0x0f, 1, 2, 3), kExit}, 4, 0, "add: reserved off field is 3 (must be 0)"},
      {"reserved imm", {R(0xbf, 1, 2, 0, 9), kExit}, 4, 0, "mov: reserved imm field is 9 (must be 0)"},
      {"reserved imm in ja", {R(0x05, 0, 0, 0, 1), kExit}, 4, 0, "ja: reserved imm field is 1 (must be 0)"},
      {"bad selector (byte swap width)", {R(0xd4, 1, 0, 0, 8), kExit}, 4, 0,
       "opcode 0xd4 (le16) has invalid imm value 8"},
      {"bad selector (lddw src)", {R(0x18, 1, 7), R(0), kExit}, 4, 0, "opcode 0x18 (lddw) has invalid src value 7"},
      {"bad selector (atomic op)", {R(0xdb, 1, 2, 0, 0x02), kExit}, 4, 0,
       "opcode 0xdb (lock add) has invalid imm value 2"},
      {"bad dst register", {R(0xb7, 11), kExit}, 4, 0, "mov: invalid destination register r11"},
      {"bad src register", {R(0xbf, 1, 15), kExit}, 4, 0, "mov: invalid source register r15"},
      {"bad base register", {R(0x61, 1, 12, 0), kExit}, 4, 0, "ldxw: invalid source register r12"},
      {"write to r10 (alu)", {R(0xb7, 10, 0, 0, 1), kExit}, 4, 0, "mov: r10 is read-only (frame pointer)"},
      {"write to r10 (load)", {R(0x79, 10, 1, 0), kExit}, 4, 0, "ldxdw: r10 is read-only (frame pointer)"},
      {"write to r10 (lddw)", {R(0x18, 10), R(0), kExit}, 4, 0, "lddw: r10 is read-only (frame pointer)"},
      {"write to r10 (atomic fetch)", {R(0xdb, 1, 10, 0, 0x01), kExit}, 4, 0,
       "lock fetch add: r10 is read-only (frame pointer)"},
      {"truncated lddw", {kMov0, R(0x18, 1, 0, 0, 5)}, 4, 1, "lddw is truncated: its second slot is missing"},
      {"bad lddw second slot", {R(0x18, 1, 0, 0, 5), R(0x95), kExit}, 4, 1,
       "second slot of lddw must have opcode, registers and offset 0"},
      {"isa v4 (sdiv) at v3", {R(0x3f, 1, 2, 1), kExit}, 3, 0, "sdiv needs ISA v4 (cpu v3 requested)"},
      {"isa v4 (movsx) at v3", {R(0xbf, 1, 2, 8), kExit}, 3, 0, "movsx864 needs ISA v4 (cpu v3 requested)"},
      {"isa v4 (ldxsb) at v3", {R(0x91, 1, 2, 0), kExit}, 3, 0, "ldxsb needs ISA v4 (cpu v3 requested)"},
      {"isa v4 (ja32) at v3", {R(0x06, 0, 0, 0, 0), kExit}, 3, 0, "ja32 needs ISA v4 (cpu v3 requested)"},
      {"isa v3 (jmp32) at v2", {R(0x16, 1, 0, 0, 0), kExit}, 2, 0, "jeq32 needs ISA v3 (cpu v2 requested)"},
      {"isa v3 (atomic fetch) at v2", {R(0xdb, 1, 2, 0, 0x01), kExit}, 2, 0,
       "lock fetch add needs ISA v3 (cpu v2 requested)"},
      {"isa v2 (jlt) at v1", {R(0xa5, 1, 0, 0, 0), kExit}, 1, 0, "jlt needs ISA v2 (cpu v1 requested)"},
  };
  for (const auto& c : cases) {
    auto r = decode(c.prog, c.isa);
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_EQ(r.error().code, ErrorCode::Decode) << c.what;
    EXPECT_EQ(r.error().pc, c.pc) << c.what;
    EXPECT_EQ(r.error().message, c.message) << c.what;
  }
  // The same programs decode at the ISA version that has the instruction.
  EXPECT_TRUE(decode(std::vector<RawInsn>{R(0x3f, 1, 2, 1), kExit}, 4).ok());
  EXPECT_TRUE(decode(std::vector<RawInsn>{R(0xa5, 1, 0, 0, 0), kExit}, 2).ok());
}

TEST(IsaDecode, ByteLevelErrors) {
  std::vector<uint8_t> twelve(12, 0);
  auto r = decode_bytes(twelve);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "program size 12 is not a multiple of 8 bytes");
  EXPECT_EQ(r.error().to_string(), "program size 12 is not a multiple of 8 bytes");
  auto one = decode_bytes(to_bytes(std::vector<RawInsn>{kMov0, R(0x07, 1, 3, 0, 0)}));
  ASSERT_FALSE(one.ok());
  EXPECT_EQ(one.error().to_string(), "insn 1: add: reserved src field is 3 (must be 0)");
}

TEST(IsaDecode, LegacyCallxImmediateIsNormalized) {
  // Older encoders put callx's register in imm; decoding moves it to dst (the LLVM/Linux form).
  auto r = decode(std::vector<RawInsn>{R(0x8d, 0, 0, 0, 2), kExit});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ((*r)[0].op, Op::CALLX);
  EXPECT_EQ((*r)[0].dst, 2);
  EXPECT_EQ((*r)[0].imm, 0);
}

namespace {

struct StructureCase {
  const char* what;
  std::vector<RawInsn> prog;
  int64_t pc;
  const char* message;
};

}  // namespace

TEST(IsaStructure, RejectsBadPrograms) {
  const StructureCase cases[] = {
      {"jump past the end", {kMov0, R(0x05, 0, 0, 5), kExit}, 1, "jump out of range (target 7, program has 3 instructions)"},
      {"jump before the start", {kMov0, R(0x15, 0, 0, -3, 0), kExit}, 1,
       "jump out of range (target -1, program has 3 instructions)"},
      {"ja32 out of range", {R(0x06, 0, 0, 0, 100), kExit}, 0, "jump out of range (target 101, program has 2 instructions)"},
      {"jump into lddw", {R(0x05, 0, 0, 1), R(0x18, 1, 0, 0, 1), R(0), kExit}, 0, "jump into the middle of lddw (target 2)"},
      {"local call out of range", {R(0x85, 0, 1, 0, 9), kExit}, 0, "call out of range (target 10, program has 2 instructions)"},
      {"code address into lddw", {R(0x18, 1, 4, 0, 0), R(0), kExit}, 0, "code address into the middle of lddw (target 1)"},
      {"last is not exit", {kMov0, R(0xb7, 1, 0, 0, 2)}, 1, "last instruction must be exit or an unconditional jump, not mov"},
      {"last is a conditional jump", {kMov0, R(0x15, 0, 0, -2, 0)}, 1,
       "last instruction must be exit or an unconditional jump, not jeq"},
      {"last is lddw", {kMov0, R(0x18, 1, 0, 0, 2), R(0)}, 2,
       "last instruction must be exit or an unconditional jump, not lddw"},
  };
  for (const auto& c : cases) {
    auto r = decode(c.prog);
    ASSERT_TRUE(r.ok()) << c.what << ": " << r.error().to_string();
    Status s = check_structure(*r);
    ASSERT_FALSE(s.ok()) << c.what;
    EXPECT_EQ(s.error().code, ErrorCode::Structure) << c.what;
    EXPECT_EQ(s.error().pc, c.pc) << c.what;
    EXPECT_EQ(s.error().message, c.message) << c.what;
  }
  Status empty = check_structure(std::vector<Insn>{});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().message, "program is empty");
  EXPECT_EQ(empty.error().pc, -1);
  // Valid edge cases: a jump to the lddw itself, ending with ja, a backwards loop.
  auto ok = decode(std::vector<RawInsn>{R(0x05, 0, 0, 0), R(0x18, 1, 0, 0, 1), R(0), R(0x05, 0, 0, -4)});
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(check_structure(*ok).ok());
}

// Every conformance program decodes at v4 and passes the structural checks; the `-- raw` programs
// decode from their bytes as given.
TEST(IsaDecode, WholeConformanceSuite) {
  auto files = testutil::conformance_files();
  if (files.empty()) GTEST_SKIP() << "conformance suite not found under " << testutil::shared_dir();
  int n = 0;
  for (const auto& f : files) {
    std::vector<uint8_t> bytes;
    if (auto raw = f.sections.find("raw"); raw != f.sections.end()) {
      bytes = testutil::raw_words(raw->second);
    } else {
      auto a = assemble(f.sections.at("asm"), Syntax::Conformance);
      ASSERT_TRUE(a.ok()) << f.name << ": " << a.error().to_string();
      bytes = to_bytes(encode(*a));
    }
    auto d = decode_bytes(bytes);
    ASSERT_TRUE(d.ok()) << f.name << ": " << d.error().to_string();
    Status s = check_structure(*d);
    EXPECT_TRUE(s.ok()) << f.name << ": " << s.error().to_string();
    EXPECT_EQ(to_bytes(encode(*d)), bytes) << f.name;
    ++n;
  }
  EXPECT_EQ(n, static_cast<int>(files.size()));
  EXPECT_GE(n, 313);
}

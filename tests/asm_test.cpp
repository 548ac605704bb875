// Assembler and disassembler: both syntaxes, errors, golden strings and round-trip properties.
#include <fcntl.h>
#include <gelf.h>
#include <gtest/gtest.h>
#include <libelf.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "asm_test_util.hpp"
#include "bpfvm/asm.hpp"
#include "bpfvm/helpers.hpp"
#include "bpfvm/insn.hpp"
#include "kernel/oracle.hpp"

using namespace bpfvm;

namespace {

std::vector<uint8_t> bytes_of(const std::vector<Insn>& insns) { return to_bytes(encode(insns)); }

Diagnostic asm_error(std::string_view text, Syntax syntax) {
  auto r = assemble(text, syntax);
  EXPECT_FALSE(r.ok()) << "assembled unexpectedly: " << text;
  if (r.ok()) return {};
  EXPECT_EQ(r.error().code, ErrorCode::Assemble);
  return r.error();
}

}  // namespace

// Every program of the conformance suite assembles; where the file also has `-- raw`, the bytes agree.
TEST(AsmConformance, AssemblesWholeSuite) {
  auto files = testutil::conformance_files();
  if (files.empty()) GTEST_SKIP() << "conformance suite not found under " << testutil::shared_dir();
  int assembled = 0, with_raw = 0;
  for (const auto& f : files) {
    auto it = f.sections.find("asm");
    if (it == f.sections.end()) continue;
    auto r = assemble(it->second, Syntax::Conformance);
    ASSERT_TRUE(r.ok()) << f.name << ": " << r.error().to_string();
    ++assembled;
    EXPECT_TRUE(check_structure(*r).ok()) << f.name;
    if (auto raw = f.sections.find("raw"); raw != f.sections.end()) {
      EXPECT_EQ(bytes_of(*r), testutil::raw_words(raw->second)) << f.name;
      ++with_raw;
    }
    EXPECT_EQ(detect_syntax(it->second), Syntax::Conformance) << f.name;
  }
  EXPECT_GE(assembled, 300);
  EXPECT_GE(with_raw, 1);
}

TEST(AsmConformance, EncodesExactBytes) {
  struct Case {
    const char* text;
    std::vector<uint8_t> bytes;
  };
  const Case cases[] = {
      {"add32 %r1, 2", {0x04, 0x01, 0, 0, 2, 0, 0, 0}},
      {"add %r1, %r3", {0x0f, 0x31, 0, 0, 0, 0, 0, 0}},
      {"mov %r0, -1", {0xb7, 0x00, 0, 0, 0xff, 0xff, 0xff, 0xff}},
      {"ldxw %r0, [%r1+4]", {0x61, 0x10, 4, 0, 0, 0, 0, 0}},
      {"ldxh %r0, [%r1-4]", {0x69, 0x10, 0xfc, 0xff, 0, 0, 0, 0}},
      {"stxdw [%r10-8], %r1", {0x7b, 0x1a, 0xf8, 0xff, 0, 0, 0, 0}},
      {"stb [%r1], 0x11", {0x72, 0x01, 0, 0, 0x11, 0, 0, 0}},
      {"sdiv %r1, 3", {0x37, 0x01, 1, 0, 3, 0, 0, 0}},
      {"smod32 %r1, %r2", {0x9c, 0x21, 1, 0, 0, 0, 0, 0}},
      {"movsx1664 %r1, %r2", {0xbf, 0x21, 16, 0, 0, 0, 0, 0}},
      {"be16 %r3", {0xdc, 0x03, 0, 0, 16, 0, 0, 0}},
      {"le64 %r3", {0xd4, 0x03, 0, 0, 64, 0, 0, 0}},
      {"bswap32 %r3", {0xd7, 0x03, 0, 0, 32, 0, 0, 0}},
      {"swap32 %r3", {0xd7, 0x03, 0, 0, 32, 0, 0, 0}},
      {"neg32 %r2", {0x84, 0x02, 0, 0, 0, 0, 0, 0}},
      {"ja +2", {0x05, 0, 2, 0, 0, 0, 0, 0}},
      {"ja -1", {0x05, 0, 0xff, 0xff, 0, 0, 0, 0}},
      {"ja32 +70000", {0x06, 0, 0, 0, 0x70, 0x11, 0x01, 0}},
      {"jne %r0, 15, +3", {0x55, 0, 3, 0, 15, 0, 0, 0}},
      {"jsgt32 %r1, %r2, -2", {0x6e, 0x21, 0xfe, 0xff, 0, 0, 0, 0}},
      {"call 5", {0x85, 0, 0, 0, 5, 0, 0, 0}},
      {"call helper 5", {0x85, 0, 0, 0, 5, 0, 0, 0}},
      {"call local +3", {0x85, 0x10, 0, 0, 3, 0, 0, 0}},
      {"call runtime 7", {0x85, 0x20, 0, 0, 7, 0, 0, 0}},
      {"call %r2", {0x8d, 0x02, 0, 0, 0, 0, 0, 0}},
      {"callx %r2", {0x8d, 0x02, 0, 0, 0, 0, 0, 0}},
      {"exit", {0x95, 0, 0, 0, 0, 0, 0, 0}},
      {"lddw %r0, 0x1122334455667788",
       {0x18, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11}},
      {"lddw %r0, 2147483648", {0x18, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"lddw map_fd %r1, 3", {0x18, 0x11, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"lddw map_value_idx %r1, 3, 8", {0x18, 0x61, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0}},
      {"ldabsh 12", {0x28, 0, 0, 0, 12, 0, 0, 0}},
      {"ldindb %r1, 14", {0x50, 0x10, 0, 0, 14, 0, 0, 0}},
      {"lock add [%r10-8], %r1", {0xdb, 0x1a, 0xf8, 0xff, 0x00, 0, 0, 0}},
      {"lock fetch xor32 [%r10-4], %r3", {0xc3, 0x3a, 0xfc, 0xff, 0xa1, 0, 0, 0}},
      {"lock xchg [%r10-8], %r1", {0xdb, 0x1a, 0xf8, 0xff, 0xe1, 0, 0, 0}},
      {"lock cmpxchg32 [%r10-8], %r1", {0xc3, 0x1a, 0xf8, 0xff, 0xf1, 0, 0, 0}},
      {"ldxsb %r1, [%r2+1]", {0x91, 0x21, 1, 0, 0, 0, 0, 0}},
  };
  for (const auto& c : cases) {
    auto r = assemble(c.text, Syntax::Conformance);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.error().to_string();
    EXPECT_EQ(bytes_of(*r), c.bytes) << c.text;
  }
}

TEST(AsmConformance, LabelsAndDefaultExitLabel) {
  auto r = assemble(
      "  mov %r0, 0   # comment\n"
      "  jeq %r1, 0, done\n"
      "loop:\n"
      "  lddw %r2, 0x100000000\n"
      "  ja loop\n"
      "done: exit\n",
      Syntax::Conformance);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->size(), 6u);
  EXPECT_EQ((*r)[1].off, 3);   // to slot 5
  EXPECT_EQ((*r)[4].off, -3);  // to slot 2
  // `exit` names the first exit instruction when no label of that name exists.
  auto e = assemble("jne %r1, 0, exit\nmov %r0, 1\nexit\n", Syntax::Conformance);
  ASSERT_TRUE(e.ok()) << e.error().to_string();
  EXPECT_EQ((*e)[0].off, 1);
  auto l = assemble("mov %r1, 1\ncall local f\nexit\nf:\nmov %r0, 3\nexit\n", Syntax::Conformance);
  ASSERT_TRUE(l.ok()) << l.error().to_string();
  EXPECT_EQ((*l)[1].op, Op::CALL_LOCAL);
  EXPECT_EQ((*l)[1].imm, 1);
}

TEST(AsmConformance, LineEndingsAndByteOrderMark) {
  auto r = assemble("\xEF\xBB\xBFmov %r0, 1\r\nstart:\r\n\tja +0\r\nexit\r\n", Syntax::Conformance);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->size(), 3u);
  auto k = assemble("\xEF\xBB\xBFr0 = 1\r\nexit\r\n", Syntax::Kernel);
  ASSERT_TRUE(k.ok()) << k.error().to_string();
  EXPECT_EQ(k->size(), 2u);
  EXPECT_TRUE(assemble("", Syntax::Kernel).ok());
  EXPECT_TRUE(assemble("\n# only a comment\n", Syntax::Conformance)->empty());
}

TEST(AsmConformance, Errors) {
  struct Case {
    const char* text;
    int line, column;
    const char* message;
  };
  const Case cases[] = {
      {"mov %r0, 1\n\nmov32 %r11, 2\nexit", 3, 7, "unknown register %r11"},
      {"ja foo\nexit", 1, 4, "undefined label 'foo'"},
      {"mov %r1, 0x1ffffffff", 1, 10, "immediate 0x1ffffffff does not fit in 32 bits"},
      {"ldxw %r1, [%r2+40000]", 1, 15, "offset +40000 out of range (16-bit signed: -32768..32767)"},
      {"frob %r1", 1, 1, "unknown instruction 'frob'"},
      {"lock fetch nand [%r1], %r2", 1, 1, "unknown instruction 'lock fetch'"},
      {"add %r1", 1, 8, "expected ',' at end of line"},
      {"add %r1, %r2, %r3", 1, 13, "unexpected ', %r3' after the instruction"},
      {"a:\na:\nexit", 2, 1, "duplicate label 'a' (first defined on line 1)"},
      {"lddw %r1, 0x10000000000000000", 1, 11, "immediate 0x10000000000000000 does not fit in 64 bits"},
      {"mov %r1, 12abc", 1, 10, "invalid number '12abc'"},
      {"movsx864 %r1, 5", 1, 15, "movsx864 takes a register source operand"},
  };
  for (const auto& c : cases) {
    Diagnostic d = asm_error(c.text, Syntax::Conformance);
    EXPECT_EQ(d.line, c.line) << c.text;
    EXPECT_EQ(d.column, c.column) << c.text;
    EXPECT_EQ(d.message, c.message) << c.text;
  }
  // Decode's checks apply with the source line of the instruction.
  Diagnostic d = asm_error("mov %r0, 0\nmov %r10, 1\nexit", Syntax::Conformance);
  EXPECT_EQ(d.line, 2);
  EXPECT_EQ(d.message, "mov: r10 is read-only (frame pointer)");
  EXPECT_EQ(d.to_string(), "line 2: mov: r10 is read-only (frame pointer)");
}

// ---------------------------------------------------------------------------------------------
// Kernel syntax
// ---------------------------------------------------------------------------------------------

namespace {

Insn mk(Op op, uint8_t dst = 0, uint8_t src = 0, int16_t off = 0, int64_t imm = 0) {
  Insn in{op, dst, src, off, imm};
  // Normalize through the encoder/decoder, as an assembled or decoded program would be.
  auto dec = decode(encode(std::vector<Insn>{in}));
  EXPECT_TRUE(dec.ok()) << dec.error().to_string();
  return dec.ok() ? (*dec)[0] : in;
}

std::string_view test_helper_name(int32_t id) {
  switch (id) {
    case 1: return "bpf_map_lookup_elem";
    case 5: return "bpf_ktime_get_ns";
    default: return "";
  }
}
int32_t test_helper_id(std::string_view name) {
  if (name == "bpf_map_lookup_elem") return 1;
  if (name == "bpf_ktime_get_ns") return 5;
  return -1;
}

}  // namespace

// The printed format is pinned: these strings are what the kernel's verifier log / bpftool print.
TEST(AsmKernel, GoldenFormat) {
  DisasmOptions k;
  DisasmOptions conf;
  conf.syntax = Syntax::Conformance;
  struct Case {
    Insn in;
    const char* kernel;
    const char* conformance;
  };
  const Case cases[] = {
      {mk(Op::ADD32_IMM, 1, 0, 0, 2), "w1 += 2", "add32 %r1, 2"},
      {mk(Op::ADD64_REG, 1, 3), "r1 += r3", "add %r1, %r3"},
      {mk(Op::MOV32_REG, 1, 2), "w1 = w2", "mov32 %r1, %r2"},
      {mk(Op::MOV64_IMM, 0, 0, 0, -1), "r0 = -1", "mov %r0, -1"},
      {mk(Op::SDIV64_REG, 1, 2), "r1 s/= r2", "sdiv %r1, %r2"},
      {mk(Op::SMOD32_IMM, 1, 0, 0, 3), "w1 s%= 3", "smod32 %r1, 3"},
      {mk(Op::ARSH64_IMM, 1, 0, 0, 3), "r1 s>>= 3", "arsh %r1, 3"},
      {mk(Op::NEG64, 1), "r1 = -r1", "neg %r1"},
      {mk(Op::NEG32, 4), "w4 = -w4", "neg32 %r4"},
      {mk(Op::MOVSX64_8, 1, 2), "r1 = (s8)r2", "movsx864 %r1, %r2"},
      {mk(Op::MOVSX32_16, 1, 2), "w1 = (s16)w2", "movsx1632 %r1, %r2"},
      {mk(Op::BE16, 1), "r1 = be16 r1", "be16 %r1"},
      {mk(Op::LE32, 1), "r1 = le32 r1", "le32 %r1"},
      {mk(Op::BSWAP64, 1), "r1 = bswap64 r1", "bswap64 %r1"},
      {mk(Op::LDXW, 1, 2, 8), "r1 = *(u32 *)(r2 +8)", "ldxw %r1, [%r2+8]"},
      {mk(Op::LDXSH, 1, 2, -4), "r1 = *(s16 *)(r2 -4)", "ldxsh %r1, [%r2-4]"},
      {mk(Op::STXW, 1, 2, 8), "*(u32 *)(r1 +8) = r2", "stxw [%r1+8], %r2"},
      {mk(Op::STDW, 10, 0, -8, 0), "*(u64 *)(r10 -8) = 0", "stdw [%r10-8], 0"},
      {mk(Op::LDDW, 1, 0, 0, 0x1122334455667788), "r1 = 0x1122334455667788 ll", "lddw %r1, 0x1122334455667788"},
      {mk(Op::LDDW_MAP_FD, 1, 0, 0, 3), "r1 = map[fd:3]", "lddw map_fd %r1, 3"},
      {mk(Op::LDDW_MAP_VALUE_FD, 1, 0, 0, (int64_t{8} << 32) | 3), "r1 = map[fd:3][0]+8",
       "lddw map_value_fd %r1, 3, 8"},
      {mk(Op::LDDW_MAP_IDX, 2, 0, 0, 1), "r2 = map[idx:1]", "lddw map_idx %r2, 1"},
      {mk(Op::LDDW_MAP_VALUE_IDX, 2, 0, 0, 1), "r2 = map[idx:1]+0", "lddw map_value_idx %r2, 1"},
      {mk(Op::LDDW_VAR_ADDR, 2, 0, 0, 77), "r2 = var[btf:77]", "lddw var_addr %r2, 77"},
      {mk(Op::LDDW_CODE_ADDR, 2, 0, 0, 5), "r2 = subprog[+5]", "lddw code_addr %r2, 5"},
      {mk(Op::JEQ_IMM, 0, 0, 2, 0), "if r0 == 0x0 goto pc+2", "jeq %r0, 0, +2"},
      {mk(Op::JSGT32_REG, 1, 2, -3), "if w1 s> w2 goto pc-3", "jsgt32 %r1, %r2, -3"},
      {mk(Op::JSET_IMM, 1, 0, 1, 4), "if r1 & 0x4 goto pc+1", "jset %r1, 4, +1"},
      {mk(Op::JNE_IMM, 1, 0, 0, -1), "if r1 != 0xffffffff goto pc+0", "jne %r1, -1, +0"},
      {mk(Op::JA, 0, 0, 5), "goto pc+5", "ja +5"},
      {mk(Op::JA32, 0, 0, 0, 100000), "gotol pc+100000", "ja32 +100000"},
      {mk(Op::CALL_HELPER, 0, 0, 0, 7), "call #7", "call 7"},
      {mk(Op::CALL_LOCAL, 0, 0, 0, 3), "call pc+3", "call local +3"},
      {mk(Op::CALL_KFUNC, 0, 0, 0, 9), "call kfunc#9", "call runtime 9"},
      {mk(Op::CALLX, 5), "callx r5", "call %r5"},
      {mk(Op::EXIT), "exit", "exit"},
      {mk(Op::ATOMIC_ADD32, 1, 2, 0), "lock *(u32 *)(r1 +0) += r2", "lock add32 [%r1], %r2"},
      {mk(Op::ATOMIC_OR64, 1, 2, 0), "lock *(u64 *)(r1 +0) |= r2", "lock or [%r1], %r2"},
      {mk(Op::ATOMIC_FETCH_ADD32, 1, 2, 0), "r2 = atomic_fetch_add((u32 *)(r1 +0), r2)",
       "lock fetch add32 [%r1], %r2"},
      {mk(Op::ATOMIC_FETCH_AND64, 10, 0, -8), "r0 = atomic64_fetch_and((u64 *)(r10 -8), r0)",
       "lock fetch and [%r10-8], %r0"},
      {mk(Op::ATOMIC_XCHG64, 10, 0, -8), "r0 = atomic64_xchg((u64 *)(r10 -8), r0)", "lock xchg [%r10-8], %r0"},
      {mk(Op::ATOMIC_CMPXCHG64, 1, 2, 0), "r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)",
       "lock cmpxchg [%r1], %r2"},
      {mk(Op::LDABS_H, 0, 0, 0, 12), "r0 = *(u16 *)skb[12]", "ldabsh 12"},
      {mk(Op::LDIND_B, 0, 1, 0, 14), "r0 = *(u8 *)skb[r1 + 14]", "ldindb %r1, 14"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(format_insn(c.in, 0, k), c.kernel);
    EXPECT_EQ(format_insn(c.in, 0, conf), c.conformance);
  }
  // Helper names come from the caller's table.
  DisasmOptions named;
  named.helper_name = test_helper_name;
  EXPECT_EQ(format_insn(mk(Op::CALL_HELPER, 0, 0, 0, 1), 0, named), "call bpf_map_lookup_elem#1");
  EXPECT_EQ(format_insn(mk(Op::CALL_HELPER, 0, 0, 0, 99), 0, named), "call #99");
}

TEST(AsmKernel, ParsesPrintedAndLlvmForms) {
  struct Case {
    const char* text;
    std::vector<uint8_t> bytes;
  };
  const Case cases[] = {
      {"r1 += r3", {0x0f, 0x31, 0, 0, 0, 0, 0, 0}},
      {"w1 = w2", {0xbc, 0x21, 0, 0, 0, 0, 0, 0}},
      {"r0 = 5", {0xb7, 0x00, 0, 0, 5, 0, 0, 0}},
      {"w0 = -1", {0xb4, 0x00, 0, 0, 0xff, 0xff, 0xff, 0xff}},
      {"w0 = 0xffffffff", {0xb4, 0x00, 0, 0, 0xff, 0xff, 0xff, 0xff}},
      {"r1 = -r1", {0x87, 0x01, 0, 0, 0, 0, 0, 0}},
      {"r1 s/= r2", {0x3f, 0x21, 1, 0, 0, 0, 0, 0}},
      {"r1 s%= r2", {0x9f, 0x21, 1, 0, 0, 0, 0, 0}},
      {"r1 = (s8)r2", {0xbf, 0x21, 8, 0, 0, 0, 0, 0}},
      {"r1 = be16 r1", {0xdc, 0x01, 0, 0, 16, 0, 0, 0}},
      {"r1 = le32 r1", {0xd4, 0x01, 0, 0, 32, 0, 0, 0}},
      {"r1 = bswap64 r1", {0xd7, 0x01, 0, 0, 64, 0, 0, 0}},
      {"r1 = *(u32 *)(r2 +8)", {0x61, 0x21, 8, 0, 0, 0, 0, 0}},
      {"r1 = *(u32 *)(r2 + 0x8)", {0x61, 0x21, 8, 0, 0, 0, 0, 0}},
      {"w1 = *(u32 *)(r2 + 8)", {0x61, 0x21, 8, 0, 0, 0, 0, 0}},
      {"r1 = *(s16 *)(r2 -4)", {0x89, 0x21, 0xfc, 0xff, 0, 0, 0, 0}},
      {"*(u32 *)(r1 +8) = r2", {0x63, 0x21, 8, 0, 0, 0, 0, 0}},
      {"*(u64 *)(r10 -8) = 0", {0x7a, 0x0a, 0xf8, 0xff, 0, 0, 0, 0}},
      {"*(u64 *)(r10 - 0x8) = r1", {0x7b, 0x1a, 0xf8, 0xff, 0, 0, 0, 0}},
      {"r1 = 0x1122334455667788 ll",
       {0x18, 0x01, 0, 0, 0x88, 0x77, 0x66, 0x55, 0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11}},
      // as llvm-mc: without `ll` a move of a 32-bit immediate, sign-extended (beyond 32 bits: an error)
      {"r1 = 0xffffffff", {0xb7, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff}},
      {"r1 = 0 ll", {0x18, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"(18) r1 = 0x5", {0x18, 0x01, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"r1 = map[fd:3]", {0x18, 0x11, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"r1 = map[idx:2]+16", {0x18, 0x61, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0}},
      {"r1 = map[idx:2][0]+16", {0x18, 0x61, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0}},
      {"r1 = map[fd:4][0]+0", {0x18, 0x21, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"if r0 == 0x0 goto pc+2", {0x15, 0, 2, 0, 0, 0, 0, 0}},
      {"if w1 s> w2 goto pc-3", {0x6e, 0x21, 0xfd, 0xff, 0, 0, 0, 0}},
      {"if r1 & 0x4 goto +1 <LBB0_3>", {0x45, 0x01, 1, 0, 4, 0, 0, 0}},
      {"if r1 != 0xffffffff goto pc+0", {0x55, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff}},
      {"goto pc+5", {0x05, 0, 5, 0, 0, 0, 0, 0}},
      {"gotol pc+100000", {0x06, 0, 0, 0, 0xa0, 0x86, 0x01, 0}},
      {"call bpf_map_lookup_elem#1", {0x85, 0, 0, 0, 1, 0, 0, 0}},
      {"call whatever#12", {0x85, 0, 0, 0, 12, 0, 0, 0}},
      {"call 12", {0x85, 0, 0, 0, 12, 0, 0, 0}},
      {"call #12", {0x85, 0, 0, 0, 12, 0, 0, 0}},
      {"call pc+3", {0x85, 0x10, 0, 0, 3, 0, 0, 0}},
      {"call kfunc#7 off=2", {0x85, 0x20, 2, 0, 7, 0, 0, 0}},
      {"callx r5", {0x8d, 0x05, 0, 0, 0, 0, 0, 0}},
      {"exit", {0x95, 0, 0, 0, 0, 0, 0, 0}},
      {"lock *(u32 *)(r1 +0) += r2", {0xc3, 0x21, 0, 0, 0x00, 0, 0, 0}},
      {"lock *(u64 *)(r1 +0) |= r2", {0xdb, 0x21, 0, 0, 0x40, 0, 0, 0}},
      {"lock *(u64 *)(r1 +0) &= r2", {0xdb, 0x21, 0, 0, 0x50, 0, 0, 0}},
      {"lock *(u32 *)(r1 + 0x0) ^= w2", {0xc3, 0x21, 0, 0, 0xa0, 0, 0, 0}},
      {"r2 = atomic_fetch_add((u32 *)(r1 +0), r2)", {0xc3, 0x21, 0, 0, 0x01, 0, 0, 0}},
      {"r0 = atomic64_fetch_and((u64 *)(r10 -8), r0)", {0xdb, 0x0a, 0xf8, 0xff, 0x51, 0, 0, 0}},
      {"r0 = atomic64_xchg((u64 *)(r10 -8), r0)", {0xdb, 0x0a, 0xf8, 0xff, 0xe1, 0, 0, 0}},
      {"r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)", {0xdb, 0x21, 0, 0, 0xf1, 0, 0, 0}},
      {"r2 = xchg_64(r1 + 0x0, r2)", {0xdb, 0x21, 0, 0, 0xe1, 0, 0, 0}},
      {"w0 = cmpxchg32_32(r1 + 4, w0, w2)", {0xc3, 0x21, 4, 0, 0xf1, 0, 0, 0}},
      {"r0 = *(u16 *)skb[12]", {0x28, 0, 0, 0, 12, 0, 0, 0}},
      {"r0 = *(u8 *)skb[r1 + 14]", {0x50, 0x10, 0, 0, 14, 0, 0, 0}},
      // index, raw bytes and opcode prefixes are ignored; comments too
      {"  12: (b7) r0 = 5   ; r0 = 5", {0xb7, 0x00, 0, 0, 5, 0, 0, 0}},
      {"0: b7 00 00 00 05 00 00 00 r0 = 5", {0xb7, 0x00, 0, 0, 5, 0, 0, 0}},
      {"       0:\tb7 00 00 00 05 00 00 00\tr0 = 0x5", {0xb7, 0x00, 0, 0, 5, 0, 0, 0}},
      {"r0 = 5 # comment", {0xb7, 0x00, 0, 0, 5, 0, 0, 0}},
      {"r0 = 5 // comment", {0xb7, 0x00, 0, 0, 5, 0, 0, 0}},
      // llvm-objdump: a local call prints as `call -0x1`; its raw bytes say src = 1
      {"       5:\t85 10 00 00 ff ff ff ff\tcall -0x1", {0x85, 0x10, 0, 0, 0xff, 0xff, 0xff, 0xff}},
      {"       5:\t85 00 00 00 01 00 00 00\tcall 0x1", {0x85, 0x00, 0, 0, 1, 0, 0, 0}},
  };
  for (const auto& c : cases) {
    auto r = assemble(c.text, Syntax::Kernel);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.error().to_string();
    EXPECT_EQ(bytes_of(*r), c.bytes) << c.text;
    EXPECT_EQ(detect_syntax(c.text), Syntax::Kernel) << c.text;
  }
}

TEST(AsmKernel, LlvmObjdumpListing) {
  // As printed by `llvm-objdump -d -r` (relocation lines and headers are skipped).
  const char* listing =
      "\n"
      "prog.o:\tfile format elf64-bpf\n"
      "\n"
      "Disassembly of section xdp:\n"
      "\n"
      "0000000000000000 <xdp_prog>:\n"
      "       0:\tb7 06 00 00 00 00 00 00\tr6 = 0x0\n"
      "       1:\t18 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00\tr1 = 0x0 ll\n"
      "\t\t0000000000000008:  R_BPF_64_64\tcounters\n"
      "       3:\t15 06 01 00 00 00 00 00\tif r6 == 0x0 goto +0x1 <LBB0_2>\n"
      "       4:\t07 06 00 00 ff ff ff ff\tr6 += -0x1\n"
      "\n"
      "0000000000000028 <LBB0_2>:\n"
      "       5:\tbf 60 00 00 00 00 00 00\tr0 = r6\n"
      "       6:\t95 00 00 00 00 00 00 00\texit\n";
  auto r = assemble(listing, Syntax::Kernel);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(bytes_of(*r), (std::vector<uint8_t>{0xb7, 0x06, 0, 0, 0, 0, 0, 0, 0x18, 0x01, 0, 0, 0, 0, 0, 0,
                                                0, 0, 0, 0, 0, 0, 0, 0, 0x15, 0x06, 1, 0, 0, 0, 0, 0,
                                                0x07, 0x06, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xbf, 0x60, 0, 0, 0, 0, 0, 0,
                                                0x95, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(detect_syntax(listing), Syntax::Kernel);
}

TEST(AsmKernel, LabelsAndHelperNames) {
  auto r = assemble(
      "0000000000000000 <prog>:\n"
      "  r0 = 0\n"
      "loop:\n"
      "  r0 += 1\n"
      "  if r0 < 10 goto loop\n"
      "  call sub\n"
      "  call bpf_ktime_get_ns\n"
      "  goto out\n"
      "out:\n"
      "  exit\n"
      "sub:\n"
      "  r0 = 7\n"
      "  exit\n",
      Syntax::Kernel, test_helper_id);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->size(), 9u);
  EXPECT_EQ((*r)[2].off, -2);
  EXPECT_EQ((*r)[3].op, Op::CALL_LOCAL);
  EXPECT_EQ((*r)[3].imm, 3);
  EXPECT_EQ((*r)[4].op, Op::CALL_HELPER);
  EXPECT_EQ((*r)[4].imm, 5);
  EXPECT_EQ((*r)[5].off, 0);
  // Without a name table a bare helper name is an error naming it.
  auto e = assemble("call bpf_ktime_get_ns\nexit\n", Syntax::Kernel);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().to_string(),
            "line 1:6: undefined label 'bpf_ktime_get_ns' (and no helper-name table to look it up)");
  auto e2 = assemble("call bpf_nope\nexit\n", Syntax::Kernel, test_helper_id);
  ASSERT_FALSE(e2.ok());
  EXPECT_EQ(e2.error().to_string(), "line 1:6: unknown helper or label 'bpf_nope'");
}

TEST(AsmKernel, Errors) {
  struct Case {
    const char* text;
    int line, column;
    const char* message;
  };
  const Case cases[] = {
      {"r0 = 1\nr11 = 2", 2, 1, "unknown register r11"},
      {"w1 += r2", 1, 7, "register r2 does not match the width of w1"},
      {"goto foo", 1, 6, "undefined label 'foo'"},
      {"w1 = 0x1ffffffff", 1, 6, "immediate 0x1ffffffff does not fit in 32 bits"},
      {"r1 += 0x100000000", 1, 7, "immediate 0x100000000 does not fit in 32 bits"},
      {"r1 = 0x100000000", 1, 6, "immediate 0x100000000 does not fit in 32 bits (write `r1 = 0x100000000 ll` for a 64-bit load)"},
      {"r1 = *(u32 *)(r2 +40000)", 1, 18, "offset +40000 out of range (16-bit signed: -32768..32767)"},
      {"r1 = *(u128 *)(r2 +0)", 1, 8, "expected a memory type (u8, u16, u32, u64, s8, s16, s32), found 'u128'"},
      {"r1 = be16 r2", 1, 11, "be16 works in place: expected r1"},
      {"r1 = (s32)r2\nw1 = (s32)w2", 2, 7, "no such instruction: w1 = (s32)w2"},
      {"r1 = *(s64 *)(r2 +0)", 1, 8, "expected a memory type (u8, u16, u32, u64, s8, s16, s32), found 's64'"},
      {"*(s8 *)(r1 +0) = 1", 1, 1, "no such instruction: store of s8"},
      {"if r1 =~ r2 goto pc+1", 1, 7, "expected a comparison (==, !=, >, >=, <, <=, s>, s>=, s<, s<=, &), found '=~'"},
      {"if r1 == r2 goto", 1, 17, "expected a jump target (pc+N, +N or a label) at end of line"},
      {"r2 = atomic64_fetch_add((u64 *)(r1 +0), r3)", 1, 41,
       "atomic64_fetch_add returns the old value in its source register: expected r2 here"},
      {"r1 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)", 1, 1, "cmpxchg writes its result to r0"},
      {"r1 = frob r1", 1, 6, "unknown expression 'frob'"},
      {"r1 = 1 2", 1, 8, "unexpected '2' after the instruction"},
      {"r0 = *(u8 *)skb[r1 + 14]\nr1 = *(u8 *)skb[r1 + 14]", 2, 1, "packet loads (skb[...]) write r0"},
      {"r10 = 1", 1, 0, "mov: r10 is read-only (frame pointer)"},
  };
  for (const auto& c : cases) {
    Diagnostic d = asm_error(c.text, Syntax::Kernel);
    EXPECT_EQ(d.line, c.line) << c.text;
    EXPECT_EQ(d.column, c.column) << c.text;
    EXPECT_EQ(d.message, c.message) << c.text;
  }
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

namespace {

// Deterministic generator (the property test must be reproducible).
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  int64_t pick(std::initializer_list<int64_t> edge, int64_t lo, int64_t hi) {
    if (next() % 3 == 0) return *(edge.begin() + next() % edge.size());
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
};

bool same_ir(const std::vector<Insn>& a, const std::vector<Insn>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].op != b[i].op || a[i].dst != b[i].dst || a[i].src != b[i].src || a[i].off != b[i].off ||
        a[i].imm != b[i].imm)
      return false;
  return true;
}

std::string reassemble_check(const std::vector<Insn>& prog, const DisasmOptions& opt) {
  std::string text = disassemble(prog, opt);
  auto r = assemble(text, opt.syntax);
  if (!r.ok()) return "assemble failed: " + r.error().to_string() + "\n" + text;
  if (bytes_of(*r) != bytes_of(prog)) return "bytes differ after reassembly:\n" + text;
  return {};
}

}  // namespace

// For every instruction form and many random operands: encode -> decode -> print (both syntaxes,
// with and without index/raw prefixes) -> assemble -> encode gives the same bytes.
TEST(AsmRoundTrip, EveryOpRandomOperands) {
  Rng rng{0x9e3779b97f4a7c15ull};
  const int kPerOp = 300;
  size_t total = 0;
  for (size_t k = 0; k < kOpCount; ++k) {
    Op op = static_cast<Op>(k);
    if (op == Op::LDDW_HI) continue;
    const OpInfo& info = op_info(op);
    int ok_for_op = 0;
    for (int t = 0; t < kPerOp; ++t) {
      Insn in;
      in.op = op;
      if (info.fields & F_DST) in.dst = static_cast<uint8_t>(rng.next() % 11);
      if (info.fields & F_SRC) in.src = static_cast<uint8_t>(rng.next() % 11);
      if (info.fields & F_OFF) in.off = static_cast<int16_t>(rng.pick({0, 1, -1, 32767, -32768}, -40, 40));
      if (info.fields & F_IMM) {
        if (info.kind == OpKind::LoadImm64)
          in.imm = static_cast<int64_t>(rng.next() >> (rng.next() % 64));
        else
          in.imm = static_cast<int32_t>(rng.pick({0, 1, -1, INT32_MAX, INT32_MIN, 0x80000000ll}, -100000, 100000));
      }
      if (info.kind == OpKind::Atomic && (op_info(op).selval & 1) && in.src == 10) in.src = 9;
      if (in.dst == 10 && (info.kind == OpKind::Alu || info.kind == OpKind::Load || info.kind == OpKind::LoadImm64))
        in.dst = 9;
      std::vector<Insn> one{in};
      auto raw = encode(one);
      auto dec = decode(raw);
      ASSERT_TRUE(dec.ok()) << info.mnemonic << ": " << dec.error().to_string();
      const std::vector<uint8_t> want = to_bytes(raw);
      for (Syntax syn : {Syntax::Kernel, Syntax::Conformance}) {
        DisasmOptions opt;
        opt.syntax = syn;
        if (t % 2) opt.helper_name = test_helper_name;  // `call bpf_map_lookup_elem#1` re-assembles too
        std::string text = format_insn((*dec)[0], 0, opt);
        auto r = assemble(text, syn);
        ASSERT_TRUE(r.ok()) << info.mnemonic << " printed as '" << text << "': " << r.error().to_string();
        ASSERT_EQ(bytes_of(*r), want) << info.mnemonic << " printed as '" << text << "'";
        ASSERT_TRUE(same_ir(*r, *dec)) << text;
        // Detection may pick either syntax for forms both spell alike (`exit`, `call 5`), but the
        // bytes must not depend on it.
        auto a = assemble_auto(text);
        ASSERT_TRUE(a.ok()) << "assemble_auto: " << text;
        ASSERT_EQ(bytes_of(*a), want) << "assemble_auto: " << text;
        opt.show_raw = t % 2;
        opt.show_index = t % 3 != 0;
        ASSERT_EQ(reassemble_check(*dec, opt), "") << info.mnemonic;
      }
      ++ok_for_op;
    }
    EXPECT_EQ(ok_for_op, kPerOp) << info.mnemonic;
    total += ok_for_op;
  }
  EXPECT_GT(total, 100u * 50u);
}

// Every conformance program: disassemble (both syntaxes, with labels/indexes/raw bytes) and
// assemble again gives identical bytes.
TEST(AsmRoundTrip, ConformanceSuite) {
  auto files = testutil::conformance_files();
  if (files.empty()) GTEST_SKIP() << "conformance suite not found under " << testutil::shared_dir();
  for (const auto& f : files) {
    auto r = assemble(f.sections.at("asm"), Syntax::Conformance);
    ASSERT_TRUE(r.ok()) << f.name;
    for (Syntax syn : {Syntax::Kernel, Syntax::Conformance})
      for (int variant = 0; variant < 3; ++variant) {
        DisasmOptions opt;
        opt.syntax = syn;
        opt.show_index = variant != 0;
        opt.show_raw = variant == 2;
        EXPECT_EQ(reassemble_check(*r, opt), "") << f.name;
      }
  }
}

TEST(AsmRoundTrip, DisassembleLayout) {
  auto r = assemble("mov %r0, 0\njeq %r1, 0, +2\nlddw %r2, 0x100000000\nja -4\nexit", Syntax::Conformance);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  DisasmOptions k;
  EXPECT_EQ(disassemble(*r, k),
            "   0: r0 = 0\n"
            "   1: if r1 == 0x0 goto pc+2\n"
            "   2: r2 = 0x100000000 ll\n"
            "   4: goto pc-4\n"
            "   5: exit\n");
  k.show_raw = true;
  EXPECT_EQ(disassemble(std::span(*r).subspan(2, 2), k),
            "   0: 18 02 00 00 00 00 00 00 00 00 00 00 01 00 00 00  r2 = 0x100000000 ll\n");
  DisasmOptions c;
  c.syntax = Syntax::Conformance;
  EXPECT_EQ(disassemble(*r, c),
            "mov %r0, 0\n"
            "L1:\n"
            "jeq %r1, 0, L4\n"
            "lddw %r2, 0x100000000\n"
            "L4:\n"
            "ja L1\n"
            "exit\n");
  c.show_index = false;
  EXPECT_EQ(disassemble(*r, c), "mov %r0, 0\njeq %r1, 0, +2\nlddw %r2, 0x100000000\nja -4\nexit\n");
}

// ---------------------------------------------------------------------------------------------
// docs/assembly.md is checked: its table of every instruction is what the printers produce, and
// every example block assembles.
// ---------------------------------------------------------------------------------------------

namespace {

std::string md_escape(std::string s) {
  std::string o;
  for (char ch : s) {
    if (ch == '|') o += '\\';
    o += ch;
  }
  return o;
}

std::string forms_table() {
  std::string out;
  for (size_t k = 0; k < kOpCount; ++k) {
    Op op = static_cast<Op>(k);
    if (op == Op::LDDW_HI) continue;
    const OpInfo& i = op_info(op);
    Insn in;
    in.op = op;
    if (i.fields & F_DST) in.dst = 1;
    if (i.fields & F_SRC) in.src = 2;
    if (i.fields & F_OFF) in.off = (i.kind == OpKind::Jump || i.kind == OpKind::CondJump) ? 3 : -8;
    if (i.fields & F_IMM) in.imm = i.kind == OpKind::LoadImm64 ? 3 : i.kind == OpKind::LoadPacket ? 12 : 4;
    if (op == Op::LDDW) in.imm = 0x1122334455667788;
    if (op == Op::LDDW_MAP_VALUE_FD || op == Op::LDDW_MAP_VALUE_IDX) in.imm = (int64_t{16} << 32) | 3;
    if (op == Op::CALL_KFUNC) in.off = 0;
    auto dec = decode(encode(std::vector<Insn>{in}));
    if (!dec) return "cannot build an example of " + std::string(i.mnemonic);
    DisasmOptions kk, cc;
    cc.syntax = Syntax::Conformance;
    out += "| " + md_escape(std::string(i.mnemonic)) + " | v" + std::to_string(i.version) + " | `" +
           md_escape(format_insn((*dec)[0], 0, kk)) + "` | `" + md_escape(format_insn((*dec)[0], 0, cc)) + "` |\n";
  }
  return out;
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST(AsmDocs, FormsTableMatchesPrinters) {
  std::string doc = read_text(std::filesystem::path(BPFVM_SOURCE_DIR) / "docs" / "assembly.md");
  ASSERT_FALSE(doc.empty()) << "docs/assembly.md missing";
  const std::string begin = "<!-- forms:begin -->\n", end = "<!-- forms:end -->";
  size_t b = doc.find(begin), e = doc.find(end);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(e, std::string::npos);
  std::string table = doc.substr(b + begin.size(), e - b - begin.size());
  // Skip the two header lines of the markdown table.
  for (int k = 0; k < 2; ++k) table = table.substr(table.find('\n') + 1);
  if (table != forms_table()) {
    auto out = std::filesystem::path(BPFVM_BINARY_DIR) / "assembly_forms.md";
    std::ofstream(out) << forms_table();
    ADD_FAILURE() << "the instruction table in docs/assembly.md is out of date; the current one is in " << out;
  }
}

TEST(AsmDocs, ExamplesAssemble) {
  std::string doc = read_text(std::filesystem::path(BPFVM_SOURCE_DIR) / "docs" / "assembly.md");
  int blocks = 0;
  for (auto [tag, syn] : {std::pair{"```bpf-kernel\n", Syntax::Kernel}, std::pair{"```bpf-conformance\n", Syntax::Conformance}}) {
    for (size_t p = doc.find(tag); p != std::string::npos; p = doc.find(tag, p + 1)) {
      size_t s = p + std::strlen(tag), e = doc.find("```", s);
      ASSERT_NE(e, std::string::npos);
      std::string block = doc.substr(s, e - s);
      auto r = assemble(block, syn, test_helper_id);
      EXPECT_TRUE(r.ok()) << block << "\n" << (r.ok() ? "" : r.error().to_string());
      if (r.ok()) EXPECT_EQ(detect_syntax(block), syn) << block;
      ++blocks;
    }
  }
  EXPECT_GE(blocks, 4);
}

// ---------------------------------------------------------------------------------------------
// Real tool output: llvm-objdump listings of the compiled test programs assemble to the bytes of
// their ELF sections.
// ---------------------------------------------------------------------------------------------

namespace {

std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// Executable sections of an ELF file: name -> bytes.
std::map<std::string, std::vector<uint8_t>> code_sections(const std::string& path) {
  std::map<std::string, std::vector<uint8_t>> out;
  elf_version(EV_CURRENT);
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return out;
  Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
  size_t shstrndx = 0;
  if (elf && elf_getshdrstrndx(elf, &shstrndx) == 0) {
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
      GElf_Shdr sh;
      if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS || !(sh.sh_flags & SHF_EXECINSTR) || sh.sh_size == 0)
        continue;
      Elf_Data* d = elf_getdata(scn, nullptr);
      const char* name = elf_strptr(elf, shstrndx, sh.sh_name);
      if (!d || !name) continue;
      auto* b = static_cast<const uint8_t*>(d->d_buf);
      out[name] = std::vector<uint8_t>(b, b + d->d_size);
    }
  }
  if (elf) elf_end(elf);
  close(fd);
  return out;
}

// Splits an llvm-objdump listing at its "Disassembly of section NAME:" lines.
std::map<std::string, std::string> split_listing(const std::string& listing) {
  std::map<std::string, std::string> out;
  std::istringstream in(listing);
  std::string line, cur;
  const std::string head = "Disassembly of section ";
  while (std::getline(in, line)) {
    if (line.rfind(head, 0) == 0 && line.size() > head.size() + 1) {
      cur = line.substr(head.size(), line.size() - head.size() - 1);
      out[cur];
      continue;
    }
    if (!cur.empty()) out[cur] += line + "\n";
  }
  return out;
}

struct ListingStats {
  int checked = 0, v4 = 0;
};

// At most `limit` objects, spread evenly over the sorted list (one llvm-objdump run each keeps the
// test to a few seconds; the full sample set was checked by hand: 194 of 198 sections, the other
// four in invalid/).
void check_objdump_listings(const std::filesystem::path& dir, const std::string& od19, const std::string& od14,
                            ListingStats& stats, size_t limit = 1000) {
  std::vector<std::string> objects;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    std::string path = e.path().string();
    if (path.ends_with(".o") && path.find("/invalid/") == std::string::npos) objects.push_back(path);
  }
  std::sort(objects.begin(), objects.end());
  size_t step = objects.size() > limit ? (objects.size() + limit - 1) / limit : 1;
  for (size_t k = 0; k < objects.size(); k += step) {
    const std::string& path = objects[k];
    bool is_v4 = path.ends_with(".v4.bpf.o");
    if (is_v4 && od19.empty()) continue;
    std::string od = !od19.empty() ? od19 : od14;
    auto sections = code_sections(path);
    if (sections.empty()) continue;
    auto listings = split_listing(run_command(od + " -d -r '" + path + "' 2>/dev/null"));
    for (const auto& [name, bytes] : sections) {
      auto it = listings.find(name);
      ASSERT_NE(it, listings.end()) << path << ": llvm-objdump printed no section " << name;
      auto r = assemble(it->second, Syntax::Kernel);
      ASSERT_TRUE(r.ok()) << path << " [" << name << "]: " << r.error().to_string() << "\n" << it->second;
      EXPECT_EQ(bytes_of(*r), bytes) << path << " [" << name << "]\n" << it->second;
      ++stats.checked;
      stats.v4 += is_v4;
    }
  }
}

std::string which(const char* cmd) {
  std::string s = run_command(std::string("command -v ") + cmd + " 2>/dev/null");
  s.erase(s.find_last_not_of("\n") + 1);
  return s;
}


}  // namespace

TEST(AsmLlvm, ObjdumpListingsReassemble) {
  // llvm-objdump 14 misprints v4 instructions (sdiv as "/=", movsx as a plain move), so v4 objects
  // need llvm-objdump-19.
  std::string od19 = which("llvm-objdump-19");
  std::string od14 = which("llvm-objdump-14");
  if (od14.empty()) od14 = which("llvm-objdump");
  if (od19.empty() && od14.empty()) GTEST_SKIP() << "llvm-objdump not installed";
  ListingStats stats;
  // The test programs compiled by the build, and the shared sample objects (Linux samples,
  // Suricata, ...; the deliberately broken ones under invalid/ excepted).
  check_objdump_listings(BPFVM_PROGS_DIR, od19, od14, stats);
  if (!od19.empty()) EXPECT_GE(stats.v4, 1) << "asm_allops.v4.bpf.o was not built";
  auto samples = testutil::shared_dir() / "samples";
  if (std::filesystem::is_directory(samples)) check_objdump_listings(samples, od19, od14, stats, 16);
  if (stats.checked == 0) GTEST_SKIP() << "no compiled BPF objects under " << BPFVM_PROGS_DIR;
  EXPECT_GE(stats.checked, 5);
  std::printf("checked %d code sections\n", stats.checked);
}

// ---------------------------------------------------------------------------------------------
// The Linux kernel as the oracle of the kernel syntax: its verifier log prints each instruction;
// format_insn must print the same text, and the log lines must assemble back to the program.
// ---------------------------------------------------------------------------------------------

namespace {

constexpr uint32_t kProgSocketFilter = 1;

// "12: (b7) r0 = 5        ; R0_w=5" -> {12, "(b7) r0 = 5"}; only instruction lines.
std::map<int64_t, std::string> log_instructions(const std::string& log) {
  std::map<int64_t, std::string> out;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(": (");
    if (colon == std::string::npos || colon == 0) continue;
    bool digits = true;
    for (size_t k = 0; k < colon; ++k) digits = digits && std::isdigit(static_cast<unsigned char>(line[k]));
    if (!digits) continue;
    std::string text = line.substr(colon + 2);
    if (auto semi = text.find(';'); semi != std::string::npos) text = text.substr(0, semi);
    text.erase(text.find_last_not_of(' ') + 1);
    out[std::stoll(line.substr(0, colon))] = text;
  }
  return out;
}

std::string fmt_with_opcode(const Insn& in, int64_t pc, const DisasmOptions& opt) {
  std::vector<RawInsn> raw;
  encode_one(in, raw);
  char op[8];
  std::snprintf(op, sizeof op, "(%02x) ", raw[0].code);
  return op + format_insn(in, pc, opt);
}

// Names from bpfvm's helper table (src/helpers), so the kernel also checks those names.
std::string_view kernel_helper_name(int32_t id) {
  const HelperProto* p = kernel_helper_proto(id);
  return p ? p->name : std::string_view();
}

void check_against_verifier_log(const char* source) {
  auto prog = assemble(source, Syntax::Kernel);
  ASSERT_TRUE(prog.ok()) << prog.error().to_string();
  auto raw = encode(*prog);
  auto res = kernel::load_program(raw, kProgSocketFilter, 2);
  if (!res.not_offered.empty()) GTEST_SKIP() << "not compared: " << res.not_offered;
  ASSERT_TRUE(res.fd) << "the kernel rejected the test program (errno " << res.err << "):\n" << res.log;
  auto lines = log_instructions(res.log);
  ASSERT_FALSE(lines.empty()) << res.log;
  DisasmOptions opt;
  opt.helper_name = kernel_helper_name;
  std::string listing;
  size_t printed = 0;
  for (const auto& [pc, text] : lines) {
    ASSERT_LT(static_cast<size_t>(pc), prog->size());
    const Insn& in = (*prog)[pc];
    std::string mine = fmt_with_opcode(in, pc, opt);
    if (in.op == Op::LDDW) mine = mine.substr(0, mine.size() - 3);  // the kernel prints lddw without " ll"
    EXPECT_EQ(mine, text) << "insn " << pc;
    listing += std::to_string(pc) + ": " + text + "\n";
    ++printed;
  }
  // Every instruction is reachable in these programs, so the log shows all of them.
  size_t slots = 0;
  for (const Insn& in : *prog) slots += in.op != Op::LDDW_HI;
  EXPECT_EQ(printed, slots) << res.log;
  // The verifier's own lines assemble back to the same program.
  auto again = assemble(listing, Syntax::Kernel);
  ASSERT_TRUE(again.ok()) << again.error().to_string() << "\n" << listing;
  EXPECT_EQ(bytes_of(*again), bytes_of(*prog)) << listing;
}

}  // namespace

TEST(AsmKernelOracle, VerifierLogMatchesPrinter) {
  if (!kernel::available()) GTEST_SKIP() << "kernel bpf() unavailable: " << kernel::unavailable_reason();
  // Every ALU, jump, memory, atomic, call and lddw form the verifier accepts in one program.
  check_against_verifier_log(R"(  r0 = 0
  r1 = 5
  r2 = 7
  w3 = 9
  w4 = 2
  r1 += r2
  r1 += 3
  w3 += w4
  w3 += 3
  r1 -= r2
  r1 -= 3
  w3 -= w4
  w3 -= 3
  r1 *= r2
  r1 *= 3
  w3 *= w4
  w3 *= 3
  r1 /= r2
  r1 /= 3
  w3 /= w4
  w3 /= 3
  r1 |= r2
  r1 |= 3
  w3 |= w4
  w3 |= 3
  r1 &= r2
  r1 &= 3
  w3 &= w4
  w3 &= 3
  r1 <<= r2
  r1 <<= 3
  w3 <<= w4
  w3 <<= 3
  r1 >>= r2
  r1 >>= 3
  w3 >>= w4
  w3 >>= 3
  r1 %= r2
  r1 %= 3
  w3 %= w4
  w3 %= 3
  r1 ^= r2
  r1 ^= 3
  w3 ^= w4
  w3 ^= 3
  r1 s>>= r2
  r1 s>>= 3
  w3 s>>= w4
  w3 s>>= 3
  r1 s/= r2
  r1 s/= 3
  w3 s/= w4
  w3 s/= 3
  r1 s%= r2
  r1 s%= 3
  w3 s%= w4
  w3 s%= 3
  w3 = w4
  r1 = 5
  r5 = r1
  r5 = (s8)r1
  r5 = (s16)r1
  r5 = (s32)r1
  w5 = (s8)w3
  w5 = (s16)w3
  r5 = -r5
  w5 = -w5
  r5 = be16 r5
  r5 = be32 r5
  r5 = be64 r5
  r5 = le16 r5
  r5 = le32 r5
  r5 = le64 r5
  r5 = bswap16 r5
  r5 = bswap32 r5
  r5 = bswap64 r5
  r6 = 0x1122334455667788 ll
  *(u64 *)(r10 -8) = r6
  *(u32 *)(r10 -16) = r3
  *(u16 *)(r10 -20) = r3
  *(u8 *)(r10 -22) = r3
  *(u64 *)(r10 -32) = 5
  *(u32 *)(r10 -36) = -1
  *(u16 *)(r10 -38) = 7
  *(u8 *)(r10 -39) = 1
  r7 = *(u64 *)(r10 -8)
  r7 = *(u32 *)(r10 -16)
  r7 = *(u16 *)(r10 -20)
  r7 = *(u8 *)(r10 -22)
  r7 = *(s32 *)(r10 -16)
  r7 = *(s16 *)(r10 -20)
  r7 = *(s8 *)(r10 -22)
  lock *(u64 *)(r10 -8) += r1
  lock *(u64 *)(r10 -8) |= r1
  lock *(u64 *)(r10 -8) &= r1
  lock *(u64 *)(r10 -8) ^= r1
  r1 = atomic64_fetch_add((u64 *)(r10 -8), r1)
  r1 = atomic64_fetch_or((u64 *)(r10 -8), r1)
  r1 = atomic64_fetch_and((u64 *)(r10 -8), r1)
  r1 = atomic64_fetch_xor((u64 *)(r10 -8), r1)
  r1 = atomic64_xchg((u64 *)(r10 -8), r1)
  r0 = atomic64_cmpxchg((u64 *)(r10 -8), r0, r1)
  lock *(u32 *)(r10 -16) += r1
  lock *(u32 *)(r10 -16) |= r1
  lock *(u32 *)(r10 -16) &= r1
  lock *(u32 *)(r10 -16) ^= r1
  r1 = atomic_fetch_add((u32 *)(r10 -16), r1)
  r1 = atomic_fetch_or((u32 *)(r10 -16), r1)
  r1 = atomic_fetch_and((u32 *)(r10 -16), r1)
  r1 = atomic_fetch_xor((u32 *)(r10 -16), r1)
  r1 = atomic_xchg((u32 *)(r10 -16), r1)
  r0 = atomic_cmpxchg((u32 *)(r10 -16), r0, r1)
  r1 = 5
  w3 = 1
  if r1 == r2 goto pc+0
  if r1 == 0x5 goto pc+0
  if w3 == w4 goto pc+0
  if w3 == 0xffffffff goto pc+0
  if r1 != r2 goto pc+0
  if r1 != 0x5 goto pc+0
  if w3 != w4 goto pc+0
  if w3 != 0xffffffff goto pc+0
  if r1 > r2 goto pc+0
  if r1 > 0x5 goto pc+0
  if w3 > w4 goto pc+0
  if w3 > 0xffffffff goto pc+0
  if r1 >= r2 goto pc+0
  if r1 >= 0x5 goto pc+0
  if w3 >= w4 goto pc+0
  if w3 >= 0xffffffff goto pc+0
  if r1 < r2 goto pc+0
  if r1 < 0x5 goto pc+0
  if w3 < w4 goto pc+0
  if w3 < 0xffffffff goto pc+0
  if r1 <= r2 goto pc+0
  if r1 <= 0x5 goto pc+0
  if w3 <= w4 goto pc+0
  if w3 <= 0xffffffff goto pc+0
  if r1 s> r2 goto pc+0
  if r1 s> 0x5 goto pc+0
  if w3 s> w4 goto pc+0
  if w3 s> 0xffffffff goto pc+0
  if r1 s>= r2 goto pc+0
  if r1 s>= 0x5 goto pc+0
  if w3 s>= w4 goto pc+0
  if w3 s>= 0xffffffff goto pc+0
  if r1 s< r2 goto pc+0
  if r1 s< 0x5 goto pc+0
  if w3 s< w4 goto pc+0
  if w3 s< 0xffffffff goto pc+0
  if r1 s<= r2 goto pc+0
  if r1 s<= 0x5 goto pc+0
  if w3 s<= w4 goto pc+0
  if w3 s<= 0xffffffff goto pc+0
  if r1 & r2 goto pc+0
  if r1 & 0x5 goto pc+0
  if w3 & w4 goto pc+0
  if w3 & 0xffffffff goto pc+0
  goto pc+0
  gotol pc+0
  call bpf_ktime_get_ns#5
  call bpf_get_prandom_u32#7
  call bpf_get_smp_processor_id#8
  call bpf_get_numa_node_id#42
  call bpf_jiffies64#118
  call bpf_ktime_get_boot_ns#125
  call bpf_ktime_get_coarse_ns#160
  r1 = 1
  call pc+1
  exit
  r0 = 1
  exit
)");
}

TEST(AsmKernelOracle, VerifierLogMatchesPrinterPacketLoads) {
  if (!kernel::available()) GTEST_SKIP() << "kernel bpf() unavailable: " << kernel::unavailable_reason();
  // Legacy packet loads (they cannot be mixed with bpf-to-bpf calls, hence a second program).
  check_against_verifier_log(R"(  r6 = r1
  r0 = *(u8 *)skb[0]
  r0 = *(u16 *)skb[12]
  r0 = *(u32 *)skb[14]
  r7 = 2
  r0 = *(u8 *)skb[r7 + 1]
  r0 = *(u16 *)skb[r7 + 2]
  r0 = *(u32 *)skb[r7 + -1]
  r0 = 0
  exit
)");
}

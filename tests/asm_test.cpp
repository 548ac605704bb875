// Assembler and disassembler: both syntaxes, errors, golden strings and round-trip properties.
#include <gtest/gtest.h>

#include "asm_test_util.hpp"
#include "bpfvm/asm.hpp"
#include "bpfvm/insn.hpp"

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

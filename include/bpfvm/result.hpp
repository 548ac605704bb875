// bpfvm: one diagnostic type and one result type for every stage.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace bpfvm {

enum class ErrorCode {
  Ok = 0,
  InvalidArgument,   // a caller passed something unusable
  Io,                // a file could not be read or written
  Decode,            // bytecode is malformed (unknown opcode, reserved field, bad register...)
  Structure,         // program structure is wrong (jump out of range, no exit, ...)
  Assemble,          // assembly text has an error
  Unsupported,       // a feature is not available here (e.g. no JIT for this CPU)
  Link,              // unresolved helper, map or call target
  MemoryFault,       // checked execution stopped a memory access outside every allowed region
  Budget,            // instruction budget exhausted
  CallDepth,         // too many nested bpf-to-bpf calls
  Runtime,           // other run-time failure (bad helper id in callx, ...)
  Load,              // object loading failed
  Verify,            // the verifier rejected the program
};

const char* error_code_name(ErrorCode code);

// What went wrong and where. `pc` is an instruction slot index (-1 when not about one instruction);
// `line`/`column` are 1-based source positions for assembly text (0 when unknown).
struct Diagnostic {
  ErrorCode code = ErrorCode::Ok;
  std::string message;
  int64_t pc = -1;
  int line = 0;
  int column = 0;
  std::string source_line;  // C source line from BTF line info, when known

  // One line: "<where>: <message>" e.g. "insn 3: jump out of range (target 12, program has 5)".
  std::string to_string() const;
};

inline Diagnostic make_error(ErrorCode code, std::string message, int64_t pc = -1) {
  Diagnostic d;
  d.code = code;
  d.message = std::move(message);
  d.pc = pc;
  return d;
}

// Result<T>: a value or a Diagnostic.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Diagnostic error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Diagnostic& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Diagnostic> v_;
};

// Result<void> analogue.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Diagnostic error) : err_(std::move(error)), failed_(true) {}
  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Diagnostic& error() const { return err_; }

 private:
  Diagnostic err_;
  bool failed_ = false;
};

}  // namespace bpfvm

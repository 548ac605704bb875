// Pinned programs (pinned_prog.hpp). The file is JSON: {"format":"bpfvm-prog","version":1,
// "function":…,"type":N|null,"pin_maps_dir":…,"object":"<hex of the ELF object>"}; every field is
// checked when it is read.
#include "bpfvm/pinned_prog.hpp"

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bpfvm/progtype.hpp"

namespace bpfvm {

namespace {

Diagnostic err(const std::string& path, const std::string& what) {
  return make_error(ErrorCode::Load, fmt::format("pinned program {}: {}", path, what));
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<Object> load_for_pinning(std::span<const uint8_t> bytes, const PinnedProgramSpec& spec, std::string_view what) {
  LoadOptions lo;
  lo.prog_type = spec.type;
  lo.name = spec.function;
  lo.target_btf = spec.btf;
  auto obj = load_object(bytes, lo, what);
  if (!obj) return obj;
  for (const auto& [name, value] : spec.sets) {
    if (Status st = obj->set_global_text(name, value); !st) {
      Diagnostic d = st.error();
      d.message = "set " + name + "=" + value + ": " + d.message;
      return d;
    }
  }
  return obj;
}

Status pin_program(std::span<const uint8_t> bytes, const PinnedProgramSpec& spec, const std::string& path) {
  nlohmann::ordered_json j;
  j["format"] = "bpfvm-prog";
  j["version"] = 1;
  j["function"] = spec.function;
  j["type"] = spec.type ? nlohmann::ordered_json(*spec.type) : nlohmann::ordered_json(nullptr);
  j["pin_maps_dir"] = spec.pin_maps_dir;
  j["btf"] = spec.btf;
  j["sets"] = nlohmann::ordered_json::array();
  for (const auto& [name, value] : spec.sets) j["sets"].push_back({name, value});
  std::string hex;
  hex.reserve(bytes.size() * 2);
  static const char* digits = "0123456789abcdef";
  for (uint8_t b : bytes) {
    hex += digits[b >> 4];
    hex += digits[b & 15];
  }
  j["object"] = hex;
  std::string text = j.dump() + "\n";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return err(path, errno == EEXIST ? "already exists" : std::strerror(errno));
  if (write(fd, text.data(), text.size()) != ssize_t(text.size())) {
    int e = errno;
    close(fd);
    unlink(path.c_str());
    return err(path, fmt::format("cannot write: {}", std::strerror(e)));
  }
  close(fd);
  return {};
}

Result<OpenedProgram> open_pinned_program(const std::string& path, const PrepareOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return err(path, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("format", "") != "bpfvm-prog")
    return err(path, "not a bpfvm program file");
  if (!j.contains("version") || !j["version"].is_number_unsigned() || j["version"] != 1)
    return err(path, "program file version is not supported (this bpfvm reads version 1)");
  for (const char* f : {"function", "pin_maps_dir", "object"})
    if (!j.contains(f) || !j[f].is_string()) return err(path, fmt::format("damaged file: field '{}' missing or not a string", f));
  if (!j.contains("type") || !(j["type"].is_null() || j["type"].is_number_unsigned()))
    return err(path, "damaged file: field 'type'");
  OpenedProgram op;
  op.path = path;
  op.spec.function = j["function"];
  op.spec.pin_maps_dir = j["pin_maps_dir"];
  if (!j["type"].is_null()) op.spec.type = j["type"].get<uint32_t>();
  // Written by newer pinnings only: absent means the defaults.
  if (j.contains("btf")) {
    if (!j["btf"].is_string()) return err(path, "damaged file: field 'btf' is not a string");
    op.spec.btf = j["btf"];
  }
  if (j.contains("sets")) {
    if (!j["sets"].is_array()) return err(path, "damaged file: field 'sets' is not an array");
    for (const auto& e : j["sets"]) {
      if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_string())
        return err(path, "damaged file: an entry of 'sets' is not [NAME, VALUE]");
      op.spec.sets.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    }
  }
  const std::string hex = j["object"];
  if (hex.size() % 2) return err(path, "damaged file: the object's hex has an odd length");
  std::vector<uint8_t> bytes(hex.size() / 2);
  for (size_t i = 0; i < bytes.size(); ++i) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return err(path, fmt::format("damaged file: bad hex digit at {}", 2 * i));
    bytes[i] = uint8_t(hi << 4 | lo);
  }
  auto obj = load_for_pinning(bytes, op.spec, path);
  if (!obj) return err(path, "its object: " + obj.error().to_string());
  op.object = std::make_shared<const Object>(std::move(*obj));
  op.program = op.object->find_program(op.spec.function);
  if (!op.program) return err(path, fmt::format("its object has no program '{}'", op.spec.function));
  // The maps must still be pinned where the program was loaded with them.
  InstantiateOptions io;
  io.pin_all_dir = op.spec.pin_maps_dir;
  if (!io.pin_all_dir.empty()) {
    for (uint32_t mi : op.program->maps_used) {
      const ObjectMap& om = op.object->maps[mi];
      if (om.is_global_data()) continue;
      std::string mp = io.pin_all_dir + "/" + om.spec.name;
      if (access(mp.c_str(), F_OK) != 0)
        return err(path, fmt::format("its map '{}' is no longer pinned at {}", om.spec.name, mp));
    }
  }
  auto live = instantiate_with(*op.object, io);
  if (!live) return err(path, live.error().message);
  op.live = std::make_shared<LoadedObject>(std::move(*live));
  PrepareOptions po = options;
  auto prep = prepare_program(*op.program, *op.live, nullptr, po);
  if (!prep) return err(path, prep.error().to_string());
  op.prepared = std::move(*prep);
  return op;
}

std::string program_tag(const ObjectProgram& p) {
  std::vector<Insn> insns = p.insns;
  for (size_t i = 0; i < insns.size(); ++i) {
    Insn& in = insns[i];
    const bool map_fd = in.op == Op::LDDW_MAP_IDX || in.op == Op::LDDW_MAP_FD;
    const bool map_val = in.op == Op::LDDW_MAP_VALUE_IDX || in.op == Op::LDDW_MAP_VALUE_FD;
    if (!map_fd && !map_val) continue;
    // As loaded into the kernel: BPF_PSEUDO_MAP_FD / BPF_PSEUDO_MAP_VALUE, immediates zeroed.
    in.op = map_fd ? Op::LDDW_MAP_FD : Op::LDDW_MAP_VALUE_FD;
    in.imm = 0;
    if (i + 1 < insns.size() && insns[i + 1].op == Op::LDDW_HI) insns[i + 1].imm = 0;
  }
  std::vector<RawInsn> raw = encode(insns);
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(raw.data()), raw.size() * sizeof(RawInsn), md);
  std::string tag;
  for (int i = 0; i < 8; ++i) tag += fmt::format("{:02x}", md[i]);
  return tag;
}

}  // namespace bpfvm

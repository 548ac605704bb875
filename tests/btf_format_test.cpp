// format_btf_value: BTF-described data in bpftool's shapes. Expectations were written from bpftool
// 7.1's `map dump` of the same map in the kernel; a second test compares with whatever bpftool is
// installed, on kernel maps holding random values (skipped without bpf() or bpftool).
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "bpfvm/btf_format.hpp"
#include "bpfvm/object.hpp"
#include "kernel/oracle.hpp"

namespace bpfvm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kObj = std::string(BPFVM_PROGS_DIR) + "/fmt_values.bpf.o";

struct Loaded {
  Result<Object> obj = make_error(ErrorCode::InvalidArgument, "not loaded");
  const struct btf* btf = nullptr;
  const ObjectMap* map = nullptr;
};

Loaded load(const char* map_name) {
  Loaded l;
  l.obj = load_object_file(kObj);
  if (!l.obj) return l;
  l.btf = static_cast<const struct btf*>(l.obj->btf_handle());
  for (const ObjectMap& m : l.obj->maps)
    if (m.spec.name == map_name) l.map = &m;
  return l;
}

// The key and value bpftool was given (see the file comment): every member a distinct value.
std::vector<uint8_t> sample_key() { return {5, 0, 0, 0, 'a', 'b', 0, 0}; }
std::vector<uint8_t> sample_value() {
  std::vector<uint8_t> v(96, 0);
  auto put = [&](size_t off, auto x) { std::memcpy(v.data() + off, &x, sizeof x); };
  put(0, uint64_t(0xfffffffffffffffeull));
  put(8, int64_t(-3));
  put(16, int32_t(-7));
  put(20, uint16_t(65535));
  v[22] = 65;
  v[23] = 1;
  std::memcpy(v.data() + 24, "hello\0world\0", 12);
  put(36, int32_t(1));
  put(40, int32_t(-2));
  put(44, int32_t(3));
  put(48, int16_t(-300));
  v[50] = 200;
  v[51] = uint8_t(-5);
  put(52, uint32_t(0x04030201));
  put(56, int32_t(7));
  put(60, int32_t(42));
  put(64, uint32_t(5 | (1000 << 3) | ((-2 & 0xffff) << 16)));
  put(72, uint64_t(0xffff888012345678ull));
  put(80, uint32_t(99));
  put(84, int16_t(1));
  v[86] = 2;
  v[87] = 3;
  put(88, int16_t(-4));
  v[90] = 0x7f;
  return v;
}

TEST(BtfFormat, JsonShapesAsBpftool) {
  if (!fs::exists(kObj)) GTEST_SKIP() << kObj << " not built";
  Loaded l = load("fmt_map");
  ASSERT_TRUE(l.obj.ok()) << l.obj.error().to_string();
  ASSERT_TRUE(l.btf && l.map && l.map->btf_key_type_id && l.map->btf_value_type_id);
  auto k = format_btf_value_json(l.btf, l.map->btf_key_type_id, sample_key());
  ASSERT_TRUE(k.ok()) << k.error().to_string();
  EXPECT_EQ(*k, R"({"id":5,"tag":"ab"})");
  auto v = format_btf_value_json(l.btf, l.map->btf_value_type_id, sample_value());
  ASSERT_TRUE(v.ok()) << v.error().to_string();
  EXPECT_EQ(*v,
            R"({"u64":18446744073709551614,"s64":-3,"i32":-7,"u16":65535,"c":65,"flag":true,"name":"hello",)"
            R"("list":[1,-2,3],"inner":{"s":-300,"uc":200,"sc":-5},"u":{"word":67305985,"bytes":[1,2,3,4]},)"
            R"("color":"FMT_BLUE","other":42,"bf_a":"0x5","bf_b":"0x3e8","bf_c":"0xfffe","ptr":18446612682375452280,)"
            R"("cv":99,"pair":[{"s":1,"uc":2,"sc":3},{"s":-4,"uc":127,"sc":0}]})");
  EXPECT_NO_THROW((void)json::parse(*v));
}

TEST(BtfFormat, PlainTextLayoutAsBpftool) {
  if (!fs::exists(kObj)) GTEST_SKIP() << kObj << " not built";
  Loaded l = load("fmt_map");
  ASSERT_TRUE(l.obj.ok() && l.map);
  BtfJsonWriter w(true);
  w.start_array();
  w.start_object();
  w.name("key");
  ASSERT_TRUE(format_btf_value(w, l.btf, l.map->btf_key_type_id, sample_key(), true).ok());
  w.name("value");
  std::vector<uint8_t> v = sample_value();
  ASSERT_TRUE(format_btf_value(w, l.btf, l.map->btf_value_type_id, v, true).ok());
  w.end_object();
  w.end_array();
  const char* expected = R"([{
        "key": {
            "id": 5,
            "tag": "ab"
        },
        "value": {
            "u64": 18446744073709551614,
            "s64": -3,
            "i32": -7,
            "u16": 65535,
            "c": 65,
            "flag": true,
            "name": "hello",
            "list": [1,-2,3
            ],
            "inner": {
                "s": -300,
                "uc": 200,
                "sc": -5
            },
            "u": {
                "word": 67305985,
                "bytes": [1,2,3,4
                ]
            },
            "color": "FMT_BLUE",
            "other": 42,
            "bf_a": 0x5,
            "bf_b": 0x3e8,
            "bf_c": 0xfffe,
            "ptr": 0xffff888012345678,
            "cv": 99,
            "pair": [{
                    "s": 1,
                    "uc": 2,
                    "sc": 3
                },{
                    "s": -4,
                    "uc": 127,
                    "sc": 0
                }
            ]
        }
    }
])";
  EXPECT_EQ(w.str(), expected);
  // A NULL pointer, and a char array without a NUL, which is printed as a list of numbers.
  std::memset(v.data() + 72, 0, 8);
  std::memcpy(v.data() + 24, "abcdefghijkl", 12);
  auto j = format_btf_value_json(l.btf, l.map->btf_value_type_id, v, true);
  ASSERT_TRUE(j.ok());
  EXPECT_NE(j->find(R"("ptr":(nil))"), std::string::npos) << *j;
  EXPECT_NE(j->find(R"("name":[97,98,99,100,101,102,103,104,105,106,107,108])"), std::string::npos) << *j;
}

TEST(BtfFormat, BadInputIsAnError) {
  if (!fs::exists(kObj)) GTEST_SKIP() << kObj << " not built";
  Loaded l = load("fmt_map");
  ASSERT_TRUE(l.obj.ok() && l.map);
  std::vector<uint8_t> v = sample_value();
  auto shorter = format_btf_value_json(l.btf, l.map->btf_value_type_id, std::span<const uint8_t>(v.data(), 40));
  ASSERT_FALSE(shorter.ok());
  EXPECT_NE(shorter.error().message.find("is 96 bytes, the data 40"), std::string::npos) << shorter.error().message;
  auto bad_id = format_btf_value_json(l.btf, 100000, v);
  EXPECT_FALSE(bad_id.ok());
  EXPECT_FALSE(format_btf_value_json(nullptr, 1, v).ok());
  EXPECT_FALSE(ParsedBtf::parse(std::vector<uint8_t>(40, 0xab)).ok());
}

// The same map in the kernel (loaded by libbpf), random keys and values written to both, and
// bpftool's "formatted" output compared with ours, entry by entry.
std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

TEST(BtfFormat, AgreesWithBpftoolOnKernelMaps) {
  if (!fs::exists(kObj)) GTEST_SKIP() << kObj << " not built";
  if (!kernel::available()) GTEST_SKIP() << "bpf() unavailable: " << kernel::unavailable_reason();
  if (run("bpftool version 2>/dev/null").find("bpftool") == std::string::npos) GTEST_SKIP() << "bpftool not installed";
  Loaded l = load("fmt_map");
  ASSERT_TRUE(l.obj.ok() && l.map);
  libbpf_print_fn_t old = libbpf_set_print(nullptr);
  struct bpf_object* o = bpf_object__open_file(kObj.c_str(), nullptr);
  if (!o || bpf_object__load(o) != 0) {
    libbpf_set_print(old);
    if (o) bpf_object__close(o);
    GTEST_SKIP() << "libbpf cannot load " << kObj << " into this kernel";
  }
  libbpf_set_print(old);
  struct bpf_map* km = bpf_object__find_map_by_name(o, "fmt_map");
  ASSERT_NE(km, nullptr);
  struct bpf_map_info info = {};
  uint32_t len = sizeof info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(bpf_map__fd(km), &info, &len), 0);
  std::mt19937_64 rng(7);
  for (int round = 0; round < 4; ++round) {
    std::vector<std::vector<uint8_t>> keys;
    for (int e = 0; e < 8; ++e) {
      std::vector<uint8_t> k(8), v(96);
      for (auto& b : k) b = uint8_t(rng());
      for (auto& b : v) b = uint8_t(rng());
      v[23] = uint8_t(e & 1);                                 // a bool holds 0 or 1
      if (e % 2) std::memcpy(v.data() + 24, "text\0", 5);  // some strings too
      if (e % 3 == 0) v[56] = uint8_t(e % 2 ? 1 : 7), v[57] = v[58] = v[59] = 0;  // named enum values
      bpf_map_delete_elem(bpf_map__fd(km), k.data());
      ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(km), k.data(), v.data(), 0), 0);
      keys.push_back(k);
    }
    json dump = json::parse(run("bpftool -j map dump id " + std::to_string(info.id)));
    ASSERT_TRUE(dump.is_array());
    size_t compared = 0;
    for (const json& entry : dump) {
      ASSERT_TRUE(entry.contains("formatted")) << entry.dump();
      std::vector<uint8_t> k, v;
      for (const auto& h : entry["key"]) k.push_back(uint8_t(std::stoul(h.get<std::string>(), nullptr, 16)));
      for (const auto& h : entry["value"]) v.push_back(uint8_t(std::stoul(h.get<std::string>(), nullptr, 16)));
      auto fk = format_btf_value_json(l.btf, l.map->btf_key_type_id, k);
      auto fv = format_btf_value_json(l.btf, l.map->btf_value_type_id, v);
      ASSERT_TRUE(fk.ok() && fv.ok());
      EXPECT_EQ(json::parse(*fk), entry["formatted"]["key"]);
      EXPECT_EQ(json::parse(*fv), entry["formatted"]["value"]) << "ours:    " << *fv << "\nbpftool: " << entry["formatted"]["value"].dump();
      ++compared;
    }
    EXPECT_GE(compared, 8u);
    for (const auto& k : keys) bpf_map_delete_elem(bpf_map__fd(km), k.data());
  }
  bpf_object__close(o);
}

}  // namespace
}  // namespace bpfvm

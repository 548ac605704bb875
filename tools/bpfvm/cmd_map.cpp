// bpfvm map VERB ...: bpftool's map verbs over pinned maps (the store, docs/cli.md "bpfvm map").
// Arguments follow bpftool's keyword syntax (`map update pinned FILE key 1 0 0 0 value hex 01 ..`),
// so the verb parses its own words; -j / -p (--json / --pretty) may appear anywhere.
#include <dirent.h>
#include <signal.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bpfvm/btf_format.hpp"
#include "bpfvm/map.hpp"
#include "bytes_parse.hpp"
#include "cli.hpp"
#include "verbs.hpp"
#include "map_ref.hpp"

namespace bpfvm::cli {
namespace {

using json = nlohmann::ordered_json;

std::string errno_text(long err) { return std::strerror(int(err < 0 ? -err : err)); }
// A failed user-space write: the errno's text, and why when the map is frozen.
std::string write_error(const Map& m, long err) {
  return errno_text(err) + (err == -EPERM && m.frozen() ? " (the map is frozen)" : "");
}

json hex_array(const uint8_t* p, size_t n) {
  json a = json::array();
  for (size_t i = 0; i < n; ++i) a.push_back(fmt::format("0x{:02x}", p[i]));
  return a;
}
std::string hex_text(const uint8_t* p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += fmt::format("{:02x}", p[i]);
  }
  return s;
}

bool is_percpu(uint32_t t) {
  return t == kMapPercpuArray || t == kMapPercpuHash || t == kMapLruPercpuHash || t == kMapPercpuCgroupStorage;
}

bool is_map_of_maps(uint32_t t) { return t == kMapArrayOfMaps || t == kMapHashOfMaps; }

// A map-in-map's value as user space reads it is an inner map id of this process: printed as
// the inner map's store id (its `id N`, as bpftool prints inner map ids) and its pin path.
std::shared_ptr<Map> inner_of(const uint8_t* val) {
  uint32_t id;
  std::memcpy(&id, val, 4);
  return map_by_id(id);
}

// One key/value as bpftool's print_entry_json / print_entry_plain print it.
json entry_json(const Map& m, const uint8_t* key, const uint8_t* val) {
  const MapSpec& s = m.spec();
  json j;
  j["key"] = hex_array(key, s.key_size);
  if (is_map_of_maps(s.type)) {
    auto in = inner_of(val);
    uint32_t sid = in ? uint32_t(in->store_id()) : 0;
    j["value"] = hex_array(reinterpret_cast<const uint8_t*>(&sid), 4);
    j["inner_map_id"] = in ? in->store_id() : 0;
    j["inner_map_pinned"] = in ? in->pin_path() : "";
    return j;
  }
  if (is_percpu(s.type)) {
    size_t stride = (s.value_size + 7) & ~size_t(7);
    json vs = json::array();
    for (int c = 0; c < m.ncpus(); ++c) vs.push_back({{"cpu", c}, {"value", hex_array(val + c * stride, s.value_size)}});
    j["values"] = vs;
  } else {
    j["value"] = hex_array(val, s.value_size);
  }
  return j;
}
void entry_text(const Map& m, const uint8_t* key, const uint8_t* val) {
  const MapSpec& s = m.spec();
  if (is_map_of_maps(s.type)) {
    auto in = inner_of(val);
    std::printf("key: %s  inner_map: pinned %s\n", hex_text(key, s.key_size).c_str(), in ? in->pin_path().c_str() : "?");
    return;
  }
  if (is_percpu(s.type)) {
    size_t stride = (s.value_size + 7) & ~size_t(7);
    std::printf("key:\n%s\n", hex_text(key, s.key_size).c_str());
    for (int c = 0; c < m.ncpus(); ++c)
      std::printf("value (CPU %02d): %s\n", c, hex_text(val + c * stride, s.value_size).c_str());
    return;
  }
  bool brk = s.key_size > 16 || s.value_size > 16;
  if (brk)
    std::printf("key:\n%s\nvalue:\n%s\n", hex_text(key, s.key_size).c_str(), hex_text(val, s.value_size).c_str());
  else
    std::printf("key: %s  value: %s\n", hex_text(key, s.key_size).c_str(), hex_text(val, s.value_size).c_str());
}

// ---- BTF-formatted entries (bpftool's do_dump_btf) ---------------------------------------------------
// The map's BTF parsed, or nullptr (none, or unreadable: then a warning and the hex forms).
std::shared_ptr<const ParsedBtf> map_btf(const Map& m) {
  auto b = m.btf();
  if (!b || (!b->key_type_id && !b->value_type_id)) return nullptr;
  if (is_map_of_maps(m.spec().type)) return nullptr;  // values are inner maps, printed as such
  auto p = ParsedBtf::parse(b->data);
  if (!p) {
    std::fprintf(stderr, "bpfvm: warning: map '%s': its BTF cannot be read (%s); printing bytes\n", m.spec().name.c_str(),
                 p.error().message.c_str());
    return nullptr;
  }
  return *p;
}

// {"key":..., "value":...} (per-CPU: "values":[{"cpu":N,"value":...}]) through the BTF.
Status btf_entry(BtfJsonWriter& w, const Map& m, const ParsedBtf& btf, const uint8_t* key, const uint8_t* val,
                 bool plain) {
  const MapSpec& s = m.spec();
  const MapBtf& mb = *m.btf();
  w.start_object();
  if (mb.key_type_id) {
    w.name("key");
    if (Status st = format_btf_value(w, btf.get(), mb.key_type_id, {key, s.key_size}, plain); !st) return st;
  }
  if (!is_percpu(s.type)) {
    w.name("value");
    if (Status st = format_btf_value(w, btf.get(), mb.value_type_id, {val, s.value_size}, plain); !st) return st;
  } else {
    size_t stride = (s.value_size + 7) & ~size_t(7);
    w.name("values");
    w.start_array();
    for (int c = 0; c < m.ncpus(); ++c) {
      w.start_object();
      w.name("cpu");
      w.raw(std::to_string(c));
      w.name("value");
      if (Status st = format_btf_value(w, btf.get(), mb.value_type_id, {val + c * stride, s.value_size}, plain); !st)
        return st;
      w.end_object();
    }
    w.end_array();
  }
  w.end_object();
  return {};
}

// entry_json plus bpftool's "formatted" member when the map has BTF.
json entry_json_btf(const Map& m, const ParsedBtf* btf, const uint8_t* key, const uint8_t* val) {
  json j = entry_json(m, key, val);
  if (!btf) return j;
  BtfJsonWriter w(false);
  if (Status st = btf_entry(w, m, *btf, key, val, false); !st) {
    j["formatted"] = json::object({{"error", st.error().message}});
    return j;
  }
  try {
    j["formatted"] = json::parse(w.str());
  } catch (const json::exception&) {  // e.g. a float that is not a number (bpftool prints nan too)
    j["formatted"] = json::object({{"error", "not valid JSON: " + w.str()}});
  }
  return j;
}

using Ctx = VerbCtx;

// ---- map create -------------------------------------------------------------------------------------
int cmd_create(Ctx& c) {
  auto& a = c.args;
  if (a.empty()) return c.error(kUsage, "map create FILE type TYPE key K value V entries N name NAME [flags F] [inner_map MAP]");
  std::string file = a[0];
  MapSpec s;
  bool have_type = false, have_key = false, have_value = false, have_entries = false, have_name = false;
  auto num = [&](size_t i, uint32_t* out) -> std::string {
    if (i >= a.size()) return "missing number after '" + a[i - 1] + "'";
    char* end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(a[i].c_str(), &end, 0);
    if (a[i].empty() || *end || errno || v > 0xffffffffUL || a[i][0] == '-')
      return "'" + a[i] + "' is not a number (after '" + a[i - 1] + "')";
    *out = uint32_t(v);
    return "";
  };
  for (size_t i = 1; i < a.size(); i += 2) {
    const std::string& k = a[i];
    std::string e;
    if (i + 1 >= a.size()) return c.error(kUsage, "missing value after '" + k + "'");
    if (k == "type") {
      int t = map_type_from_name(a[i + 1]);
      if (t < 0) return c.error(kUsage, "unknown map type '" + a[i + 1] + "'");
      s.type = uint32_t(t);
      have_type = true;
    } else if (k == "key") {
      e = num(i + 1, &s.key_size);
      have_key = true;
    } else if (k == "value") {
      e = num(i + 1, &s.value_size);
      have_value = true;
    } else if (k == "entries") {
      e = num(i + 1, &s.max_entries);
      have_entries = true;
    } else if (k == "name") {
      s.name = a[i + 1];
      have_name = true;
    } else if (k == "flags") {
      e = num(i + 1, &s.flags);
    } else if (k == "inner_map") {
      // The inner map template: the shape of an existing pinned map (bpftool's inner_map MAP).
      size_t j = i + 1;
      auto inner = open_map_ref(a, &j);
      if (!inner) return c.error(kFailed, "inner_map: " + inner.error().message);
      s.inner = std::make_shared<MapSpec>((*inner)->spec());
      i = j - 2;
    } else {
      return c.error(kUsage, "unknown argument '" + k + "' to map create");
    }
    if (!e.empty()) return c.error(kUsage, e);
  }
  if (!have_type) return c.error(kUsage, "map create: type missing");
  if (!have_name) return c.error(kUsage, "map create: name missing");
  if (!have_entries) return c.error(kUsage, "map create: entries missing");
  if (s.type != kMapRingbuf && (!have_key || !have_value)) return c.error(kUsage, "map create: key and value sizes missing");
  auto m = create_pinned_map(s, file);
  if (!m) return c.error(kFailed, m.error().message);
  return c.done();
}

// ---- show / list ----------------------------------------------------------------------------------
json show_json(const Map& m) {
  const MapSpec& s = m.spec();
  uint64_t memlock = 0;
  struct stat st;
  if (stat(m.pin_path().c_str(), &st) == 0) memlock = (uint64_t(st.st_size) + 4095) & ~4095ull;
  json j;
  j["id"] = m.store_id();
  j["type"] = map_type_name(s.type);
  j["name"] = s.name;
  j["flags"] = s.flags;
  j["bytes_key"] = s.key_size;
  j["bytes_value"] = s.value_size;
  j["max_entries"] = s.max_entries;
  j["bytes_memlock"] = memlock;
  j["frozen"] = m.frozen() ? 1 : 0;
  // The BTF kept in a map's file has no id of its own: it takes the map's (0: no BTF).
  j["btf_id"] = m.btf() ? m.store_id() : 0;
  j["pinned"] = json::array({m.pin_path()});
  return j;
}
void show_text(const Map& m) {
  json j = show_json(m);
  std::printf("%llu: %s  name %s  flags 0x%x\n", (unsigned long long)m.store_id(), map_type_name(m.spec().type),
              m.spec().name.c_str(), m.spec().flags);
  std::printf("\tkey %uB  value %uB  max_entries %u  memlock %lluB\n", m.spec().key_size, m.spec().value_size,
              m.spec().max_entries, (unsigned long long)j["bytes_memlock"].get<uint64_t>());
  if (m.btf()) std::printf("\tbtf_id %llu\n", (unsigned long long)m.store_id());
  if (m.frozen()) std::printf("\tfrozen\n");
  std::printf("\tpinned %s\n", m.pin_path().c_str());
}

int cmd_show(Ctx& c) {
  if (!c.args.empty()) {
    size_t i = 0;
    auto m = open_map_ref(c.args, &i);
    if (!m) return c.error(kFailed, m.error().message);
    if (i != c.args.size()) return c.error(kUsage, "unexpected argument '" + c.args[i] + "'");
    if (c.as_json) c.print(show_json(**m)); else show_text(**m);
    return kOk;
  }
  std::vector<std::shared_ptr<Map>> all;
  std::string root = pin_root();
  for (const std::string& p : list_pinned_maps(root)) {
    auto m = open_pinned_map(p);
    if (m) all.push_back(*m);
  }
  if (c.as_json) {
    json a = json::array();
    for (auto& m : all) a.push_back(show_json(*m));
    c.print(a);
  } else {
    for (auto& m : all) show_text(*m);
  }
  return kOk;
}

// ---- dump, lookup, update, delete, getnext ----------------------------------------------------------
int cmd_dump(Ctx& c) {
  size_t i = 0;
  auto mr = open_map_ref(c.args, &i);
  if (!mr) return c.error(kFailed, mr.error().message);
  if (i != c.args.size()) return c.error(kUsage, "unexpected argument '" + c.args[i] + "'");
  Map& m = **mr;
  const MapSpec& s = m.spec();
  if (s.type == kMapRingbuf || s.type == kMapQueue || s.type == kMapStack || s.type == kMapBloomFilter)
    return c.error(kFailed, fmt::format("map of type {} cannot be dumped (no keys)", map_type_name(s.type)));
  std::vector<uint8_t> key(s.key_size), prev(s.key_size), val(m.user_value_size());
  json arr = json::array();
  size_t n = 0;
  bool have_prev = false;
  // With BTF, the text form is bpftool's: the formatted entries as one JSON array, laid out by its
  // writer, and no "Found" line.
  auto btf = map_btf(m);
  BtfJsonWriter text(true);
  if (btf && !c.as_json) text.start_array();
  for (size_t guard = 0; guard <= size_t(s.max_entries) + 1; ++guard) {
    long e = m.get_next_key(have_prev ? prev.data() : nullptr, key.data());
    if (e) break;
    prev = key;
    have_prev = true;
    if (m.lookup_copy(key.data(), val.data(), 0) != 0) continue;  // deleted meanwhile
    ++n;
    if (c.as_json) {
      arr.push_back(entry_json_btf(m, btf.get(), key.data(), val.data()));
    } else if (btf) {
      if (Status st = btf_entry(text, m, *btf, key.data(), val.data(), true); !st)
        return c.error(kFailed, "cannot format an entry by its BTF: " + st.error().message);
    } else {
      entry_text(m, key.data(), val.data());
    }
  }
  if (c.as_json) {
    c.print(arr);
  } else if (btf) {
    text.end_array();
    std::printf("%s\n", text.str().c_str());
  } else {
    std::printf("Found %zu element%s\n", n, n == 1 ? "" : "s");
  }
  return kOk;
}

const std::vector<std::string> kKeyStop = {"value", "any", "exist", "noexist"};

int cmd_lookup(Ctx& c) {
  size_t i = 0;
  auto mr = open_map_ref(c.args, &i);
  if (!mr) return c.error(kFailed, mr.error().message);
  Map& m = **mr;
  if (i >= c.args.size() || c.args[i] != "key") return c.error(kUsage, "map lookup MAP key BYTES");
  ++i;
  std::vector<uint8_t> key, val(m.user_value_size());
  if (std::string e = parse_bytes(c.args, &i, "key", m.spec().key_size, {}, &key); !e.empty()) return c.error(kUsage, e);
  long e = m.lookup_copy(key.data(), val.data(), 0);
  if (e == -ENOENT) {
    if (c.as_json) std::printf("null\n"); else std::printf("Not found\n");
    return kFailed;
  }
  if (e) return c.error(kFailed, "lookup failed: " + errno_text(e));
  auto btf = map_btf(m);
  if (c.as_json) {
    c.print(entry_json_btf(m, btf.get(), key.data(), val.data()));
  } else if (btf) {
    BtfJsonWriter w(true);
    if (Status st = btf_entry(w, m, *btf, key.data(), val.data(), true); !st)
      return c.error(kFailed, "cannot format the entry by its BTF: " + st.error().message);
    std::printf("%s\n", w.str().c_str());
  } else {
    entry_text(m, key.data(), val.data());
  }
  return kOk;
}

int cmd_update(Ctx& c) {
  size_t i = 0;
  auto mr = open_map_ref(c.args, &i);
  if (!mr) return c.error(kFailed, mr.error().message);
  Map& m = **mr;
  if (i >= c.args.size() || c.args[i] != "key") return c.error(kUsage, "map update MAP key BYTES value BYTES [any|exist|noexist]");
  ++i;
  std::vector<uint8_t> key, val;
  if (std::string e = parse_bytes(c.args, &i, "key", m.spec().key_size, kKeyStop, &key); !e.empty()) return c.error(kUsage, e);
  if (i >= c.args.size() || c.args[i] != "value") return c.error(kUsage, "map update: value missing");
  ++i;
  std::shared_ptr<Map> inner;  // kept open until the update is done
  if (is_map_of_maps(m.spec().type)) {
    // bpftool's `value [id|pinned] MAP`: the map to put in the slot.
    auto in = open_map_ref(c.args, &i);
    if (!in) return c.error(kFailed, "value: " + in.error().message);
    inner = *in;
    uint32_t id = inner->id();
    val.resize(4);
    std::memcpy(val.data(), &id, 4);
  } else if (std::string e = parse_bytes(c.args, &i, "value", m.user_value_size(), kKeyStop, &val); !e.empty()) {
    return c.error(kUsage, e);
  }
  uint64_t flags = kBpfAny;
  if (i < c.args.size()) {
    if (c.args[i] == "any") flags = kBpfAny;
    else if (c.args[i] == "exist") flags = kBpfExist;
    else if (c.args[i] == "noexist") flags = kBpfNoexist;
    ++i;
  }
  if (i != c.args.size()) return c.error(kUsage, "unexpected argument '" + c.args[i] + "'");
  long e = m.update_user(key.data(), val.data(), flags);
  if (e) return c.error(kFailed, "update failed: " + write_error(m, e));
  return c.done();
}

int cmd_delete(Ctx& c) {
  size_t i = 0;
  auto mr = open_map_ref(c.args, &i);
  if (!mr) return c.error(kFailed, mr.error().message);
  Map& m = **mr;
  if (i >= c.args.size() || c.args[i] != "key") return c.error(kUsage, "map delete MAP key BYTES");
  ++i;
  std::vector<uint8_t> key;
  if (std::string e = parse_bytes(c.args, &i, "key", m.spec().key_size, {}, &key); !e.empty()) return c.error(kUsage, e);
  long e = m.delete_user(key.data());
  if (e) return c.error(kFailed, "delete failed: " + write_error(m, e));
  return c.done();
}

int cmd_getnext(Ctx& c) {
  size_t i = 0;
  auto mr = open_map_ref(c.args, &i);
  if (!mr) return c.error(kFailed, mr.error().message);
  Map& m = **mr;
  std::vector<uint8_t> key, next(m.spec().key_size);
  bool have = false;
  if (i < c.args.size()) {
    if (c.args[i] != "key") return c.error(kUsage, "map getnext MAP [key BYTES]");
    ++i;
    if (std::string e = parse_bytes(c.args, &i, "key", m.spec().key_size, {}, &key); !e.empty()) return c.error(kUsage, e);
    have = true;
  }
  long e = m.get_next_key(have ? key.data() : nullptr, next.data());
  if (e) return c.error(kFailed, "can't get next key: " + errno_text(e));
  if (c.as_json) {
    json j;
    j["key"] = have ? hex_array(key.data(), key.size()) : json(nullptr);
    j["next_key"] = hex_array(next.data(), next.size());
    c.print(j);
  } else {
    std::printf("key:\n%s\nnext key:\n%s\n", have ? hex_text(key.data(), key.size()).c_str() : "None",
                hex_text(next.data(), next.size()).c_str());
  }
  return kOk;
}

// ---- queue / stack / bloom filter -----------------------------------------------------------------
int cmd_pop_like(Ctx& c, bool remove) {
  size_t i = 0;
  auto mr = open_map_ref(c.args, &i);
  if (!mr) return c.error(kFailed, mr.error().message);
  Map& m = **mr;
  if (i != c.args.size()) return c.error(kUsage, "unexpected argument '" + c.args[i] + "'");
  std::vector<uint8_t> val(m.spec().value_size);
  // BPF_MAP_LOOKUP_AND_DELETE_ELEM / BPF_MAP_LOOKUP_ELEM without a key, as bpftool pops and peeks.
  long e = remove ? m.lookup_and_delete(nullptr, val.data(), 0) : m.lookup_copy(nullptr, val.data(), 0);
  if (e == -ENOENT) {
    if (c.as_json) std::printf("null\n"); else std::printf("Not found\n");
    return kFailed;
  }
  if (e) return c.error(kFailed, std::string(remove ? "pop" : "peek") + " failed: " + write_error(m, e));
  if (c.as_json) c.print(json::object({{"value", hex_array(val.data(), val.size())}}));
  else std::printf("value: %s\n", hex_text(val.data(), val.size()).c_str());
  return kOk;
}

int cmd_push(Ctx& c) {
  size_t i = 0;
  auto mr = open_map_ref(c.args, &i);
  if (!mr) return c.error(kFailed, mr.error().message);
  Map& m = **mr;
  if (i >= c.args.size() || c.args[i] != "value") return c.error(kUsage, "map push MAP value BYTES");
  ++i;
  std::vector<uint8_t> val;
  if (std::string e = parse_bytes(c.args, &i, "value", m.spec().value_size, {}, &val); !e.empty()) return c.error(kUsage, e);
  long e = m.update_user(nullptr, val.data(), 0);  // BPF_MAP_UPDATE_ELEM without a key pushes
  if (e) return c.error(kFailed, "push failed: " + write_error(m, e));
  return c.done();
}

// ---- freeze, pin -----------------------------------------------------------------------------------
int cmd_freeze(Ctx& c) {
  size_t i = 0;
  auto mr = open_map_ref(c.args, &i);
  if (!mr) return c.error(kFailed, mr.error().message);
  if (i != c.args.size()) return c.error(kUsage, "unexpected argument '" + c.args[i] + "'");
  (*mr)->freeze();
  return c.done();
}

int cmd_pin(Ctx& c) {
  size_t i = 0;
  auto mr = open_map_ref(c.args, &i);
  if (!mr) return c.error(kFailed, mr.error().message);
  if (i + 1 != c.args.size()) return c.error(kUsage, "map pin MAP FILE");
  auto r = pin_map(**mr, c.args[i]);
  if (!r) return c.error(kFailed, r.error().message);
  return c.done();
}

// ---- event_pipe -------------------------------------------------------------------------------------
volatile sig_atomic_t g_stop = 0;

int cmd_event_pipe(Ctx& c) {
  size_t i = 0;
  auto mr = open_map_ref(c.args, &i);
  if (!mr) return c.error(kFailed, mr.error().message);
  uint64_t limit = 0;  // bpfvm extension: stop after N records
  int timeout_ms = -1;
  for (; i < c.args.size(); i += 2) {
    if (i + 1 >= c.args.size()) return c.error(kUsage, "missing value after '" + c.args[i] + "'");
    char* end = nullptr;
    unsigned long long v = std::strtoull(c.args[i + 1].c_str(), &end, 0);
    if (*end) return c.error(kUsage, "'" + c.args[i + 1] + "' is not a number");
    if (c.args[i] == "count") limit = v;
    else if (c.args[i] == "timeout") timeout_ms = int(v);
    else return c.error(kUsage, "unknown argument '" + c.args[i] + "' to map event_pipe");
  }
  RingbufMap* rb = as_ringbuf(mr->get());
  PerfEventArrayMap* pa = as_perf_event_array(mr->get());
  if (!rb && !pa)
    return c.error(kFailed, fmt::format("map event_pipe reads ring buffers and perf event arrays; this map is a {}",
                                        map_type_name((*mr)->spec().type)));
  signal(SIGINT, [](int) { g_stop = 1; });
  signal(SIGTERM, [](int) { g_stop = 1; });
  uint64_t seen = 0;
  const std::string name = (*mr)->spec().name;
  auto start = std::chrono::steady_clock::now();
  // One record as bpftool's event_pipe prints it. The time (CLOCK_MONOTONIC ns) is when
  // bpf_perf_event_output wrote the record, as the kernel's PERF_SAMPLE_TIME; ring-buffer records
  // carry none (as in the kernel): for them it is when the record is read. A ring buffer has no
  // CPU: 0. A perf event array's ring of CPU c is index c.
  auto sample = [&](int cpu, uint64_t ts, const void* d, uint32_t n) {
    if (limit && seen >= limit) return;
    const uint8_t* p = static_cast<const uint8_t*>(d);
    if (c.as_json) {
      json j;
      j["type"] = 9;  // PERF_RECORD_SAMPLE
      j["cpu"] = cpu;
      j["index"] = cpu;
      j["timestamp"] = ts;
      j["data"] = hex_array(p, n);
      j["map"] = name;
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("== @%lld.%09lld CPU: %d index: %d =====\n", (long long)(ts / 1000000000), (long long)(ts % 1000000000),
                  cpu, cpu);
      for (uint32_t k = 0; k < n; k += 16)
        std::printf("%s\n", hex_text(p + k, std::min<uint32_t>(16, n - k)).c_str());
    }
    std::fflush(stdout);
    ++seen;
  };
  // PERF_RECORD_LOST: {"type":2,"cpu":C,"index":C,"lost":{"id":0,"count":N}} / "lost N events".
  auto lost = [&](int cpu, uint64_t count) {
    if (c.as_json) {
      json j;
      j["type"] = 2;
      j["cpu"] = cpu;
      j["index"] = cpu;
      j["lost"] = {{"id", 0}, {"count", count}};
      j["map"] = name;
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("lost %llu events\n", (unsigned long long)count);
    }
    std::fflush(stdout);
  };
  auto rb_cb = [&](const void* d, uint32_t n) {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    sample(0, uint64_t(now.tv_sec) * 1000000000ull + uint64_t(now.tv_nsec), d, n);
    return (limit && seen >= limit) ? -1 : 0;
  };
  while (!g_stop && !(limit && seen >= limit)) {
    int slice = 200;
    if (timeout_ms >= 0) {
      auto left = timeout_ms - std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
      if (left <= 0) break;
      slice = int(std::min<long long>(slice, left));
    }
    if (rb) rb->poll(rb_cb, slice);
    else pa->poll_records(sample, lost, slice);
  }
  return kOk;
}

int run_verb(const std::string& verb, Ctx& c) {
  if (verb == "create") return cmd_create(c);
  if (verb == "show" || verb == "list") return cmd_show(c);
  if (verb == "dump") return cmd_dump(c);
  if (verb == "lookup") return cmd_lookup(c);
  if (verb == "update") return cmd_update(c);
  if (verb == "delete") return cmd_delete(c);
  if (verb == "getnext") return cmd_getnext(c);
  if (verb == "peek") return cmd_pop_like(c, false);
  if (verb == "pop" || verb == "dequeue") return cmd_pop_like(c, true);
  if (verb == "push" || verb == "enqueue") return cmd_push(c);
  if (verb == "freeze") return cmd_freeze(c);
  if (verb == "pin") return cmd_pin(c);
  if (verb == "event_pipe") return cmd_event_pipe(c);
  return c.error(kUsage, "unknown map verb '" + verb +
                             "' (create, show, list, dump, lookup, update, delete, getnext, peek, push, pop, "
                             "enqueue, dequeue, freeze, pin, event_pipe)");
}

RegisterCommand reg_map("map", [](CLI::App& app, std::function<int()>& run) {
  register_verb_command(app, run, "map", "bpftool's map verbs on pinned maps (docs/cli.md)", "show, dump, lookup, update, ...", &run_verb);
}, true);

}  // namespace
}  // namespace bpfvm::cli

// bpfvm map VERB: bpftool's verbs over pinned maps, run as a separate process (the CLI binary),
// sharing the maps with this process.
#include <signal.h>
#include <time.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/magic.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "bpfvm/map.hpp"

namespace bpfvm {
namespace {

namespace fs = std::filesystem;

std::string fmt_hex(uint32_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", b);
  return buf;
}

struct Out {
  std::string text;
  int rc = -1;
};

class MapCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    struct statfs st;
    if (statfs("/dev/shm", &st) != 0 || static_cast<unsigned long>(st.f_type) != TMPFS_MAGIC)
      GTEST_SKIP() << "/dev/shm is not tmpfs here";
    bin_ = std::string(BPFVM_BINARY_DIR) + "/bpfvm";
    if (!fs::exists(bin_)) GTEST_SKIP() << bin_ << " not built";
    root_ = "/dev/shm/bpfvm-cli-test-" + std::to_string(getpid());
    fs::create_directories(root_);
  }
  void TearDown() override {
    if (!root_.empty()) fs::remove_all(root_);
  }
  // Runs `bpfvm ARGS` with the pin root set; stdout only (stderr to stdout when merge).
  Out run(const std::string& args, bool merge = false) {
    std::string cmd = "BPFVM_PIN_ROOT=" + root_ + " " + bin_ + " " + args + (merge ? " 2>&1" : " 2>/dev/null");
    Out o;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return o;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) o.text.append(buf.data(), n);
    int st = pclose(p);
    o.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return o;
  }
  std::string bin_, root_;
};

TEST_F(MapCliTest, CreateUpdateLookupDumpDelete) {
  const std::string f = root_ + "/counts";
  ASSERT_EQ(run("map create " + f + " type hash key 4 value 8 entries 16 name counts").rc, 0);
  EXPECT_EQ(run("map update pinned " + f + " key 1 0 0 0 value 0x2a 0 0 0 0 0 0 0").rc, 0);
  EXPECT_EQ(run("map update pinned " + f + " key hex 02 00 00 00 value hex 0100000000000000 noexist").rc, 0);
  // noexist on a present key fails
  Out o = run("map update pinned " + f + " key 2 0 0 0 value 0 0 0 0 0 0 0 0 noexist", true);
  EXPECT_EQ(o.rc, 1);
  EXPECT_NE(o.text.find("File exists"), std::string::npos) << o.text;

  // This process sees what the CLI wrote.
  auto m = open_pinned_map(f);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  uint32_t k = 1;
  uint64_t v = 0;
  ASSERT_EQ((*m)->lookup_copy(&k, &v, 0), 0);
  EXPECT_EQ(v, 42u);
  k = 3;
  v = 0x0102;
  ASSERT_EQ((*m)->update_user(&k, &v, 0), 0);

  o = run("map lookup name counts key 3 0 0 0");
  EXPECT_EQ(o.rc, 0);
  EXPECT_EQ(o.text, "key: 03 00 00 00  value: 02 01 00 00 00 00 00 00\n");
  o = run("map lookup pinned " + f + " key 9 0 0 0");
  EXPECT_EQ(o.rc, 1);
  EXPECT_EQ(o.text, "Not found\n");
  o = run("map lookup -j pinned " + f + " key 9 0 0 0");
  EXPECT_EQ(o.text, "null\n");

  o = run("map dump -j pinned " + f);
  ASSERT_EQ(o.rc, 0);
  auto j = nlohmann::json::parse(o.text);
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j.size(), 3u);
  bool found = false;
  for (auto& e : j)
    if (e["key"] == nlohmann::json({"0x01", "0x00", "0x00", "0x00"})) {
      found = true;
      EXPECT_EQ(e["value"], nlohmann::json({"0x2a", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00", "0x00"}));
    }
  EXPECT_TRUE(found);
  o = run("map dump pinned " + f);
  EXPECT_NE(o.text.find("Found 3 elements\n"), std::string::npos) << o.text;

  EXPECT_EQ(run("map delete pinned " + f + " key 1 0 0 0").rc, 0);
  k = 1;
  EXPECT_EQ((*m)->lookup_copy(&k, &v, 0), -ENOENT);

  // bad BYTES are usage errors naming the problem; under -j, {"error": ...}
  o = run("map update pinned " + f + " key 1 0 0 value 1", true);
  EXPECT_EQ(o.rc, 2);
  EXPECT_NE(o.text.find("key expected 4 bytes got 3"), std::string::npos) << o.text;
  o = run("map lookup -j pinned " + f + " key 1 0 0 300");
  EXPECT_EQ(o.rc, 2);
  EXPECT_EQ(nlohmann::json::parse(o.text)["error"], "error parsing byte: 300 (larger than 255)");
}

TEST_F(MapCliTest, ShowListGetnextFreezePin) {
  const std::string f = root_ + "/arr";
  ASSERT_EQ(run("map create " + f + " type array key 4 value 4 entries 2 name arr").rc, 0);
  Out o = run("map show -j pinned " + f);
  ASSERT_EQ(o.rc, 0);
  auto j = nlohmann::json::parse(o.text);
  EXPECT_EQ(j["type"], "array");
  EXPECT_EQ(j["name"], "arr");
  EXPECT_EQ(j["bytes_key"], 4);
  EXPECT_EQ(j["bytes_value"], 4);
  EXPECT_EQ(j["max_entries"], 2);
  EXPECT_EQ(j["frozen"], 0);
  for (const char* key : {"id", "flags", "bytes_memlock", "btf_id"}) EXPECT_TRUE(j.contains(key)) << key;
  const uint64_t id = j["id"];
  o = run("map list -j");
  auto all = nlohmann::json::parse(o.text);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0]["id"], id);
  o = run("map show id " + std::to_string(id));
  EXPECT_EQ(o.text.rfind(std::to_string(id) + ": array  name arr  flags 0x0\n", 0), 0u) << o.text;

  o = run("map getnext pinned " + f);
  EXPECT_EQ(o.text, "key:\nNone\nnext key:\n00 00 00 00\n");
  o = run("map getnext -j pinned " + f + " key 0 0 0 0");
  EXPECT_EQ(o.text, "{\"key\":[\"0x00\",\"0x00\",\"0x00\",\"0x00\"],\"next_key\":[\"0x01\",\"0x00\",\"0x00\",\"0x00\"]}\n");
  EXPECT_EQ(run("map getnext pinned " + f + " key 1 0 0 0").rc, 1);

  EXPECT_EQ(run("map pin pinned " + f + " " + root_ + "/arr2").rc, 0);
  EXPECT_EQ(run("map update pinned " + root_ + "/arr2 key 1 0 0 0 value 7 0 0 0").rc, 0);
  EXPECT_EQ(run("map lookup pinned " + f + " key 1 0 0 0").text, "key: 01 00 00 00  value: 07 00 00 00\n");

  EXPECT_EQ(run("map freeze pinned " + f).rc, 0);
  EXPECT_EQ(nlohmann::json::parse(run("map show -j pinned " + f).text)["frozen"], 1);
  o = run("map update pinned " + f + " key 1 0 0 0 value 8 0 0 0", true);
  EXPECT_EQ(o.rc, 1);
  EXPECT_NE(o.text.find("frozen"), std::string::npos) << o.text;

  o = run("map dump pinned /nonexistent/x", true);
  EXPECT_EQ(o.rc, 1);
  EXPECT_NE(o.text.find("No such file"), std::string::npos) << o.text;
}

TEST_F(MapCliTest, QueuePushPopPeek) {
  const std::string f = root_ + "/q";
  ASSERT_EQ(run("map create " + f + " type queue key 0 value 4 entries 2 name q").rc, 0);
  EXPECT_EQ(run("map push pinned " + f + " value 1 0 0 0").rc, 0);
  EXPECT_EQ(run("map enqueue pinned " + f + " value hex 02000000").rc, 0);
  Out o = run("map push pinned " + f + " value 3 0 0 0", true);
  EXPECT_EQ(o.rc, 1);
  EXPECT_NE(o.text.find("Argument list too long"), std::string::npos) << o.text;  // E2BIG: full
  EXPECT_EQ(run("map peek pinned " + f).text, "value: 01 00 00 00\n");
  EXPECT_EQ(run("map pop -j pinned " + f).text, "{\"value\":[\"0x01\",\"0x00\",\"0x00\",\"0x00\"]}\n");
  EXPECT_EQ(run("map dequeue pinned " + f).text, "value: 02 00 00 00\n");
  o = run("map pop pinned " + f);
  EXPECT_EQ(o.rc, 1);
  EXPECT_EQ(o.text, "Not found\n");
}

TEST_F(MapCliTest, EventPipePrintsRecordsAsTheyArrive) {
  const std::string f = root_ + "/events";
  ASSERT_EQ(run("map create " + f + " type ringbuf key 0 value 0 entries 4096 name events").rc, 0);
  auto m = open_pinned_map(f);
  ASSERT_TRUE(m.ok());
  std::thread producer([&] {
    // records written while event_pipe already waits (a wake-up from another process), and before
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    for (uint32_t i = 1; i <= 3; ++i) as_ringbuf(m->get())->output(&i, 4, 0);
  });
  Out o = run("map event_pipe -j pinned " + f + " count 3 timeout 10000");
  producer.join();
  ASSERT_EQ(o.rc, 0);
  std::vector<nlohmann::json> recs;
  size_t pos = 0;
  while (pos < o.text.size()) {
    size_t nl = o.text.find('\n', pos);
    recs.push_back(nlohmann::json::parse(o.text.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  ASSERT_EQ(recs.size(), 3u) << o.text;
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(recs[i]["data"], nlohmann::json({fmt_hex(i + 1), "0x00", "0x00", "0x00"}));
    EXPECT_EQ(recs[i]["map"], "events");
    for (const char* key : {"type", "cpu", "index", "timestamp"}) EXPECT_TRUE(recs[i].contains(key));
  }
}

// event_pipe prints the time a perf sample was written (CLOCK_MONOTONIC ns, as bpftool prints the
// kernel's PERF_SAMPLE_TIME), not the time it read it: written, then read after a pause.
TEST_F(MapCliTest, EventPipePrintsTheTimePerfSamplesWereWritten) {
  const std::string f = root_ + "/perft";
  ASSERT_EQ(run("map create " + f + " type perf_event_array key 4 value 4 entries 1 name perft").rc, 0);
  auto m = open_pinned_map(f);
  ASSERT_TRUE(m.ok());
  auto mono_ns = [] {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  };
  set_current_cpu(0);
  uint32_t v = 5;
  const uint64_t t0 = mono_ns();
  ASSERT_EQ(as_perf_event_array(m->get())->output(0xffffffffull, &v, 4), 0);
  const uint64_t t1 = mono_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(as_perf_event_array(m->get())->output(0xffffffffull, &v, 4), 0);
  Out o = run("-j map event_pipe pinned " + f + " count 2 timeout 5000");
  ASSERT_EQ(o.rc, 0) << o.text;
  size_t nl = o.text.find('\n');
  ASSERT_NE(nl, std::string::npos) << o.text;
  auto j = nlohmann::json::parse(o.text.substr(0, nl));
  ASSERT_TRUE(j["timestamp"].is_number_unsigned()) << o.text;
  const uint64_t ts = j["timestamp"].get<uint64_t>();
  EXPECT_GE(ts, t0);
  EXPECT_LE(ts, t1);
  auto j2 = nlohmann::json::parse(o.text.substr(nl + 1, o.text.find('\n', nl + 1) - nl - 1));
  EXPECT_GE(j2["timestamp"].get<uint64_t>(), ts + 100'000'000);
  // The text form prints the same time as bpftool does: == @SECONDS.NANOSECONDS CPU: ...
  ASSERT_EQ(as_perf_event_array(m->get())->output(0xffffffffull, &v, 4), 0);
  const uint64_t t2 = mono_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  o = run("map event_pipe pinned " + f + " count 1 timeout 5000");
  ASSERT_EQ(o.text.rfind("== @", 0), 0u) << o.text;
  unsigned long long sec = 0, nsec = 0;
  ASSERT_EQ(std::sscanf(o.text.c_str(), "== @%llu.%llu", &sec, &nsec), 2) << o.text;
  EXPECT_LE(sec * 1000000000ull + nsec, t2);
  EXPECT_GT(sec * 1000000000ull + nsec, t1);
}

// A pinned perf event array: records written in this process (the ring of CPU slot 1), and a full
// ring's drops, printed by event_pipe in another.
TEST_F(MapCliTest, EventPipePrintsPerfRecordsAndLostSamples) {
  const std::string f = root_ + "/perf";
  Out c = run("map create " + f + " type perf_event_array key 4 value 4 entries 2 name perf", true);
  ASSERT_EQ(c.rc, 0) << c.text;
  auto m = open_pinned_map(f);
  ASSERT_TRUE(m.ok());
  auto* pa = as_perf_event_array(m->get());
  ASSERT_NE(pa, nullptr);
  if (possible_cpus() < 2) GTEST_SKIP() << "one CPU: the map has one ring";
  set_current_cpu(1);
  // Fill the 64 KiB ring with 64-byte samples until one is dropped, then one more record.
  std::vector<uint8_t> rec(52, 0xab);
  uint64_t written = 0;
  while (pa->output(0xffffffffull, rec.data(), rec.size()) == 0) ++written;
  Out o = run("map event_pipe pinned " + f + " count 1 timeout 5000");
  EXPECT_EQ(o.rc, 0);
  EXPECT_EQ(o.text.rfind("== @", 0), 0u) << o.text;
  EXPECT_NE(o.text.find(" CPU: 1 index: 1 =====\nab ab ab"), std::string::npos) << o.text;
  EXPECT_GT(written, 100u);
  // That read emptied the ring (a perf ring is read whole; records past `count` are not printed);
  // the drop is reported before the ring's next record.
  uint32_t v = 7;
  ASSERT_EQ(pa->output(0xffffffffull, &v, 4), 0);
  set_current_cpu(0);
  o = run("-j map event_pipe pinned " + f + " count 1 timeout 5000");
  std::vector<nlohmann::json> recs;
  size_t pos = 0;
  while (pos < o.text.size()) {
    size_t nl = o.text.find('\n', pos);
    recs.push_back(nlohmann::json::parse(o.text.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  ASSERT_EQ(recs.size(), 2u) << o.text;
  EXPECT_EQ(recs[0]["type"], 2);
  EXPECT_EQ(recs[0]["lost"]["count"], 1);
  EXPECT_EQ(recs[0]["cpu"], 1);
  EXPECT_EQ(recs[1]["type"], 9);
  EXPECT_EQ(recs[1]["index"], 1);
  EXPECT_EQ(recs[1]["map"], "perf");
  EXPECT_EQ(recs[1]["data"], nlohmann::json({"0x07", "0x00", "0x00", "0x00"}));
}

}  // namespace
}  // namespace bpfvm

namespace bpfvm {
namespace {

// prog loadall takes the loading options (set NAME=VALUE, btf FILE); the pinned program keeps them, so
// every process that opens it runs the program as it was loaded.
TEST_F(MapCliTest, ProgLoadallSetsGlobalsBeforeLoad) {
  const std::string obj = std::string(BPFVM_PROGS_DIR) + "/st_setret.bpf.o";
  if (!fs::exists(obj)) GTEST_SKIP() << obj << " not built";
  const std::string pkt = root_ + "/pkt";
  { std::ofstream(pkt) << std::string(60, '\0'); }
  Out o = run("prog loadall " + obj + " " + root_ + "/plain", true);
  ASSERT_EQ(o.rc, 0) << o.text;
  o = run("prog run pinned " + root_ + "/plain/st_setret data_in " + pkt);
  EXPECT_EQ(o.text.rfind("Return value: 1,", 0), 0u) << o.text;  // XDP_DROP, the default
  o = run("prog loadall " + obj + " " + root_ + "/set set verdict=3", true);
  ASSERT_EQ(o.rc, 0) << o.text;
  o = run("prog run pinned " + root_ + "/set/st_setret data_in " + pkt);
  EXPECT_EQ(o.text.rfind("Return value: 3,", 0), 0u) << o.text;  // XDP_TX, as set
  o = run("prog loadall " + obj + " " + root_ + "/bad set nosuch=1", true);
  EXPECT_EQ(o.rc, 2);
  EXPECT_NE(o.text.find("no global variable 'nosuch'"), std::string::npos) << o.text;
  o = run("prog loadall " + obj + " " + root_ + "/bad set verdict", true);
  EXPECT_EQ(o.rc, 2);
  // A target BTF that cannot be read is a usage error, whether or not the object has CO-RE relocations.
  const std::string core = std::string(BPFVM_PROGS_DIR) + "/core_access.bpf.o";
  o = run("prog loadall " + core + " " + root_ + "/bad btf /nonexistent/vmlinux", true);
  EXPECT_EQ(o.rc, 2);
  EXPECT_NE(o.text.find("btf /nonexistent/vmlinux: No such file or directory"), std::string::npos) << o.text;
}

// bpfvm prog: loadall pins an object's programs and maps; show, run, dump and pin work on the
// pinned program from other processes, which share its maps.
TEST_F(MapCliTest, ProgLoadallShowRunDumpPin) {
  const std::string obj = std::string(BPFVM_PROGS_DIR) + "/st_pinned.bpf.o";
  if (!fs::exists(obj)) GTEST_SKIP() << obj << " not built";
  Out o = run("prog loadall " + obj + " " + root_ + "/progs pinmaps " + root_ + "/maps", true);
  ASSERT_EQ(o.rc, 0) << o.text;
  EXPECT_TRUE(fs::exists(root_ + "/progs/st_count"));
  EXPECT_TRUE(fs::exists(root_ + "/maps/st_counts"));
  o = run("prog show -j pinned " + root_ + "/progs/st_count");
  ASSERT_EQ(o.rc, 0) << o.text;
  auto j = nlohmann::json::parse(o.text);
  EXPECT_EQ(j["type"], "xdp");
  EXPECT_EQ(j["name"], "st_count");
  EXPECT_EQ(j["tag"].get<std::string>().size(), 16u);
  EXPECT_EQ(j["gpl_compatible"], true);
  // Runs from two CLI processes count in the same pinned map.
  const std::string pkt = root_ + "/pkt";
  { std::ofstream(pkt) << std::string(60, '\0'); }
  o = run("prog run pinned " + root_ + "/progs/st_count data_in " + pkt + " repeat 10");
  ASSERT_EQ(o.rc, 0);
  EXPECT_EQ(o.text.rfind("Return value: 2, duration (average): ", 0), 0u) << o.text;
  ASSERT_EQ(run("prog run pinned " + root_ + "/progs/st_count data_in " + pkt).rc, 0);
  auto m = open_pinned_map(root_ + "/maps/st_counts");
  ASSERT_TRUE(m.ok());
  uint32_t k = 0;
  uint64_t v = 0;
  ASSERT_EQ((*m)->lookup_copy(&k, &v, 0), 0);
  EXPECT_EQ(v, 11u);
  o = run("prog dump xlated pinned " + root_ + "/progs/st_count");
  EXPECT_NE(o.text.find("call bpf_map_lookup_elem#1"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("; __u64 *v = bpf_map_lookup_elem(&st_counts, &k);"), std::string::npos) << o.text;
  o = run("prog dump jited pinned " + root_ + "/progs/st_count");
  EXPECT_NE(o.text.find("push rbp"), std::string::npos);
  EXPECT_EQ(run("prog pin pinned " + root_ + "/progs/st_count " + root_ + "/again").rc, 0);
  o = run("prog list -j");
  EXPECT_EQ(nlohmann::json::parse(o.text).size(), 2u) << o.text;  // two names of one program file
  // A program whose maps were unpinned is refused with the map's name.
  fs::remove(root_ + "/maps/st_counts");
  o = run("prog show pinned " + root_ + "/progs/st_count", true);
  EXPECT_EQ(o.rc, 1);
  EXPECT_NE(o.text.find("its map 'st_counts' is no longer pinned"), std::string::npos) << o.text;
  // Not a program file.
  o = run("prog show pinned " + pkt, true);
  EXPECT_EQ(o.rc, 1);
  EXPECT_NE(o.text.find("not a bpfvm program file"), std::string::npos) << o.text;
}

TEST_F(MapCliTest, BtfDumpCommand) {
  const std::string obj = std::string(BPFVM_PROGS_DIR) + "/st_pinned.bpf.o";
  if (!fs::exists(obj)) GTEST_SKIP() << obj << " not built";
  Out o = run("btf dump file " + obj);
  ASSERT_EQ(o.rc, 0);
  EXPECT_NE(o.text.find("[2] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED\n"), std::string::npos) << o.text;
  o = run("btf dump file " + obj + " format c");
  EXPECT_EQ(o.text.rfind("#ifndef __VMLINUX_H__\n", 0), 0u);
  o = run("btf dump file " + obj + " format x", true);
  EXPECT_EQ(o.rc, 2);
  o = run("btf dump file /nonexistent -j");
  EXPECT_EQ(o.rc, 1);
  EXPECT_TRUE(nlohmann::json::parse(o.text).contains("error"));
}

}  // namespace
}  // namespace bpfvm

#include <linux/bpf.h>
#include <sys/syscall.h>

#include "bpfvm/object.hpp"
#include "bpfvm/pinned_prog.hpp"
#include "kernel/oracle.hpp"

namespace bpfvm {
namespace {

// The tag `prog show` prints is the running kernel's for the same instructions.
TEST(ProgramTag, MatchesTheKernel) {
  if (!kernel::available()) GTEST_SKIP() << "kernel bpf() unavailable: " << kernel::unavailable_reason();
  const std::string path = std::string(BPFVM_PROGS_DIR) + "/pk_socket.bpf.o";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not built";
  auto obj = load_object_file(path);
  ASSERT_TRUE(obj.ok()) << obj.error().to_string();
  const ObjectProgram* p = obj->find_program("keep_tcp");
  ASSERT_NE(p, nullptr);
  std::vector<kernel::Fd> maps;
  for (const ObjectMap& m : obj->maps) {
    maps.push_back(kernel::create_map(m.spec.type, m.spec.key_size, m.spec.value_size, m.spec.max_entries, m.spec.flags));
    ASSERT_TRUE(static_cast<bool>(maps.back())) << m.spec.name;
  }
  std::vector<Insn> insns = p->insns;
  for (size_t i = 0; i < insns.size(); ++i)
    if (insns[i].op == Op::LDDW_MAP_IDX) {
      insns[i].op = Op::LDDW_MAP_FD;
      insns[i].imm = maps.at(size_t(insns[i].imm)).get();
    }
  auto k = kernel::load_program(encode(insns), p->type, 1);
  ASSERT_TRUE(static_cast<bool>(k.fd)) << k.log;
  bpf_prog_info info{};
  union bpf_attr attr{};
  attr.info.bpf_fd = uint32_t(k.fd.get());
  attr.info.info_len = sizeof info;
  attr.info.info = reinterpret_cast<uint64_t>(&info);
  ASSERT_EQ(syscall(SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr, sizeof attr), 0);
  char want[17];
  for (int i = 0; i < 8; ++i) std::snprintf(want + 2 * i, 3, "%02x", info.tag[i]);
  EXPECT_EQ(program_tag(*p), std::string(want));
}

}  // namespace
}  // namespace bpfvm

// ---- maps with BTF: `map dump` prints what bpftool prints for the same map in the kernel -------------
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

namespace bpfvm {
namespace {

std::string shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

std::string bytes_arg(const std::vector<uint8_t>& b) {
  std::string s;
  for (uint8_t x : b) s += " " + std::to_string(x);
  return s;
}

TEST_F(MapCliTest, MapWithBtfIsDumpedAsBpftoolDumpsIt) {
  const std::string obj = std::string(BPFVM_PROGS_DIR) + "/fmt_values.bpf.o";
  if (!fs::exists(obj)) GTEST_SKIP() << obj << " not built";
  Out o = run("prog loadall " + obj + " " + root_ + "/progs pinmaps " + root_ + "/maps", true);
  ASSERT_EQ(o.rc, 0) << o.text;
  const std::string f = root_ + "/maps/fmt_map", pc = root_ + "/maps/fmt_percpu";
  // Two entries with random bytes (a bool 0 or 1, a string in the char array of one).
  std::mt19937 rng(3);
  std::vector<std::vector<uint8_t>> keys, vals;
  for (int e = 0; e < 2; ++e) {
    std::vector<uint8_t> k(8), v(96);
    for (auto& b : k) b = uint8_t(rng());
    for (auto& b : v) b = uint8_t(rng());
    v[23] = uint8_t(e);
    if (e) std::memcpy(v.data() + 24, "name\0", 5);
    ASSERT_EQ(run("map update pinned " + f + " key" + bytes_arg(k) + " value" + bytes_arg(v)).rc, 0);
    keys.push_back(k);
    vals.push_back(v);
  }
  o = run("-j map show pinned " + f);
  auto show = nlohmann::json::parse(o.text);
  EXPECT_NE(show["btf_id"], 0) << o.text;
  EXPECT_EQ(show["btf_id"], show["id"]);
  o = run("-j map dump pinned " + f);
  ASSERT_EQ(o.rc, 0);
  auto ours = nlohmann::json::parse(o.text);
  ASSERT_EQ(ours.size(), 2u);
  EXPECT_TRUE(ours[0]["formatted"]["value"].contains("pair")) << o.text;
  Out text = run("map dump pinned " + f);
  EXPECT_EQ(text.text.rfind("[{\n        \"key\": {\n            \"id\": ", 0), 0u) << text.text;
  EXPECT_EQ(text.text.find("Found"), std::string::npos);
  Out pct = run("map dump pinned " + pc);
  EXPECT_NE(pct.text.find("\"values\": [{\n                \"cpu\": 0,"), std::string::npos) << pct.text;

  // The same map in the kernel (libbpf loads the object), the same entries, dumped by bpftool.
  if (!kernel::available()) GTEST_SKIP() << "bpf() unavailable: " << kernel::unavailable_reason();
  if (shell("bpftool version 2>/dev/null").find("bpftool") == std::string::npos) GTEST_SKIP() << "bpftool not installed";
  libbpf_print_fn_t old = libbpf_set_print(nullptr);
  struct bpf_object* ko = bpf_object__open_file(obj.c_str(), nullptr);
  if (!ko || bpf_object__load(ko) != 0) {
    libbpf_set_print(old);
    if (ko) bpf_object__close(ko);
    GTEST_SKIP() << "libbpf cannot load " << obj;
  }
  libbpf_set_print(old);
  int fd = bpf_map__fd(bpf_object__find_map_by_name(ko, "fmt_map"));
  for (size_t e = 0; e < keys.size(); ++e) ASSERT_EQ(bpf_map_update_elem(fd, keys[e].data(), vals[e].data(), 0), 0);
  struct bpf_map_info info = {};
  uint32_t len = sizeof info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
  const std::string id = std::to_string(info.id);
  auto theirs = nlohmann::json::parse(shell("bpftool -j map dump id " + id));
  ASSERT_EQ(theirs.size(), 2u);
  // Entry order is the hash table's: compare by key.
  auto by_key = [](const nlohmann::json& a) {
    std::map<std::string, nlohmann::json> m;
    for (const auto& e : a) m[e["key"].dump()] = e;
    return m;
  };
  EXPECT_EQ(by_key(ours), by_key(theirs));
  // The text form, byte for byte, when both list the entries in the same order.
  std::string their_text = shell("bpftool map dump id " + id);
  if (ours[0]["key"] == theirs[0]["key"]) EXPECT_EQ(text.text, their_text);
  // Lookups print the same object.
  for (const auto& key : keys) {
    std::string k = bytes_arg(key);
    EXPECT_EQ(run("map lookup pinned " + f + " key" + k).text, shell("bpftool map lookup id " + id + " key" + k));
    EXPECT_EQ(nlohmann::json::parse(run("-j map lookup pinned " + f + " key" + k).text),
              nlohmann::json::parse(shell("bpftool -j map lookup id " + id + " key" + k)));
  }
  bpf_object__close(ko);
}

}  // namespace
}  // namespace bpfvm

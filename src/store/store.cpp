// The store: pinned maps as files on tmpfs (see region.hpp and docs/maps.md, "Pinned maps").
//
// Creating: the file is written under a temporary name in the target directory (header, then the
// family initialises its area), marked ready, and only then linked to its name, so no process ever
// opens a half-made map; link() failing with EEXIST is how two creators race safely.
// Opening: every header field is checked against the file and the map type table before the
// family sees the area, and the family validates its own control fields.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "maps/map_internal.hpp"
#include "store/region.hpp"
#include "store/robust.hpp"

namespace bpfvm {

// Sets the store fields of a Map (friend of Map).
struct StoreAccess {
  static store::Region* region(Map& m) { return m.region_.get(); }
  static void set(Map& m, const std::string& path, uint64_t id) {
    m.pin_path_ = path;
    m.store_id_ = id;
  }
};

namespace store {

std::shared_ptr<Region> Region::anonymous(size_t size, bool need_fd, int ncpus) {
  std::shared_ptr<Region> r(new Region);
  r->size_ = size;
  r->ncpus_ = ncpus;
  if (!need_fd) {
    r->heap_ = std::calloc(size ? size : 1, 1);
    if (!r->heap_) throw std::bad_alloc();
    r->base_ = static_cast<uint8_t*>(r->heap_);
    return r;
  }
  int fd = memfd_create("bpfvm-map", MFD_CLOEXEC);
  if (fd < 0) throw std::bad_alloc();
  if (ftruncate(fd, off_t(size)) != 0) {
    close(fd);
    throw std::bad_alloc();
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    close(fd);
    throw std::bad_alloc();
  }
  r->fd_ = fd;
  r->mapping_ = p;
  r->map_len_ = size;
  r->base_ = static_cast<uint8_t*>(p);
  return r;
}

Region::Region(int fd, uint8_t* mapping, size_t map_len, bool fresh)
    : base_(mapping + kHeaderSize), size_(map_len - kHeaderSize), fresh_(fresh), fd_(fd),
      file_off_(kHeaderSize), hdr_(reinterpret_cast<StoreHeader*>(mapping)), mapping_(mapping),
      map_len_(map_len) {
  ncpus_ = int(hdr_->ncpus);
}

Region::~Region() {
  if (mapping_) munmap(mapping_, map_len_);
  if (fd_ >= 0) close(fd_);
  std::free(heap_);
}

namespace {

Diagnostic err(const std::string& path, const std::string& what) {
  return make_error(ErrorCode::Load, fmt::format("pinned map {}: {}", path, what));
}

std::string dir_of(const std::string& path) {
  size_t s = path.rfind('/');
  if (s == std::string::npos) return ".";
  if (s == 0) return "/";
  return path.substr(0, s);
}

// Pinned maps must be memory: tmpfs (or ramfs / hugetlbfs). A disk file system would write every
// update back to the disk, and a network one does not keep shared mappings coherent.
std::string check_fs(const std::string& dir) {
  struct statfs st;
  if (statfs(dir.c_str(), &st) != 0) return fmt::format("cannot use directory {}: {}", dir, std::strerror(errno));
  const auto t = static_cast<unsigned long>(st.f_type);
  if (t == TMPFS_MAGIC || t == RAMFS_MAGIC || t == HUGETLBFS_MAGIC) return "";
  return fmt::format("directory {} is not on tmpfs (file system type 0x{:x}); pinned maps are shared memory "
                     "and must live on tmpfs, e.g. under /run or /dev/shm",
                     dir, t);
}

const maps::MapTypeRow* pinnable_row(uint32_t type) {
  const maps::MapTypeRow* r = maps::find_row(type);
  return r && r->region ? r : nullptr;
}

int ncpus_for(const MapSpec& spec) {
  (void)spec;
  int n = possible_cpus();
  return n > int(kMaxCpus) ? int(kMaxCpus) : n;
}

MapSpec spec_of(const StoreHeader& h) {
  MapSpec s;
  s.type = h.type;
  s.key_size = h.key_size;
  s.value_size = h.value_size;
  s.max_entries = h.max_entries;
  s.flags = h.flags;
  s.spin_lock_off = h.spin_lock_off;
  s.map_extra = h.map_extra;
  s.name.assign(h.name, strnlen(h.name, sizeof h.name));
  if ((h.type == kMapArrayOfMaps || h.type == kMapHashOfMaps) && h.inner_type != 0) {
    auto in = std::make_shared<MapSpec>();
    in->type = h.inner_type;
    in->key_size = h.inner_key_size;
    in->value_size = h.inner_value_size;
    in->max_entries = h.inner_max_entries;
    in->flags = h.inner_flags;
    in->spin_lock_off = h.inner_spin_lock_off;
    s.inner = std::move(in);
  }
  return s;
}

// Maps a file and hands its area to the family. fd is consumed.
Result<std::shared_ptr<Map>> attach(int fd, const std::string& path, size_t len, bool fresh, const MapSpec& spec,
                                    const maps::MapTypeRow& row) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd);
    return err(path, fmt::format("cannot map {} bytes: {}", len, std::strerror(e)));
  }
  struct stat st;
  uint64_t ino = fstat(fd, &st) == 0 ? uint64_t(st.st_ino) : 0;
  std::shared_ptr<Region> region;
  try {
    region = std::make_shared<Region>(fd, static_cast<uint8_t*>(p), len, fresh);
  } catch (...) {
    munmap(p, len);
    close(fd);
    return err(path, "out of memory");
  }
  std::string why;
  std::shared_ptr<Map> m;
  try {
    m = row.region->make(spec, region, &why);
  } catch (const std::bad_alloc&) {
    why = "out of memory";
  }
  if (!m) return err(path, why.empty() ? "its contents are damaged" : why);
  StoreAccess::set(*m, path, ino);
  return m;
}

}  // namespace


}  // namespace store

bool map_type_pinnable(uint32_t type) { return store::pinnable_row(type) != nullptr; }

std::string pin_root() {
  if (const char* r = std::getenv("BPFVM_PIN_ROOT"); r && *r) return r;
  if (geteuid() == 0) return "/run/bpfvm";
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) return std::string(x) + "/bpfvm";
  return fmt::format("/tmp/bpfvm-{}", geteuid());
}

std::string pinned_map_mismatch(const MapSpec& want, const MapSpec& have) {
  auto diff = [](const char* what, uint64_t w, uint64_t h) {
    return fmt::format("the pinned map has {} {}, the definition asks for {}", what, h, w);
  };
  if (want.type != have.type)
    return fmt::format("the pinned map is a {} map, the definition asks for {}", map_type_name(have.type),
                       map_type_name(want.type));
  if (want.key_size != have.key_size) return diff("key_size", want.key_size, have.key_size);
  if (want.value_size != have.value_size) return diff("value_size", want.value_size, have.value_size);
  if (want.max_entries != have.max_entries) return diff("max_entries", want.max_entries, have.max_entries);
  if (want.flags != have.flags) return diff("map_flags", want.flags, have.flags);
  if (want.map_extra != have.map_extra) return diff("map_extra", want.map_extra, have.map_extra);
  if (want.inner && have.inner) {
    const MapSpec& w = *want.inner;
    const MapSpec& h = *have.inner;
    if (w.type != h.type)
      return fmt::format("the pinned map's inner maps are {} maps, the definition asks for {}", map_type_name(h.type),
                         map_type_name(w.type));
    if (w.key_size != h.key_size) return diff("inner key_size", w.key_size, h.key_size);
    if (w.value_size != h.value_size) return diff("inner value_size", w.value_size, h.value_size);
    if (w.max_entries != h.max_entries) return diff("inner max_entries", w.max_entries, h.max_entries);
    if (w.flags != h.flags) return diff("inner map_flags", w.flags, h.flags);
  }
  return "";
}

Result<std::shared_ptr<Map>> create_pinned_map(const MapSpec& spec, const std::string& path,
                                               std::shared_ptr<const MapBtf> btf) {
  using namespace store;
  if (path.empty()) return make_error(ErrorCode::InvalidArgument, "pinned map: empty path");
  std::string why;
  if (long e = check_map_spec(spec, &why))
    return err(path, fmt::format("{} ({})", why, e));
  const maps::MapTypeRow* row = pinnable_row(spec.type);
  if (!row)
    return err(path, fmt::format("maps of type {} cannot be pinned (they do not live in the store)", map_type_name(spec.type)));
  const std::string dir = dir_of(path);
  if (std::string fs = check_fs(dir); !fs.empty()) return err(path, fs);
  const int ncpus = ncpus_for(spec);
  const uint64_t layout = row->region->layout(spec, ncpus);
  if (layout == 0 || layout > (1ull << 40)) return err(path, "the map is too large for the store");
  std::string tmp = dir + "/.bpfvm-map-XXXXXX";
  int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return err(path, fmt::format("cannot create a file in {}: {}", dir, std::strerror(errno)));
  if (btf && btf->data.empty()) btf = nullptr;
  if (btf && btf->data.size() > kMaxBtfSize)
    return err(path, fmt::format("its BTF is {} bytes, more than the store keeps ({})", btf->data.size(), kMaxBtfSize));
  const size_t len = kHeaderSize + layout;
  const size_t btf_size = btf ? btf->data.size() : 0;
  if (ftruncate(fd, off_t(len + btf_size)) != 0) {
    int e = errno;
    close(fd);
    unlink(tmp.c_str());
    return err(path, fmt::format("cannot size the file to {} bytes: {}", len, std::strerror(e)));
  }
  // Header first (not ready), then the family initialises its area.
  {
    StoreHeader h{};
    std::memcpy(h.magic, kMagic, 8);
    h.version = kVersion;
    h.header_size = kHeaderSize;
    h.file_size = len + btf_size;
    h.layout_size = layout;
    h.btf_size = btf_size;
    h.btf_key_type_id = btf ? btf->key_type_id : 0;
    h.btf_value_type_id = btf ? btf->value_type_id : 0;
    if (btf && pwrite(fd, btf->data.data(), btf_size, off_t(len)) != ssize_t(btf_size)) {
      int e = errno;
      close(fd);
      unlink(tmp.c_str());
      return err(path, fmt::format("cannot write its BTF: {}", std::strerror(e)));
    }
    h.type = spec.type;
    h.key_size = spec.key_size;
    h.value_size = spec.value_size;
    h.max_entries = spec.max_entries;
    h.flags = spec.flags;
    h.spin_lock_off = spec.spin_lock_off;
    h.map_extra = spec.map_extra;
    h.ncpus = uint32_t(ncpus);
    if (spec.inner) {
      h.inner_type = spec.inner->type;
      h.inner_key_size = spec.inner->key_size;
      h.inner_value_size = spec.inner->value_size;
      h.inner_max_entries = spec.inner->max_entries;
      h.inner_flags = spec.inner->flags;
      h.inner_spin_lock_off = spec.inner->spin_lock_off;
    }
    h.creator_pid = self_pid();
    std::snprintf(h.name, sizeof h.name, "%s", spec.name.c_str());
    h.created_unix_ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch()).count());
    if (pwrite(fd, &h, sizeof h, 0) != ssize_t(sizeof h)) {
      int e = errno;
      close(fd);
      unlink(tmp.c_str());
      return err(path, fmt::format("cannot write the header: {}", std::strerror(e)));
    }
  }
  MapSpec s = spec;
  s.name = spec.name.substr(0, 15);
  auto m = attach(fd, path, len, true, s, *row);
  if (!m) {
    unlink(tmp.c_str());
    return m.error();
  }
  (*m)->set_btf(btf);
  StoreAccess::region(**m)->header()->ready.store(1, std::memory_order_release);
  if (link(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    if (e == EEXIST) return err(path, "already exists");
    return err(path, std::strerror(e));
  }
  unlink(tmp.c_str());
  struct stat st;
  if (stat(path.c_str(), &st) == 0) StoreAccess::set(**m, path, uint64_t(st.st_ino));
  return m;
}

Result<std::shared_ptr<Map>> open_pinned_map(const std::string& path) {
  using namespace store;
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ELOOP) fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno == EACCES)
      return err(path, "permission denied (opening a pinned map needs read and write access to its file)");
    return err(path, std::strerror(errno));
  }
  auto bad = [&](const std::string& what) -> Result<std::shared_ptr<Map>> {
    close(fd);
    return err(path, what);
  };
  struct stat st;
  if (fstat(fd, &st) != 0) return bad(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return bad("not a regular file");
  if (uint64_t(st.st_size) < kHeaderSize) return bad(fmt::format("not a bpfvm map file ({} bytes, too short for the header)", st.st_size));
  StoreHeader h;
  if (pread(fd, &h, sizeof h, 0) != ssize_t(sizeof h)) return bad("cannot read the header");
  if (std::memcmp(h.magic, kMagic, 8) != 0) return bad("not a bpfvm map file (bad magic number)");
  if (h.version != kVersion)
    return bad(fmt::format("map file version {} is not supported (this bpfvm reads version {})", h.version, kVersion));
  if (h.header_size != kHeaderSize) return bad(fmt::format("damaged header: header_size {}", h.header_size));
  if (h.file_size != uint64_t(st.st_size))
    return bad(fmt::format("damaged file: the header says {} bytes, the file has {}", h.file_size, st.st_size));
  if (h.btf_size > kMaxBtfSize || h.btf_size > h.file_size - kHeaderSize)
    return bad(fmt::format("damaged header: {} bytes of BTF", h.btf_size));
  if (h.layout_size != h.file_size - kHeaderSize - h.btf_size)
    return bad("damaged header: layout_size does not match the file size");
  if (h.ncpus == 0 || h.ncpus > kMaxCpus) return bad(fmt::format("damaged header: {} CPUs", h.ncpus));
  if (h.ready.load() != 1) return bad("the map was never completely initialised");
  const maps::MapTypeRow* row = pinnable_row(h.type);
  if (!row) return bad(fmt::format("damaged header: map type {} is not one the store holds", h.type));
  MapSpec spec = spec_of(h);
  std::string why;
  if (check_map_spec(spec, &why)) return bad("damaged header: " + why);
  const uint64_t want = row->region->layout(spec, int(h.ncpus));
  if (want != h.layout_size)
    return bad(fmt::format("damaged header: a {} map of this shape needs {} bytes, the file has {}",
                           map_type_name(h.type), want, h.layout_size));
  // The BTF is read (not mapped) before the family sees the area; its type ids are checked by
  // whoever parses it (a file's BTF is data like any other).
  std::shared_ptr<MapBtf> btf;
  if (h.btf_size) {
    btf = std::make_shared<MapBtf>();
    btf->data.resize(h.btf_size);
    btf->key_type_id = h.btf_key_type_id;
    btf->value_type_id = h.btf_value_type_id;
    if (pread(fd, btf->data.data(), h.btf_size, off_t(kHeaderSize + h.layout_size)) != ssize_t(h.btf_size))
      return bad("cannot read its BTF");
  }
  auto m = attach(fd, path, size_t(kHeaderSize + h.layout_size), false, spec, *row);
  if (m) {
    StoreAccess::set(**m, path, uint64_t(st.st_ino));
    (*m)->set_btf(std::move(btf));
  }
  return m;
}

Result<std::shared_ptr<Map>> open_or_create_pinned_map(const MapSpec& spec, const std::string& path,
                                                       std::shared_ptr<const MapBtf> btf) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (access(path.c_str(), F_OK) == 0) {
      auto m = open_pinned_map(path);
      if (!m) return m.error();
      std::string mis = pinned_map_mismatch(spec, (*m)->spec());
      if (!mis.empty()) return store::err(path, "cannot reuse it for map '" + spec.name + "': " + mis);
      return m;
    }
    auto m = create_pinned_map(spec, path, btf);
    if (m) return m;
    if (access(path.c_str(), F_OK) != 0) return m.error();  // a real failure, not a lost race
  }
  return store::err(path, "created and removed concurrently, giving up");
}

Status pin_map(const Map& map, const std::string& path) {
  if (!map.shared() || map.pin_path().empty())
    return make_error(ErrorCode::InvalidArgument,
                      fmt::format("map '{}' is private to this process; create it pinned to share it", map.spec().name));
  if (std::string fs = store::check_fs(store::dir_of(path)); !fs.empty()) return store::err(path, fs);
  if (link(map.pin_path().c_str(), path.c_str()) != 0)
    return store::err(path, errno == EEXIST ? "already exists" : std::strerror(errno));
  return {};
}

uint64_t store::created_ns_of(const Map& m) {
  store::Region* r = StoreAccess::region(const_cast<Map&>(m));
  return r && r->header() ? r->header()->created_unix_ns : 0;
}
bool Map::shared() const { return region_ && region_->shared(); }
bool Map::frozen() const {
  if (region_ && region_->header()) return region_->header()->frozen.load(std::memory_order_acquire) != 0;
  return frozen_.load(std::memory_order_acquire);
}
void Map::freeze() {
  if (region_ && region_->header()) region_->header()->frozen.store(1, std::memory_order_release);
  frozen_.store(true, std::memory_order_release);
}

}  // namespace bpfvm

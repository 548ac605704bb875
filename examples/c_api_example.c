/* The C embedding API, used from C (built and run by the tests: ctest -R c_api, linked with
 * libbpfvm.so; ctest -R install_consumers builds it against an installation, as a user does):
 *   cc c_api_example.c $(pkg-config --cflags --libs bpfvm)           (libbpfvm.so)
 *   cc c_api_example.c $(pkg-config --cflags --libs bpfvm-static)    (libbpfvm.a)
 *   c_api_example PROGS_DIR
 * Loads objects built from tests/progs, verifies and runs their programs, uses their maps; runs bytecode. */
#include <bpfvm/bpfvm.h>

#include <stdio.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "c_api_example:%d: %s: ", __LINE__, #cond);         \
      fprintf(stderr, __VA_ARGS__);                                       \
      fprintf(stderr, "\n");                                              \
      ++failures;                                                         \
    }                                                                     \
  } while (0)

int main(int argc, char **argv) {
  char err[2048] = "";
  char path[1024];
  if (argc < 2) {
    fprintf(stderr, "usage: c_api_example PROGS_DIR\n");
    return 2;
  }

  /* An object: the runtime tests' tail-call dispatcher (prog_array filled from BTF values). */
  snprintf(path, sizeof path, "%s/rt_tailcall.bpf.o", argv[1]);
  bpfvm_object *obj = bpfvm_object_open(path, err, sizeof err);
  CHECK(obj != NULL, "%s", err);
  if (!obj) return 1;
  CHECK(bpfvm_object_program_count(obj) == 4, "%zu programs", bpfvm_object_program_count(obj));
  CHECK(bpfvm_object_find_map(obj, "steps") != NULL, "no map 'steps'");

  struct bpfvm_load_opts opts;
  bpfvm_load_opts_init(&opts);
  bpfvm_program *prog = bpfvm_object_load_program(obj, "dispatch", &opts, err, sizeof err);
  CHECK(prog != NULL, "%s", err);
  if (prog) {
    CHECK(bpfvm_program_verified(prog) == 1, "not verified");
    CHECK(bpfvm_program_jited(prog) == 1, "not in the JIT");
    unsigned char pkt[64];
    memset(pkt, 0, sizeof pkt);
    const uint64_t want[4] = {1 /* DROP */, 2 /* PASS */, 3 /* TX */, 2};
    for (int i = 0; i < 4; ++i) {
      uint64_t ret = 99;
      pkt[0] = (unsigned char)i;
      size_t out_len = sizeof pkt;
      unsigned char out[64];
      int rc = bpfvm_program_test_run(prog, pkt, sizeof pkt, NULL, 0, &ret, out, &out_len, err, sizeof err);
      CHECK(rc == 0, "%s", err);
      CHECK(ret == want[i], "index %d: returned %llu", i, (unsigned long long)ret);
      CHECK(out_len == sizeof pkt && out[0] == i, "data_out %zu bytes", out_len);
    }
  }

  /* A program the verifier rejects: the message explains it, with the C line. */
  bpfvm_program *bad = bpfvm_object_load_program(obj, "unchecked_read", &opts, err, sizeof err);
  CHECK(bad == NULL, "the verifier accepted unchecked_read");
  CHECK(strstr(err, "invalid access to packet") != NULL && strstr(err, "rt_tailcall.bpf.c") != NULL, "%s", err);
  /* ... and runs unverified only on request, in the checked interpreter. */
  opts.no_verify = 1;
  bad = bpfvm_object_load_program(obj, "unchecked_read", &opts, err, sizeof err);
  CHECK(bad != NULL, "%s", err);
  if (bad) {
    CHECK(bpfvm_program_verified(bad) == 0 && bpfvm_program_jited(bad) == 0, "unverified program not interpreted");
    bpfvm_program_free(bad);
  }
  bpfvm_object_close(obj); /* programs keep the maps alive */
  if (prog) {
    uint64_t ret = 0;
    unsigned char pkt[20] = {2};
    CHECK(bpfvm_program_test_run(prog, pkt, sizeof pkt, NULL, 0, &ret, NULL, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(ret == 3, "after close: %llu", (unsigned long long)ret);
    bpfvm_program_free(prog);
  }

  /* Maps from C: hl_maps.bpf.o's `counts` (hash, u32 -> u64), before and after a run. */
  snprintf(path, sizeof path, "%s/hl_maps.bpf.o", argv[1]);
  obj = bpfvm_object_open(path, err, sizeof err);
  CHECK(obj != NULL, "%s", err);
  if (obj) {
    bpfvm_map *hash = bpfvm_object_find_map(obj, "counts");
    CHECK(hash != NULL && bpfvm_map_type(hash) == 1 /* BPF_MAP_TYPE_HASH */ && bpfvm_map_key_size(hash) == 4 &&
              bpfvm_map_value_size(hash) == 8,
          "map 'counts'");
    /* hl_maps calls bpf_loop with a callback: the default (strict) rules, for untrusted code, refuse it
       as the kernel does without CAP_BPF; our own program is trusted: privileged rules. */
    bpfvm_program *p = bpfvm_object_load_program(obj, "hl_maps", NULL, err, sizeof err);
    CHECK(p == NULL && strstr(err, "CAP_BPF") != NULL, "strict rules accepted bpf_loop: %s", err);
    struct bpfvm_load_opts trusted;
    bpfvm_load_opts_init(&trusted);
    trusted.trusted = 1;
    p = bpfvm_object_load_program(obj, "hl_maps", &trusted, err, sizeof err);
    CHECK(p != NULL, "%s", err);
    if (p) {
      unsigned char pkt[64] = {0};
      uint64_t ret = 0, got = 0;
      uint32_t seven = 7;
      CHECK(bpfvm_program_test_run(p, pkt, sizeof pkt, NULL, 0, &ret, NULL, NULL, err, sizeof err) == 0, "%s", err);
      CHECK(bpfvm_map_lookup(hash, &seven, &got) == 0 && got == 1, "counts[7] = %llu after one run",
            (unsigned long long)got);
      bpfvm_program_free(p);
    }
    if (hash) {
      uint32_t key = 1, next = 0;
      uint64_t val = 7, got = 0;
      CHECK(bpfvm_map_update(hash, &key, &val, 1 /* BPF_NOEXIST */) == 0, "update");
      CHECK(bpfvm_map_update(hash, &key, &val, 1) == -17, "second NOEXIST update must be -EEXIST");
      CHECK(bpfvm_map_lookup(hash, &key, &got) == 0 && got == 7, "lookup");
      CHECK(bpfvm_map_get_next_key(hash, NULL, &next) == 0 && (next == 1 || next == 7), "first key %u", next);
      CHECK(bpfvm_map_delete(hash, &key) == 0, "delete");
      CHECK(bpfvm_map_lookup(hash, &key, &got) == -2, "lookup after delete must be -ENOENT");
      /* A frozen map refuses user-space writes with -EPERM and still answers lookups. */
      CHECK(bpfvm_map_update(hash, &key, &val, 0) == 0 && bpfvm_map_frozen(hash) == 0, "update before freeze");
      CHECK(bpfvm_map_freeze(hash) == 0 && bpfvm_map_frozen(hash) == 1, "freeze");
      CHECK(bpfvm_map_update(hash, &key, &val, 0) == -1, "update of a frozen map must be -EPERM");
      CHECK(bpfvm_map_delete(hash, &key) == -1, "delete from a frozen map must be -EPERM");
      CHECK(bpfvm_map_lookup(hash, &key, &got) == 0 && got == 7, "lookup in a frozen map");
    }
    bpfvm_object_close(obj);
  }

  /* Bytecode: r0 = *(u32 *)(r1 + 0); exit — verified against the known memory size. */
  const unsigned char code[16] = {0x61, 0x10, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0};
  bpfvm_load_opts_init(&opts);
  opts.mem_size = 2;
  prog = bpfvm_program_from_bytecode(code, sizeof code, &opts, err, sizeof err);
  CHECK(prog == NULL && strstr(err, "rejected") != NULL, "4-byte read of 2 bytes accepted: %s", err);
  opts.mem_size = 4;
  prog = bpfvm_program_from_bytecode(code, sizeof code, &opts, err, sizeof err);
  CHECK(prog != NULL, "%s", err);
  if (prog) {
    unsigned char mem[4] = {0x78, 0x56, 0x34, 0x12};
    uint64_t ret = 0;
    CHECK(bpfvm_program_test_run(prog, mem, sizeof mem, NULL, 0, &ret, NULL, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(ret == 0x12345678, "returned %llx", (unsigned long long)ret);
    bpfvm_program_free(prog);
  }
  CHECK(bpfvm_program_from_bytecode(code, 12, &opts, err, sizeof err) == NULL && strstr(err, "multiple of 8"), "%s", err);

  if (failures) fprintf(stderr, "c_api_example: %d failures\n", failures);
  else printf("c_api_example: all checks passed\n");
  return failures ? 1 : 0;
}

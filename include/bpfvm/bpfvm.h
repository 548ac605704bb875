/* bpfvm: the C embedding API, a thin layer over the C++ API (runtime.hpp, object.hpp, map.hpp).
 *
 *   char err[1024];
 *   bpfvm_object *obj = bpfvm_object_open("prog.bpf.o", err, sizeof err);
 *   bpfvm_program *prog = bpfvm_object_load_program(obj, "xdp_main", NULL, err, sizeof err);
 *   uint64_t ret;
 *   if (prog && bpfvm_program_test_run(prog, pkt, pkt_len, NULL, 0, &ret, NULL, NULL, err, sizeof err) == 0)
 *     printf("XDP action %llu\n", (unsigned long long)ret);
 *   bpfvm_program_free(prog);
 *   bpfvm_object_close(obj);
 *
 * Programs are verified when loaded (strict rules -- the kernel's unprivileged ones and more -- unless
 * `trusted`: privileged rules) and then run in the JIT;
 * `no_verify` runs unverified code in the checked interpreter, under an instruction budget (the JIT
 * refuses unverified code: it counts no instructions).
 * Errors: functions returning a pointer return NULL, functions returning int return a negative
 * errno-style value (maps, like libbpf) or -1; the message (for a verifier rejection: the full
 * explanation with the instruction and the C source line) goes to `err` (`err_len` bytes, NUL
 * terminated, truncated if needed; either may be NULL/0).
 * Thread safety: programs may run concurrently from several threads; maps may be used concurrently
 * with running programs. Objects and programs are freed by their owner, in any order.
 */
#ifndef BPFVM_BPFVM_H
#define BPFVM_BPFVM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bpfvm_object bpfvm_object;   /* an ELF object, its maps created */
typedef struct bpfvm_program bpfvm_program; /* a verified, runnable program */
typedef struct bpfvm_map bpfvm_map;         /* a map of an object (owned by the object) */

enum bpfvm_engine {
  BPFVM_ENGINE_AUTO = 0,   /* verified: the JIT; unverified: the checked interpreter */
  BPFVM_ENGINE_INTERP = 1, /* the interpreter (checked when unverified) */
  BPFVM_ENGINE_JIT = 2,    /* the JIT (verified programs only) */
};

struct bpfvm_load_opts {
  const char *prog_type; /* bpftool name ("xdp", "socket_filter", "mem"...); NULL: from the section */
  int no_verify;         /* run without verification (explicit request) */
  int trusted;           /* 1: code trusted as root: the verifier's privileged rules (loops, calls,
                            every helper); 0 (default): strict rules, for untrusted code */
  int engine;            /* enum bpfvm_engine */
  int64_t mem_size;      /* plain-memory programs: exact memory size if known, else -1 (0 counts as 0
                            bytes; use -1 for "unknown") */
};
/* The defaults: type from the section, verified, strict rules (untrusted), automatic engine, size unknown. */
void bpfvm_load_opts_init(struct bpfvm_load_opts *opts);

/* ---- objects -------------------------------------------------------------------------------- */
bpfvm_object *bpfvm_object_open(const char *path, char *err, size_t err_len);
bpfvm_object *bpfvm_object_open_mem(const void *elf, size_t size, char *err, size_t err_len);
void bpfvm_object_close(bpfvm_object *obj);
size_t bpfvm_object_program_count(const bpfvm_object *obj);
const char *bpfvm_object_program_name(const bpfvm_object *obj, size_t i);    /* function name */
const char *bpfvm_object_program_section(const bpfvm_object *obj, size_t i); /* ELF section */
size_t bpfvm_object_map_count(const bpfvm_object *obj);
bpfvm_map *bpfvm_object_map(bpfvm_object *obj, size_t i);
bpfvm_map *bpfvm_object_find_map(bpfvm_object *obj, const char *name);

/* ---- programs ------------------------------------------------------------------------------- */
/* `name`: a function or section name of the object; NULL: the object's only program. */
bpfvm_program *bpfvm_object_load_program(bpfvm_object *obj, const char *name, const struct bpfvm_load_opts *opts,
                                         char *err, size_t err_len);
/* Raw bytecode (8 bytes per instruction slot). Type "mem" (the default here): r1 = memory, r2 = length. */
bpfvm_program *bpfvm_program_from_bytecode(const void *insns, size_t size, const struct bpfvm_load_opts *opts,
                                           char *err, size_t err_len);
void bpfvm_program_free(bpfvm_program *prog);
int bpfvm_program_verified(const bpfvm_program *prog);  /* 1 when the verifier accepted it */
int bpfvm_program_jited(const bpfvm_program *prog);     /* 1 when it runs in the JIT */

/* Like BPF_PROG_TEST_RUN: a context for the program's type built from data/ctx, one run. r0 goes to
 * *retval; the packet (or memory) after the run to data_out (capacity *data_out_len, set to the
 * size written; both may be NULL). Returns 0, or -1 with the message in err (fault, budget...). */
int bpfvm_program_test_run(const bpfvm_program *prog, const void *data, size_t data_len, const void *ctx,
                           size_t ctx_len, uint64_t *retval, void *data_out, size_t *data_out_len, char *err,
                           size_t err_len);

/* ---- maps: 0 or a negative errno, as the bpf() syscall / libbpf ---------------------------------- */
const char *bpfvm_map_name(const bpfvm_map *map);
uint32_t bpfvm_map_type(const bpfvm_map *map);
uint32_t bpfvm_map_key_size(const bpfvm_map *map);
uint32_t bpfvm_map_value_size(const bpfvm_map *map); /* per-CPU maps: one CPU's value */
uint32_t bpfvm_map_max_entries(const bpfvm_map *map);
/* Bytes a lookup writes: value_size, or value_size rounded up to 8 times the CPUs for per-CPU maps. */
size_t bpfvm_map_lookup_size(const bpfvm_map *map);
int bpfvm_map_lookup(bpfvm_map *map, const void *key, void *value);
int bpfvm_map_update(bpfvm_map *map, const void *key, const void *value, uint64_t flags);
int bpfvm_map_delete(bpfvm_map *map, const void *key);
int bpfvm_map_get_next_key(bpfvm_map *map, const void *key, void *next_key); /* key NULL: the first */
/* BPF_MAP_FREEZE: afterwards bpfvm_map_update / bpfvm_map_delete return -EPERM (programs still
 * write). A pinned map is frozen for every process. Returns 0, or -EINVAL for a NULL map. */
int bpfvm_map_freeze(bpfvm_map *map);
int bpfvm_map_frozen(const bpfvm_map *map); /* 1 when frozen, else 0 */

/* ---- pinned maps: files on tmpfs that processes share (docs/maps.md "Pinned maps") ----------------
 * Objects' maps declared with LIBBPF_PIN_BY_NAME are opened or created under the pin root
 * ($BPFVM_PIN_ROOT, default /run/bpfvm for root, $XDG_RUNTIME_DIR/bpfvm otherwise) when the object is
 * opened. These open and create maps directly; close them with bpfvm_map_close. */
bpfvm_map *bpfvm_map_open_pinned(const char *path, char *err, size_t err_len);
bpfvm_map *bpfvm_map_create_pinned(const char *path, const char *name, uint32_t type, uint32_t key_size,
                                   uint32_t value_size, uint32_t max_entries, uint32_t flags, char *err,
                                   size_t err_len);
/* Pins a pinned map at a second path (0, or -1 with err). */
int bpfvm_map_pin(const bpfvm_map *map, const char *path, char *err, size_t err_len);
/* Frees a map from bpfvm_map_open_pinned / bpfvm_map_create_pinned (the file stays). */
void bpfvm_map_close(bpfvm_map *map);

#ifdef __cplusplus
}
#endif

#endif /* BPFVM_BPFVM_H */

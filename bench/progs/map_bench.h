// Shared by the map benchmark programs (bench/progs/map_*.bpf.c, run by bench/bench_mapprogs.cpp):
// every program does MAP_BENCH_OPS map operations per run in a loop the compiler must not unroll,
// so that ns per operation = ns per run / MAP_BENCH_OPS (the per-run harness cost is spread over them).
#ifndef MAP_BENCH_H
#define MAP_BENCH_H

#define MAP_BENCH_OPS 256
#define MAP_BENCH_ENTRIES 1024      /* keys 0..1023 are present (user space fills them) */
#define MAP_BENCH_KEY(i) (((i) * 37u) & (MAP_BENCH_ENTRIES - 1))  /* a permutation of 0..1023 */

typedef unsigned int mb_u32;
typedef unsigned long long mb_u64;

#endif

// The target of the `bpfvm trace -p PID` tests: a process that runs until told to quit, so that the
// agent is loaded into it while it runs. It prints "ready" and then obeys one command per line of
// stdin (so it waits blocked in read() between commands), answering one line each ("ready PID" first):
//   run N        sum of lib_add(i, 2i) + local_mul(i, 3) for i < N      -> "sum S"
//   sleep MS     one nanosleep of MS ms                                  -> "slept rc R ms E" (E: elapsed)
//   threads T N  T threads call local_mul(i, 1) for i < N, all at once   -> "threads sum S"
//   hammer T     T threads call local_mul in a loop until `stop`          -> (nothing)
//   stop         ends the hammering threads                              -> "hammer calls C bad B" (B: wrong results)
//   dl PATH N    dlopen(PATH), then its lib_add(i, 1) for i < N             -> "dl sum S"
//   usdt N       USDT probe agt:tick(i, sum, -i) and lib_mark(7i) for i < N  -> "usdt enabled E sum S"
//                (E: how often the probe's semaphore was set)
//   mdwe         forbids writable+executable memory from now on (PR_SET_MDWE) -> "mdwe rc R"
//   leader-exit  the main thread ends (pthread_exit), a new thread serves  -> "leader exits"
//   quit         exits 0
#define _SDT_HAS_SEMAPHORES 1
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/sdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int lib_add(int a, int b);
long lib_mark(long v);

__extension__ unsigned short agt_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));

__attribute__((noinline)) void usdt_loop(long n) {
  long sum = 0, enabled = 0;
  for (long i = 0; i < n; ++i) {
    sum += i;
    if (agt_tick_semaphore) ++enabled;
    long neg = -i;
    STAP_PROBE3(agt, tick, i, sum, neg);
    lib_mark(i * 7);
  }
  printf("usdt enabled %ld sum %ld\n", enabled, sum);
}

__attribute__((noinline)) long local_mul(long a, long b) {
  __asm__ volatile("" ::: "memory");
  return a * b;
}

static int g_n;
static void* worker(void* arg) {
  long s = 0;
  for (int i = 0; i < g_n; ++i) s += local_mul(i, 1);
  *(long*)arg = s;
  return NULL;
}

static atomic_int g_hammer;
static atomic_long g_calls, g_bad;
static void* hammer(void* arg) {
  (void)arg;
  long calls = 0, bad = 0;
  for (long i = 0; atomic_load_explicit(&g_hammer, memory_order_relaxed); ++i) {
    if (local_mul(i, 3) != i * 3) ++bad;
    ++calls;
  }
  atomic_fetch_add(&g_calls, calls);
  atomic_fetch_add(&g_bad, bad);
  return NULL;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static pthread_t hammers[16];
static int nhammers = 0;

static void* serve(void* arg) {
  char line[256];
  (void)arg;
  while (fgets(line, sizeof line, stdin)) {
    long a = 0, b = 0;
    if (sscanf(line, "run %ld", &a) == 1) {
      long sum = 0;
      for (int i = 0; i < a; ++i) {
        sum += lib_add(i, 2 * i);
        sum += local_mul(i, 3);
      }
      printf("sum %ld\n", sum);
    } else if (sscanf(line, "sleep %ld", &a) == 1) {
      struct timespec ts = {a / 1000, (a % 1000) * 1000000L};
      double t0 = now_ms();
      int rc = nanosleep(&ts, NULL);
      printf("slept rc %d ms %.0f\n", rc, now_ms() - t0);
    } else if (sscanf(line, "threads %ld %ld", &a, &b) == 2) {
      pthread_t th[64];
      long res[64], sum = 0;
      if (a > 64) a = 64;
      g_n = (int)b;
      for (int i = 0; i < a; ++i) pthread_create(&th[i], NULL, worker, &res[i]);
      for (int i = 0; i < a; ++i) {
        pthread_join(th[i], NULL);
        sum += res[i];
      }
      printf("threads sum %ld\n", sum);
    } else if (sscanf(line, "hammer %ld", &a) == 1) {
      atomic_store(&g_hammer, 1);
      for (; nhammers < a && nhammers < 16; ++nhammers) pthread_create(&hammers[nhammers], NULL, hammer, NULL);
    } else if (strncmp(line, "stop", 4) == 0) {
      atomic_store(&g_hammer, 0);
      for (int i = 0; i < nhammers; ++i) pthread_join(hammers[i], NULL);
      nhammers = 0;
      printf("hammer calls %ld bad %ld\n", atomic_load(&g_calls), atomic_load(&g_bad));
    } else if (strncmp(line, "dl ", 3) == 0) {
      char path[200];
      if (sscanf(line, "dl %199s %ld", path, &a) != 2) continue;
      void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
      int (*add)(int, int) = h ? (int (*)(int, int))dlsym(h, "lib_add") : NULL;
      long sum = 0;
      for (int i = 0; add && i < a; ++i) sum += add(i, 1);
      if (add) printf("dl sum %ld\n", sum);
      else printf("dl error %s\n", dlerror());
    } else if (sscanf(line, "usdt %ld", &a) == 1) {
      usdt_loop(a);
    } else if (strncmp(line, "mdwe", 4) == 0) {
      printf("mdwe rc %d\n", prctl(65 /* PR_SET_MDWE */, 1 /* PR_MDWE_REFUSE_EXEC_GAIN */, 0L, 0L, 0L));
    } else if (strncmp(line, "leader-exit", 11) == 0) {
      // The main thread ends alone (pthread_exit): a new thread goes on reading the commands.
      pthread_t t;
      pthread_create(&t, NULL, serve, NULL);
      printf("leader exits\n");
      pthread_exit(NULL);
    } else if (strncmp(line, "quit", 4) == 0) {
      exit(0);
    } else {
      printf("unknown command\n");
    }
  }
  exit(0);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready %d\n", (int)getpid());
  serve(NULL);
  return 0;
}

// The target of the probe tests: a PIE that calls a function of a shared library (lib_add, in
// libagent_lib.so) and a local function (local_mul) N times, passes a USDT probe with a semaphore
// (agt:tick) and one without (agt:pair), and prints what it computed and how often the semaphore was
// set, so that a test can compare runs with the kernel's uprobes and bpfvm's agent.
//   agent_target [N] [dlopen-path|-|fork] [THREADS]
// With a dlopen path, the library named there is loaded after the loop and its lib_add called N
// times (probes on libraries loaded later). With THREADS, that many threads then call local_mul N
// times each, all at once (programs running on several threads). With `fork`, the process forks
// first and both run the loop (the child exits with its own line of output; the parent waits).
#define _SDT_HAS_SEMAPHORES 1
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/sdt.h>
#include <sys/wait.h>
#include <unistd.h>
#include <string.h>

int lib_add(int a, int b);
long lib_mark(long v);

__extension__ unsigned short agt_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));
__extension__ unsigned short agt_pair_semaphore __attribute__((unused)) __attribute__((section(".probes")));

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

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 100;
  long sum = 0, enabled = 0;
  pid_t child = -1;
  if (argc > 2 && strcmp(argv[2], "fork") == 0) {
    fflush(stdout);
    child = fork();
  }
  for (int i = 0; i < n; ++i) {
    sum += lib_add(i, 2 * i);
    sum += local_mul(i, 3);
    if (agt_tick_semaphore) ++enabled;
    long neg = -i;
    STAP_PROBE3(agt, tick, i, sum, neg);
    DTRACE_PROBE2(agt, pair, (short)i, (unsigned char)(i & 0xff));
    lib_mark(i * 7);
  }
  if (argc > 2 && argv[2][0] != '-' && strcmp(argv[2], "fork") != 0) {
    void* h = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      fprintf(stderr, "agent_target: %s\n", dlerror());
      return 2;
    }
    int (*add)(int, int) = (int (*)(int, int))dlsym(h, "lib_add");
    for (int i = 0; i < n; ++i) sum += add(i, 1);
  }
  if (argc > 3) {
    int t = atoi(argv[3]);
    pthread_t th[64];
    long res[64];
    if (t > 64) t = 64;
    g_n = n;
    for (int i = 0; i < t; ++i) pthread_create(&th[i], NULL, worker, &res[i]);
    for (int i = 0; i < t; ++i) {
      pthread_join(th[i], NULL);
      sum += res[i];
    }
  }
  printf("sum %ld enabled %ld%s\n", sum, enabled, child == 0 ? " (child)" : "");
  fflush(stdout);
  if (child > 0) waitpid(child, NULL, 0);
  return 0;
}

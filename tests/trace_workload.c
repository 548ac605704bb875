// The workload of the tracing tests: known system calls from threads, a forked child and the main
// thread, opens that succeed and fail, unlinkat of a protected file, exit statuses and signals.
//   tr_workload DIR basic        getppid x5, openat (ok, ENOENT, DIR/created.txt), 2 threads
//                                (getppid x3, openat /dev/zero each), a child (getppid x2, openat)
//   tr_workload DIR unlink       creates DIR/protected.txt and DIR/scratch.txt, unlinkat both,
//                                prints "protected: ERRNO" and "scratch: ERRNO" (0 = removed)
//   tr_workload - exit N         exits with status N
//   tr_workload - signal N       kills itself with signal N
//   tr_workload - signals        SIGUSR1 to itself 3 times, a handler counts them; exit 0 if 3
//   tr_workload - vfork          getppid in a vfork child and in the parent
//   tr_workload - stopcont       a child stops itself, the parent continues it; exit 0 if all seen
//   tr_workload - int80          an i386 getpid (int $0x80), then getppid; exit 0 if it worked
//   tr_workload - sendsig        getpid with a SIGUSR2 handler; exit 0 if it ran once
//   tr_workload - sleep MS FILE  getppid every 10 ms for MS ms, then writes FILE
//   tr_workload - loop N         N getppid calls
//   tr_workload - ownsigsys      its own SIGSYS handler and seccomp filter (getppid traps and returns
//                                4242 from the handler), getppid x4 with every signal blocked; exit 0
//                                if the handler ran once per trapped call and is still installed
//   tr_workload - wrappers       the C library's getppid() (not syscall()): x5 in main, x3 in each of 4
//                                threads, x2 in a forked child
//   tr_workload - exec           execve of a missing file (ENOENT), then a child that execs this
//                                program again with arguments ("- exit 0 ..."), waited for
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <time.h>
#include <unistd.h>

static void ppid(int n) {
  for (int i = 0; i < n; i++) syscall(SYS_getppid);
}

static void open_close(const char *path, int flags) {
  int fd = (int)syscall(SYS_openat, AT_FDCWD, path, flags, 0644);
  if (fd >= 0) close(fd);
}

static void *thread_main(void *arg) {
  (void)arg;
  ppid(3);
  open_close("/dev/zero", O_RDONLY);
  return NULL;
}

static volatile sig_atomic_t usr1;
static void on_usr1(int sig) {
  (void)sig;
  usr1++;
}

static volatile sig_atomic_t sigsys_seen;
static void on_sigsys(int sig, siginfo_t *si, void *ucv) {
  (void)sig;
  ucontext_t *uc = ucv;
  if (si->si_code == 1 /* SYS_SECCOMP */ && si->si_syscall == SYS_getppid) {
    uc->uc_mcontext.gregs[REG_RAX] = 4242;
    sigsys_seen++;
  }
}

// getppid with its own filter: SECCOMP_RET_TRAP for getppid's 6th argument == 77, else ALLOW.
static int own_sigsys(void) {
  struct sigaction sa = {0}, cur = {0};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  if (sigaction(SIGSYS, &sa, NULL) != 0) return 3;
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[5])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 77, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP | 9),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
    return 4;
  if (syscall(SYS_getppid, 0, 0, 0, 0, 0, 77) != 4242 || sigsys_seen != 1) return 5;
  if (syscall(SYS_getppid) == 4242) return 6;
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  ppid(4);
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (syscall(SYS_getppid, 0, 0, 0, 0, 0, 77) != 4242 || sigsys_seen != 2) return 7;
  if (sigaction(SIGSYS, NULL, &cur) != 0 || cur.sa_sigaction != on_sigsys) return 8;
  return 0;
}

static void *wrapper_thread(void *arg) {
  (void)arg;
  for (int i = 0; i < 3; i++) (void)getppid();
  return NULL;
}

static int wrappers(void) {
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, wrapper_thread, NULL);
  for (int i = 0; i < 5; i++) (void)getppid();
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  pid_t c = fork();
  if (c == 0) {
    (void)getppid();
    (void)getppid();
    _exit(0);
  }
  int st = 0;
  waitpid(c, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: tr_workload DIR MODE [ARGS]\n");
    return 2;
  }
  const char *dir = argv[1], *mode = argv[2];
  if (!strcmp(mode, "basic")) {
    char path[4096];
    ppid(5);
    open_close("/dev/null", O_RDONLY);
    open_close("/nonexistent/bpfvm-trace-test", O_RDONLY);
    snprintf(path, sizeof path, "%s/created.txt", dir);
    open_close(path, O_WRONLY | O_CREAT | O_TRUNC);
    // One thread after the other (their file descriptors do not depend on timing), each joined
    // without blocking in futex (whose calls would): the same syscalls and results in every run.
    for (int i = 0; i < 2; i++) {
      pthread_t t;
      pthread_create(&t, NULL, thread_main, NULL);
      while (pthread_tryjoin_np(t, NULL) == EBUSY) {
      }
    }
    pid_t child = fork();
    if (child == 0) {
      ppid(2);
      open_close("/dev/null", O_WRONLY);
      _exit(0);
    }
    int st = 0;
    waitpid(child, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
  }
  if (!strcmp(mode, "unlink")) {
    char p[4096], s[4096];
    snprintf(p, sizeof p, "%s/protected.txt", dir);
    snprintf(s, sizeof s, "%s/scratch.txt", dir);
    open_close(p, O_WRONLY | O_CREAT);
    open_close(s, O_WRONLY | O_CREAT);
    if (chdir(dir) != 0) return 2;
    int rp = (int)syscall(SYS_unlinkat, AT_FDCWD, "protected.txt", 0);
    int ep = rp < 0 ? errno : 0;
    int rs = (int)syscall(SYS_unlinkat, AT_FDCWD, "scratch.txt", 0);
    int es = rs < 0 ? errno : 0;
    printf("protected: %d\nscratch: %d\n", ep, es);
    return 0;
  }
  if (!strcmp(mode, "exit") && argc > 3) return atoi(argv[3]);
  if (!strcmp(mode, "signal") && argc > 3) {
    signal(atoi(argv[3]), SIG_DFL);
    raise(atoi(argv[3]));
    return 0;
  }
  if (!strcmp(mode, "signals")) {
    signal(SIGUSR1, on_usr1);
    for (int i = 0; i < 3; i++) kill(getpid(), SIGUSR1);
    return usr1 == 3 ? 0 : 1;
  }
  if (!strcmp(mode, "vfork")) {
    // getppid in a vfork child and in the parent after it: 2 calls.
    pid_t child = vfork();
    if (child == 0) {
      syscall(SYS_getppid);
      _exit(0);
    }
    int st = 0;
    waitpid(child, &st, 0);
    syscall(SYS_getppid);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
  }
  if (!strcmp(mode, "stopcont")) {
    // Job control through a tracer: a child stops itself (SIGSTOP), the parent sees it stopped,
    // continues it (SIGCONT) and sees it exit. SIGALRM ends a run that hangs.
    alarm(10);
    pid_t child = fork();
    if (child == 0) {
      raise(SIGSTOP);
      syscall(SYS_getppid);
      _exit(7);
    }
    int st = 0;
    if (waitpid(child, &st, WUNTRACED) != child || !WIFSTOPPED(st) || WSTOPSIG(st) != SIGSTOP) return 1;
    kill(child, SIGCONT);
    if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 7) return 2;
    return 0;
  }
  if (!strcmp(mode, "int80")) {
    // An i386 system call from this 64-bit process (getpid, 20 in the i386 table), where the
    // kernel has IA32 emulation; then a 64-bit getppid.
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    syscall(SYS_getppid);
    return r == getpid() ? 0 : 1;
  }
  if (!strcmp(mode, "sendsig")) {
    // A tracing program sends SIGUSR2 at getpid (bpf_send_signal): the handler runs before
    // getpid's caller continues.
    signal(SIGUSR2, on_usr1);
    syscall(SYS_getpid);
    return usr1 == 1 ? 0 : 1;
  }
  if (!strcmp(mode, "sleep") && argc > 4) {
    long ms = atol(argv[3]);
    struct timespec ten = {0, 10 * 1000 * 1000};
    for (long t = 0; t < ms; t += 10) {
      syscall(SYS_getppid);
      nanosleep(&ten, NULL);
    }
    FILE *f = fopen(argv[4], "w");
    if (f) {
      fputs("done\n", f);
      fclose(f);
    }
    return 0;
  }
  if (!strcmp(mode, "exec")) {
    char *bad[] = {"bpfvm-no-such-binary", "x", NULL};
    syscall(SYS_execve, "/nonexistent/bpfvm-no-such-binary", bad, environ);
    // The arguments are written on the stack before the fork: the child's copy of those pages is
    // mapped, so the kernel's non-faulting reads (bpf_probe_read_user) see them. String literals
    // are in the program's file-backed pages, which a forked child has not mapped yet.
    char a1[] = "-", a2[] = "exit", a3[] = "0", a4[] = "an argument with spaces", a5[] = "6th", a6[] = "7th";
    char *args[] = {argv[0], a1, a2, a3, a4, a5, a6, NULL};
    pid_t child = fork();
    if (child == 0) {
      execv(argv[0], args);
      _exit(127);
    }
    int st = 0;
    waitpid(child, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
  }
  if (!strcmp(mode, "ownsigsys")) return own_sigsys();
  if (!strcmp(mode, "wrappers")) return wrappers();
  if (!strcmp(mode, "loop") && argc > 3) {
    ppid(atoi(argv[3]));
    return 0;
  }
  fprintf(stderr, "tr_workload: unknown mode %s\n", mode);
  return 2;
}

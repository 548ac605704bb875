// Not a program: a target BTF for CO-RE tests (`--btf core_target.bpf.o`), with layouts unlike the
// kernel's: task_struct's fields in another order, pt_regs of one register, pid_type's values moved.
// The expected relocations are worked out by hand in tests/loader_core_test.cpp.
typedef int pid_t;

struct task_struct {
  int pad[3];             // 0
  char comm[16];          // 12
  pid_t tgid;             // 28
  pid_t pid;              // 32
  struct task_struct *real_parent;  // 40
  unsigned int flags;     // 48
};

struct pt_regs {
  long di;
};

struct trace_entry {
  unsigned short type;
};

struct trace_event_raw_sys_enter {
  struct trace_entry ent;  // 0, 2 bytes
  int id;                  // 4
  long args[6];            // 8
  char __data[0];          // 56
};

enum pid_type { PIDTYPE_PID, PIDTYPE_TGID = 5, PIDTYPE_SID = 7 };

struct task_struct core_target_task __attribute__((used));
struct pt_regs core_target_regs __attribute__((used));
struct trace_event_raw_sys_enter core_target_enter __attribute__((used));
enum pid_type core_target_pid_type __attribute__((used));

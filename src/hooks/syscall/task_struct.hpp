// Synthetic kernel tasks for bpf_get_current_task: a struct task_struct (and its struct cred) in
// bpfvm's memory, laid out by a BTF (the one CO-RE relocates against), with the fields tracing
// programs read filled for a real task (from its TracedTask and /proc): pid, tgid, comm,
// real_parent / parent (a task for the parent process), group_leader, real_cred / cred (uid, gid,
// effective, saved and fs ids), start_time / start_boottime. Every other byte is zero.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "bpfvm/result.hpp"
#include "bpfvm/trace.hpp"

struct btf;

namespace bpfvm::syscall_hooks {

// Where the filled fields are in a BTF's struct task_struct and struct cred (-1: the BTF has no
// such member; it is left zero).
struct TaskLayout {
  std::string origin;  // the BTF's origin, for messages
  size_t task_size = 0, cred_size = 0;
  int64_t pid = -1, tgid = -1, comm = -1, real_parent = -1, parent = -1, group_leader = -1, real_cred = -1,
          cred = -1, start_time = -1, start_boottime = -1;
  // struct cred: uid gid suid sgid euid egid fsuid fsgid (kuid_t / kgid_t, 4 bytes each)
  int64_t ids[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
};
// Errors: the BTF has no struct task_struct, or its pid / tgid / comm are not as the kernel's.
Result<TaskLayout> task_layout(const struct btf* b, const std::string& origin);

// The synthetic tasks of one tracing session, by thread id. Each task's memory stays at the same
// address while the session lives (a program may keep the pointer), and is rewritten when the task
// is current again (its name changes at exec).
class TaskStructs {
 public:
  explicit TaskStructs(TaskLayout layout) : layout_(std::move(layout)) {}
  // The address of the task_struct of `task` (the running thread), with its parent and group
  // leader filled as well. Without `from_proc` only what the TracedTask says is filled (pid, tgid,
  // comm, group_leader for a main thread, the real uid / gid): for ids that are not the host's.
  uint64_t current(TracedTask& task, bool from_proc = true);
  // Whether addr is in the memory of a synthetic task or cred.
  bool contains(uint64_t addr) const;
  const TaskLayout& layout() const { return layout_; }

 private:
  struct Task {
    std::vector<uint64_t> mem;   // task_struct (8-aligned)
    std::vector<uint64_t> cred;  // struct cred
  };
  Task& slot(uint32_t tid);
  // Fills a task for a thread of another process (parent, group leader) from /proc.
  uint64_t fill_other(uint32_t tid, int depth);
  void put(Task& t, int64_t off, const void* v, size_t n);
  TaskLayout layout_;
  std::unordered_map<uint32_t, std::unique_ptr<Task>> tasks_;
  std::map<uint64_t, uint64_t> ranges_;  // start -> end of every task's and cred's memory
};

}  // namespace bpfvm::syscall_hooks

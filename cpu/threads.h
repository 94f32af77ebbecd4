// The CPU worker threads of the expert kernels: one oneTBB task_arena sized from the hwloc
// topology, its worker threads pinned one per physical core.
//
// The arena takes one slot per physical core (not per hyperthread: the kernels are bound by
// memory bandwidth and FMA/VNNI ports, which siblings share), less the cores left to I/O
// completion handling. Work submitted with execute() runs on the caller plus the arena's
// workers; worker slot i is pinned to core i of the arena's cores (the caller, slot 0, is left
// where the OS put it; a worker leaving the arena is unpinned again). oneTBB draws every
// arena's workers from one pool, so the arena adds no threads beyond the machine's, and a
// tbb::global_control limit (hetmoe -t) caps it too.
#pragma once

#include <memory>
#include <utility>

#include <tbb/task_arena.h>

namespace hetmoe::cpu {

struct CpuTopology {
  int logical_cpus = 1;
  int physical_cores = 1;
  int numa_nodes = 1;
};

// Read from hwloc (falls back to std::thread::hardware_concurrency when hwloc fails).
CpuTopology probe_cpu_topology();

struct ThreadOptions {
  int threads = 0;           // arena slots; 0: physical cores - reserve_io_cores
  int reserve_io_cores = 0;  // cores kept free of kernel work (for io_uring completions)
  bool pin = true;           // pin worker slot i to core i (hwloc_set_cpubind)
};

class CpuThreads {
 public:
  explicit CpuThreads(ThreadOptions options = {});
  ~CpuThreads();
  CpuThreads(const CpuThreads&) = delete;
  CpuThreads& operator=(const CpuThreads&) = delete;

  int concurrency() const { return concurrency_; }
  const CpuTopology& topology() const { return topology_; }
  template <class F>
  void execute(F&& f) {
    arena_.execute(std::forward<F>(f));
  }

 private:
  class Pinning;
  CpuTopology topology_;
  int concurrency_ = 1;
  tbb::task_arena arena_;
  std::unique_ptr<Pinning> pinning_;  // declared after arena_: stops observing before it goes
};

}  // namespace hetmoe::cpu

#include "cpu/threads.h"

#include <hwloc.h>
#include <tbb/task_scheduler_observer.h>

#include <algorithm>
#include <thread>
#include <vector>

namespace hetmoe::cpu {
namespace {

struct Topology {
  hwloc_topology_t handle = nullptr;
  Topology() {
    if (hwloc_topology_init(&handle) != 0) {
      handle = nullptr;
      return;
    }
    if (hwloc_topology_load(handle) != 0) {
      hwloc_topology_destroy(handle);
      handle = nullptr;
    }
  }
  ~Topology() {
    if (handle != nullptr) hwloc_topology_destroy(handle);
  }
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;
};

}  // namespace

CpuTopology probe_cpu_topology() {
  CpuTopology result;
  result.logical_cpus = std::max(1u, std::thread::hardware_concurrency());
  result.physical_cores = result.logical_cpus;
  Topology topology;
  if (topology.handle == nullptr) return result;
  result.logical_cpus = std::max(1, hwloc_get_nbobjs_by_type(topology.handle, HWLOC_OBJ_PU));
  result.physical_cores = std::max(1, hwloc_get_nbobjs_by_type(topology.handle, HWLOC_OBJ_CORE));
  result.numa_nodes = std::max(1, hwloc_get_nbobjs_by_type(topology.handle, HWLOC_OBJ_NUMANODE));
  return result;
}

// Pins each worker that joins the arena to the core of its slot.
class CpuThreads::Pinning final : public tbb::task_scheduler_observer {
 public:
  Pinning(tbb::task_arena& arena, int cores) : tbb::task_scheduler_observer(arena) {
    if (topology_.handle == nullptr) return;
    const int available = hwloc_get_nbobjs_by_type(topology_.handle, HWLOC_OBJ_CORE);
    for (int i = 0; i < std::min(cores, available); ++i)
      core_sets_.push_back(hwloc_get_obj_by_type(topology_.handle, HWLOC_OBJ_CORE, unsigned(i))->cpuset);
    if (!core_sets_.empty()) observe(true);
  }
  ~Pinning() override { observe(false); }

  void on_scheduler_entry(bool worker) override {
    if (!worker) return;  // the caller keeps its own placement
    const int slot = tbb::this_task_arena::current_thread_index();
    if (slot < 0) return;
    // Best effort: a container may forbid binding; the kernels are correct either way.
    hwloc_set_cpubind(topology_.handle, core_sets_[size_t(slot) % core_sets_.size()], HWLOC_CPUBIND_THREAD);
  }
  // oneTBB workers move between arenas: one leaving ours gets the whole machine back, so two
  // workers pinned to the same core never meet in another arena.
  void on_scheduler_exit(bool worker) override {
    if (worker)
      hwloc_set_cpubind(topology_.handle, hwloc_topology_get_allowed_cpuset(topology_.handle),
                        HWLOC_CPUBIND_THREAD);
  }

 private:
  Topology topology_;
  std::vector<hwloc_const_cpuset_t> core_sets_;  // owned by topology_
};

CpuThreads::CpuThreads(ThreadOptions options) : topology_(probe_cpu_topology()) {
  const int cores = std::max(1, topology_.physical_cores - std::max(0, options.reserve_io_cores));
  concurrency_ = options.threads > 0 ? std::min(options.threads, topology_.logical_cpus) : cores;
  arena_.initialize(concurrency_);
  if (options.pin) pinning_ = std::make_unique<Pinning>(arena_, concurrency_);
}

CpuThreads::~CpuThreads() = default;

}  // namespace hetmoe::cpu

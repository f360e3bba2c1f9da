#pragma once
// A fixed set of worker threads behind a bounded queue: where a service runs
// the blocking part of its calls (libpq, Argon2id), so that gRPC's own
// threads never block and a burst of calls waits in line instead of being
// refused. Sized to the resource the work needs (the database pool), so the
// work that runs never waits for that resource, and only a full queue sheds
// (docs/architecture.md, "Threading, per process").

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "portico/core/deadline.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace portico::rpc {

struct ExecutorOptions {
  /// Names the pool in metrics (`pool` label) and thread names.
  std::string name = "rpc";
  /// Worker threads (>= 1).
  int threads = 4;
  /// Tasks waiting for a worker at most (>= 1); beyond, TrySubmit refuses.
  std::size_t max_queue = 1024;
};

/// Thread-safe. Tasks run in submission order, each on one worker. The
/// destructor stops taking tasks, runs every task already queued and joins
/// the workers, so whatever was accepted is finished.
/// Metrics: portico_executor_queued{pool}, portico_executor_busy{pool},
/// portico_executor_rejected_total{pool},
/// portico_executor_queue_wait_seconds{pool}.
class Executor {
 public:
  explicit Executor(ExecutorOptions options);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  /// Queues `task` for a worker. False, and `task` is dropped unrun, when
  /// max_queue tasks are already waiting or the executor is stopping: the
  /// caller answers "busy" itself. Never blocks on the work.
  bool TrySubmit(std::function<void()> task);

  /// Tasks waiting for a worker right now.
  std::size_t queued() const;
  const ExecutorOptions& options() const { return options_; }

 private:
  struct Task {
    std::function<void()> fn;
    Deadline queued_at;
  };
  void Work();

  const ExecutorOptions options_;
  prometheus::Gauge& queued_gauge_;
  prometheus::Gauge& busy_gauge_;
  prometheus::Counter& rejected_;
  prometheus::Histogram& wait_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;  // guarded by mu_
  bool stopping_ = false;   // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace portico::rpc

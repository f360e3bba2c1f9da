#include "portico/rpc/executor.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <pthread.h>

#include <chrono>
#include <stdexcept>

#include "portico/admin/metrics.h"

namespace portico::rpc {
namespace {

struct ExecutorMetrics {
  prometheus::Family<prometheus::Gauge>& queued;
  prometheus::Family<prometheus::Gauge>& busy;
  prometheus::Family<prometheus::Counter>& rejected;
  prometheus::Family<prometheus::Histogram>& wait;

  static ExecutorMetrics& Get() {
    auto& reg = *admin::Registry();
    static ExecutorMetrics m{
        prometheus::BuildGauge()
            .Name("portico_executor_queued")
            .Help("Calls waiting for a worker, by pool")
            .Register(reg),
        prometheus::BuildGauge()
            .Name("portico_executor_busy")
            .Help("Workers running a call, by pool")
            .Register(reg),
        prometheus::BuildCounter()
            .Name("portico_executor_rejected_total")
            .Help("Calls refused because the pool's queue was full (answered UNAVAILABLE)")
            .Register(reg),
        prometheus::BuildHistogram()
            .Name("portico_executor_queue_wait_seconds")
            .Help("Time calls waited for a worker, by pool")
            .Register(reg),
    };
    return m;
  }
};

}  // namespace

Executor::Executor(ExecutorOptions options)
    : options_(std::move(options)),
      queued_gauge_(ExecutorMetrics::Get().queued.Add({{"pool", options_.name}})),
      busy_gauge_(ExecutorMetrics::Get().busy.Add({{"pool", options_.name}})),
      rejected_(ExecutorMetrics::Get().rejected.Add({{"pool", options_.name}})),
      wait_(ExecutorMetrics::Get().wait.Add({{"pool", options_.name}}, admin::LatencyBuckets())) {
  if (options_.threads < 1 || options_.max_queue < 1) {
    throw std::invalid_argument("an executor needs at least one thread and one queue slot");
  }
  threads_.reserve(static_cast<std::size_t>(options_.threads));
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] { Work(); });
    // Thread names are at most 15 characters; they make `top -H` and perf readable.
    pthread_setname_np(threads_.back().native_handle(), options_.name.substr(0, 15).c_str());
  }
}

Executor::~Executor() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

bool Executor::TrySubmit(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= options_.max_queue) {
      rejected_.Increment();
      return false;
    }
    queue_.push_back({std::move(task), Clock::now()});
  }
  queued_gauge_.Increment();
  cv_.notify_one();
  return true;
}

std::size_t Executor::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void Executor::Work() {
  for (;;) {
    Task task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      // Stopping drains: everything accepted runs before the workers end.
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    queued_gauge_.Decrement();
    wait_.Observe(std::chrono::duration<double>(Clock::now() - task.queued_at).count());
    busy_gauge_.Increment();
    try {
      task.fn();
    } catch (...) {
      // Tasks catch their own (rpc::Serve does); an escapee must not end the worker.
    }
    busy_gauge_.Decrement();
  }
}

}  // namespace portico::rpc

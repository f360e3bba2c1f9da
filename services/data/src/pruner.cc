#include "pruner.h"

#include <condition_variable>
#include <exception>
#include <mutex>

#include "portico/log/log.h"

namespace portico::data {

void RunPruner(const std::function<Result<PruneReport>(Deadline)>& prune,
               std::chrono::milliseconds interval, std::stop_token stop) {
  std::mutex mu;  // guards nothing; condition_variable_any needs one to wait on
  std::condition_variable_any wake;
  bool failing = false;  // a failure is logged once, not at every pass, until a batch works
  while (!stop.stop_requested()) {
    // An exception leaving a thread's function calls std::terminate and so
    // would take the whole service down: a throwing batch ends the pass like
    // a failed one, and the next pass tries again.
    try {
      for (int batch = 0; batch < kMaxPruneBatchesPerPass && !stop.stop_requested(); ++batch) {
        auto report = prune(DeadlineIn(std::chrono::seconds(30)));
        if (!report.ok()) {
          if (!failing) {
            log::Warn("pruning the change feed failed", {{"error", report.error().message}});
          }
          failing = true;
          break;
        }
        if (failing) log::Info("pruning the change feed works again");
        failing = false;
        if (report->tombstones > 0 || report->idempotency_keys > 0) {
          log::Info("pruned", {{"tombstones", report->tombstones},
                               {"idempotency_keys", report->idempotency_keys}});
        }
        if (report->tombstones < kPruneBatchSize && report->idempotency_keys < kPruneBatchSize) {
          break;
        }
      }
    } catch (const std::exception& e) {
      if (!failing) log::Error("pruning the change feed threw", {{"error", e.what()}});
      failing = true;
    } catch (...) {
      if (!failing) log::Error("pruning the change feed threw a non-standard exception");
      failing = true;
    }
    std::unique_lock lock(mu);
    wake.wait_for(lock, stop, interval, [] { return false; });
  }
}

}  // namespace portico::data

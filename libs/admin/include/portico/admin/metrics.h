#pragma once
// The process-wide Prometheus registry and the metrics every process shares.

#include <memory>
#include <vector>

namespace prometheus {
class Registry;
}

namespace portico::admin {

/// The process-wide registry. Its first use also registers the process
/// metrics (process_resident_memory_bytes, process_cpu_seconds_total,
/// process_open_fds, process_start_time_seconds), refreshed on each scrape.
/// Thread-safe.
std::shared_ptr<prometheus::Registry> Registry();

/// Histogram buckets for request latencies in seconds (1 ms .. 10 s).
const std::vector<double>& LatencyBuckets();

}  // namespace portico::admin

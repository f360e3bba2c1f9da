#include "portico/admin/metrics.h"

#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace portico::admin {
namespace {

// Process metrics are read from the kernel at scrape time, so they are built
// as fresh families in Collect() rather than kept in gauges that would need
// a refresher thread (and a counter that prometheus::Counter cannot Set).
class ProcessRegistry final : public prometheus::Registry {
 public:
  ProcessRegistry() : start_time_seconds_(ProcessStartTime()) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    auto families = prometheus::Registry::Collect();
    const long page = sysconf(_SC_PAGESIZE);
    std::uint64_t vm_pages = 0, rss_pages = 0;
    if (std::ifstream statm("/proc/self/statm"); statm >> vm_pages >> rss_pages) {
      Add(families, "process_resident_memory_bytes", "Resident memory size in bytes.",
          prometheus::MetricType::Gauge, static_cast<double>(rss_pages) * page);
      Add(families, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
          prometheus::MetricType::Gauge, static_cast<double>(vm_pages) * page);
    }
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) == 0) {
      const auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
      Add(families, "process_cpu_seconds_total", "Total user and system CPU time in seconds.",
          prometheus::MetricType::Counter, seconds(usage.ru_utime) + seconds(usage.ru_stime));
    }
    std::error_code ec;
    std::size_t fds = 0;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
         it.increment(ec)) {
      ++fds;
    }
    if (!ec) {
      Add(families, "process_open_fds", "Number of open file descriptors.",
          prometheus::MetricType::Gauge, static_cast<double>(fds));
    }
    if (rlimit limit{}; getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
      Add(families, "process_max_fds", "Maximum number of open file descriptors.",
          prometheus::MetricType::Gauge, static_cast<double>(limit.rlim_cur));
    }
    Add(families, "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.", prometheus::MetricType::Gauge,
        start_time_seconds_);
    return families;
  }

 private:
  static void Add(std::vector<prometheus::MetricFamily>& families, std::string name,
                  std::string help, prometheus::MetricType type, double value) {
    prometheus::ClientMetric metric;
    (type == prometheus::MetricType::Counter ? metric.counter.value : metric.gauge.value) = value;
    families.push_back({std::move(name), std::move(help), type, {std::move(metric)}});
  }

  // Boot time plus the process's start offset from /proc; the current time
  // if /proc is unreadable (the registry is created early in main()).
  static double ProcessStartTime() {
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    std::ifstream sys_stat("/proc/stat");
    std::string line;
    double boot_time = 0;
    while (std::getline(sys_stat, line)) {
      if (line.rfind("btime ", 0) == 0) boot_time = std::stod(line.substr(6));
    }
    // Field 22 (starttime); the fields after the parenthesised command start at 3.
    const std::size_t paren = stat.rfind(')');
    if (paren != std::string::npos && boot_time > 0) {
      std::istringstream fields(stat.substr(paren + 1));
      std::string field;
      for (int i = 3; i <= 22 && fields >> field; ++i) {
        if (i == 22) return boot_time + std::stod(field) / static_cast<double>(sysconf(_SC_CLK_TCK));
      }
    }
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  double start_time_seconds_;
};

}  // namespace

std::shared_ptr<prometheus::Registry> Registry() {
  static const std::shared_ptr<prometheus::Registry> registry =
      std::make_shared<ProcessRegistry>();
  return registry;
}

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> buckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25,  0.5,    1,     2.5,  5,     10};
  return buckets;
}

}  // namespace portico::admin

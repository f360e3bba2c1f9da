#include "audit.h"

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <map>
#include <mutex>
#include <string>

#include "portico/admin/metrics.h"

namespace portico::users {
namespace {

prometheus::Counter& CounterFor(std::string_view event) {
  static auto& family = prometheus::BuildCounter()
                            .Name("portico_users_audit_events_total")
                            .Help("Security-relevant events of the users service, by kind")
                            .Register(*admin::Registry());
  static std::mutex mu;
  static std::map<std::string, prometheus::Counter*, std::less<>> counters;
  std::lock_guard lock(mu);
  auto it = counters.find(event);
  if (it == counters.end()) {
    it = counters.emplace(std::string(event), &family.Add({{"event", std::string(event)}})).first;
  }
  return *it->second;
}

}  // namespace

void CountAuditEvent(std::string_view event) { CounterFor(event).Increment(); }

}  // namespace portico::users

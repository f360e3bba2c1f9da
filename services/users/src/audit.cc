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

// The sign-in failures among the audit events, by reason: the number an
// operator alerts on (credential stuffing, a lockout wave), kept apart from
// the audit family so a rule needs no regex over event names.
prometheus::Counter* SignInFailureFor(std::string_view event) {
  static auto& family = prometheus::BuildCounter()
                            .Name("portico_users_sign_in_failures_total")
                            .Help("Failed sign-ins, by reason")
                            .Register(*admin::Registry());
  static prometheus::Counter& bad_credentials = family.Add({{"reason", "bad_credentials"}});
  static prometheus::Counter& throttled = family.Add({{"reason", "throttled"}});
  static prometheus::Counter& disabled = family.Add({{"reason", "disabled"}});
  if (event == "auth.login_failed") return &bad_credentials;
  if (event == "auth.login_throttled") return &throttled;
  if (event == "auth.login_disabled") return &disabled;
  return nullptr;
}

}  // namespace

void CountAuditEvent(std::string_view event) {
  CounterFor(event).Increment();
  if (auto* failures = SignInFailureFor(event)) failures->Increment();
}

}  // namespace portico::users

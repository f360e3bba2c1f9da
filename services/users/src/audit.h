#pragma once
// Security-relevant events (sign-ins, failures, password and role changes,
// deletions): one structured log line each, never with a secret, and a
// count in portico_users_audit_events_total{event}.

#include <string_view>

#include "portico/log/log.h"

namespace portico::users {

/// Adds one to portico_users_audit_events_total{event}, and for a failed
/// sign-in (auth.login_failed, _throttled, _disabled) to
/// portico_users_sign_in_failures_total{reason}. Thread-safe.
void CountAuditEvent(std::string_view event);

/// Logs `message` at info level with {"event": event} and `fields`, and
/// counts the event. Thread-safe. Usage:
///   Audit("auth.login", "signed in", log::Field("user_id", id));
template <typename... F>
void Audit(std::string_view event, std::string_view message, F&&... fields) {
  log::Info(message, {log::Field("event", event), log::Field(std::forward<F>(fields))...});
  CountAuditEvent(event);
}

}  // namespace portico::users

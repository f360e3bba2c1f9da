#pragma once
// Keeps an auth::KeySet filled with the users service's public keys, fetched
// over gRPC (portico.users.v1.AuthService/GetJwks). Used by every process
// that verifies access tokens but does not sign them (gateway, data).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "portico/auth/jwt.h"
#include "portico/core/deadline.h"
#include "portico/core/result.h"

namespace grpc {
class Channel;
}

namespace portico::rpc {

class KeyFetcher {
 public:
  explicit KeyFetcher(std::shared_ptr<grpc::Channel> users_channel);
  ~KeyFetcher();

  /// Fetches the JWKS and replaces the key set. kUnavailable if the users
  /// service does not answer by `deadline`. Thread-safe; blocks.
  Status Refresh(Deadline deadline);
  /// The key set the verifier reads (never null; empty until a fetch works).
  std::shared_ptr<auth::KeySet> keys() const { return keys_; }
  /// True once a fetch has succeeded.
  bool loaded() const { return loaded_.load(); }
  /// A refresh callback for auth::Verifier. With `wait`, it fetches on the
  /// calling thread (blocking up to 2 s); without, it only wakes the
  /// LoadInBackground thread and returns at once — for event-loop threads,
  /// which must never block (the token that triggered it fails; the next
  /// one with that key verifies).
  auth::Verifier::Refresh RefreshCallback(bool wait);
  /// A thread that retries Refresh every 2 s until it first succeeds (the
  /// users service may start later), then refreshes every `period` so a
  /// rotated-out key stops verifying. Stops when the returned jthread is
  /// destroyed; the fetcher must outlive it.
  std::jthread LoadInBackground(std::chrono::seconds period = std::chrono::minutes(10));

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<auth::KeySet> keys_ = std::make_shared<auth::KeySet>();
  std::atomic<bool> loaded_{false};
  std::mutex refresh_mu_;  // one fetch at a time
  std::mutex wake_mu_;
  std::condition_variable_any wake_cv_;
  bool wake_ = false;  // guarded by wake_mu_: fetch now, an unknown kid was seen
};

}  // namespace portico::rpc

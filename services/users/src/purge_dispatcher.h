#pragma once
// Delivers the purge_outbox: for every deleted account, calls
// portico.data.v1.DataAdmin/PurgeOwner with a short-lived service token until
// it succeeds, backing off between attempts. The rows live in the users
// database, so a restart of either service loses nothing; PurgeOwner is
// idempotent, so replicas delivering the same row twice is harmless.

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "portico/core/result.h"

namespace grpc {
class Channel;
}

namespace portico::pg {
class Pool;
}

namespace portico::users {

class KeyRing;
struct Settings;

class PurgeDispatcher {
 public:
  PurgeDispatcher(pg::Pool& pool, KeyRing& keys, const Settings& settings,
                  std::shared_ptr<grpc::Channel> data_channel);
  /// Stops the thread (an attempt in flight finishes first, bounded by its 5 s deadline).
  ~PurgeDispatcher();

  /// Starts the delivery thread.
  void Start();
  /// Delivers due rows now rather than at the next poll. Thread-safe.
  void Wake();
  /// One pass: attempts every due row once. The number delivered, or the
  /// database error. Thread-safe (used by tests directly).
  Result<int> DeliverDue();

 private:
  Status Purge(const std::string& owner_id);
  void Loop(std::stop_token stop);

  pg::Pool& pool_;
  KeyRing& keys_;
  const Settings& settings_;
  std::shared_ptr<grpc::Channel> channel_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  bool wake_ = false;  // guarded by mu_
  std::jthread thread_;
};

}  // namespace portico::users

#pragma once
// Delivers the purge_outbox: for every deleted account, calls
// portico.data.v1.DataAdmin/PurgeOwner with a short-lived service token until
// it succeeds, backing off between attempts. The rows live in the users
// database, so a restart of either service loses nothing; PurgeOwner is
// idempotent; a row being delivered is claimed (FOR UPDATE SKIP LOCKED and a
// lease), so two replicas do not call for the same row at once.

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

namespace portico::rpc {
struct TraceParent;
}

namespace portico::users {

class KeyRing;
struct Settings;

class PurgeDispatcher {
 public:
  PurgeDispatcher(pg::Pool& pool, KeyRing& keys, const Settings& settings,
                  std::shared_ptr<grpc::Channel> data_channel);
  /// Stops the thread; a call in flight is cancelled.
  ~PurgeDispatcher();

  /// Starts the delivery thread.
  void Start();
  /// Delivers due rows now rather than at the next poll. Thread-safe.
  void Wake();
  /// One pass: attempts each due row once (at most kMaxRowsPerPass), each
  /// with its own deadline, stopping between rows (and cancelling the call in
  /// flight) once `stop` is requested. The number delivered, or the database
  /// error. Thread-safe, also across replicas (used by tests directly).
  Result<int> DeliverDue(std::stop_token stop = {});

  /// Sets portico_users_purge_outbox_pending and
  /// portico_users_purge_outbox_oldest_age_seconds from the table (shared by
  /// all replicas, so every replica reports the same backlog). Blocks up to
  /// 2 s. Thread-safe.
  Status RefreshBacklog();

  static constexpr int kMaxRowsPerPass = 100;
  /// Deadline of one PurgeOwner call.
  static constexpr std::chrono::seconds kCallTimeout{5};
  /// How long a claimed row stays invisible to other passes.
  static constexpr std::chrono::seconds kClaimLease{30};

 private:
  Status Purge(const std::string& owner_id, const rpc::TraceParent& trace, std::stop_token stop);
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

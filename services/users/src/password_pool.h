#pragma once
// Runs Argon2id on a fixed set of worker threads with a bounded queue, so a
// flood of sign-ins occupies at most `workers + queue` gRPC threads and the
// rest of the service keeps answering.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "portico/auth/secrets.h"
#include "portico/core/deadline.h"
#include "portico/core/result.h"

namespace portico::users {

class PasswordPool {
 public:
  PasswordPool(auth::PasswordParams params, int workers, int max_queue);
  ~PasswordPool();
  PasswordPool(const PasswordPool&) = delete;
  PasswordPool& operator=(const PasswordPool&) = delete;

  /// Hashes `password`. Blocks the caller until done. kUnavailable (retry
  /// after 1 s) if the queue is full; kDeadlineExceeded if the work cannot finish in time.
  Result<std::string> Hash(std::string password, Deadline deadline);
  /// True if `password` matches `hash`; same errors as Hash.
  Result<bool> Verify(std::string hash, std::string password, Deadline deadline);

  /// Runs `work` on a worker; the primitive under Hash and Verify. Same
  /// errors; if the deadline passes first, `work` is skipped when it has not
  /// started (it must own what it touches: it may outlive the call).
  Status Execute(std::function<void()> work, Deadline deadline);

  const auth::PasswordParams& params() const { return params_; }
  /// Jobs waiting for a worker right now. Thread-safe.
  std::size_t queued() const;

 private:
  struct Job;
  void Work();

  auth::PasswordParams params_;
  std::size_t max_queue_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;  // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace portico::users

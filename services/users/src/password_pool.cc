#include "password_pool.h"

namespace portico::users {

struct PasswordPool::Job {
  std::function<void()> work;
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;       // guarded by mu
  bool abandoned = false;  // guarded by mu: the caller gave up; skip the work
};

PasswordPool::PasswordPool(auth::PasswordParams params, int workers, int max_queue)
    : params_(params), max_queue_(static_cast<std::size_t>(max_queue)) {
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { Work(); });
}

PasswordPool::~PasswordPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void PasswordPool::Work() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    bool skip;
    {
      std::lock_guard lock(job->mu);
      skip = job->abandoned;
    }
    if (!skip) job->work();
    {
      std::lock_guard lock(job->mu);
      job->done = true;
    }
    job->done_cv.notify_all();
  }
}

std::size_t PasswordPool::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

Status PasswordPool::Execute(std::function<void()> work, Deadline deadline) {
  auto job = std::make_shared<Job>();
  job->work = std::move(work);
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= max_queue_) {
      // The server's own capacity, not the caller's limit: 503, not 429.
      Error busy = Error::Unavailable("too many sign-ins in progress, retry shortly");
      busy.retry_after_seconds = 1;
      return busy;
    }
    queue_.push_back(job);
  }
  cv_.notify_one();
  std::unique_lock lock(job->mu);
  if (!job->done_cv.wait_until(lock, deadline, [&] { return job->done; })) {
    job->abandoned = true;
    return Error{ErrorCode::kDeadlineExceeded, "password check did not finish in time", {}};
  }
  return {};
}

Result<std::string> PasswordPool::Hash(std::string password, Deadline deadline) {
  auto result = std::make_shared<Result<std::string>>(Error::Internal("not run"));
  auto work = [result, password = std::move(password), params = params_] {
    *result = auth::HashPassword(password, params);
  };
  if (auto st = Execute(std::move(work), deadline); !st.ok()) return std::move(st).error();
  return std::move(*result);
}

Result<bool> PasswordPool::Verify(std::string hash, std::string password, Deadline deadline) {
  auto matched = std::make_shared<bool>(false);
  auto work = [matched, hash = std::move(hash), password = std::move(password)] {
    *matched = auth::VerifyPassword(hash, password);
  };
  if (auto st = Execute(std::move(work), deadline); !st.ok()) return std::move(st).error();
  return *matched;
}

}  // namespace portico::users

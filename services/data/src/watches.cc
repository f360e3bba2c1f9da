#include "watches.h"

#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>

#include "items.h"
#include "portico/admin/metrics.h"
#include "portico/log/log.h"
#include "portico/pg/listener.h"

namespace portico::data {
namespace {

prometheus::Gauge& OpenGauge() {
  static prometheus::Gauge& gauge = prometheus::BuildGauge()
                                        .Name("portico_data_watches_open")
                                        .Help("Live change-feed watches (WatchChanges) open.")
                                        .Register(*admin::Registry())
                                        .Add({});
  return gauge;
}

// Upper bound of one feed read: a watch holds a pooled connection only for
// the length of a read, never while it waits.
constexpr std::chrono::seconds kReadBudget{5};

}  // namespace

Watches::Watches(Items& items, std::string database_url, WatchOptions options)
    : items_(items),
      database_url_(std::move(database_url)),
      options_(options),
      open_gauge_(OpenGauge()) {}

Watches::~Watches() { Stop(); }

void Watches::Start() {
  listen_thread_ = std::jthread([this](std::stop_token stop) { Listen(stop); });
}

void Watches::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& [owner, waiter] : waiters_) waiter->cv.notify_all();
  }
  if (listen_thread_.joinable()) {
    listen_thread_.request_stop();
    {
      std::lock_guard lock(listener_mu_);
      if (listener_ != nullptr) listener_->Interrupt();
    }
    listen_thread_.join();
  }
}

int Watches::open() const {
  std::lock_guard lock(mu_);
  return open_;
}

void Watches::WakeOwner(const std::string& owner) {
  std::lock_guard lock(mu_);
  auto [first, last] = waiters_.equal_range(owner);
  for (auto it = first; it != last; ++it) {
    ++it->second->epoch;
    it->second->cv.notify_all();
  }
}

void Watches::WakeAll() {
  std::lock_guard lock(mu_);
  for (auto& [owner, waiter] : waiters_) {
    ++waiter->epoch;
    waiter->cv.notify_all();
  }
}

void Watches::Listen(std::stop_token stop) {
  auto backoff = std::chrono::milliseconds(100);
  bool was_down = false;
  while (!stop.stop_requested()) {
    auto opened = pg::Listener::Open(database_url_, {kChangesChannel}, std::chrono::seconds(5));
    if (!opened.ok()) {
      if (!was_down) {
        log::Warn("change listener cannot connect; watches fall back to polling",
                  {{"error", opened.error().message}});
      }
      was_down = true;
      std::mutex m;
      std::condition_variable_any cv;
      std::unique_lock lock(m);
      cv.wait_for(lock, stop, backoff, [] { return false; });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      continue;
    }
    std::unique_ptr<pg::Listener> listener = std::move(opened).value();
    {
      std::lock_guard lock(listener_mu_);
      listener_ = listener.get();
    }
    if (was_down) log::Info("change listener connected");
    was_down = false;
    backoff = std::chrono::milliseconds(100);
    // Whatever committed while nobody listened was not announced.
    WakeAll();
    while (!stop.stop_requested()) {
      auto got = listener->Wait(std::chrono::seconds(1));
      if (!got.ok()) {
        log::Warn("change listener lost its connection", {{"error", got.error().message}});
        was_down = true;
        break;
      }
      for (const auto& n : *got) WakeOwner(n.payload);
    }
    {
      std::lock_guard lock(listener_mu_);
      listener_ = nullptr;
    }
  }
}

Status Watches::Watch(const std::string& owner, std::string_view collection, std::int64_t since,
                      Deadline end, const std::function<bool(const v1::Change&)>& send,
                      const std::function<bool()>& cancelled,
                      const std::function<void()>& on_open) {
  Waiter waiter;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Error::Unavailable("the service is shutting down");
    if (open_ >= options_.max_watches) {
      Error e{
          ErrorCode::kResourceExhausted, "too many change watches are open; try again later", {}};
      e.retry_after_seconds = 5;
      return e;
    }
    ++open_;
    open_gauge_.Increment();
    // Registered before the first read: a change that commits after a read
    // started always finds the waiter and bumps its epoch.
    waiters_.emplace(owner, &waiter);
  }
  struct Unregister {
    Watches* self;
    Waiter* waiter;
    const std::string& owner;
    ~Unregister() {
      std::lock_guard lock(self->mu_);
      auto [first, last] = self->waiters_.equal_range(owner);
      for (auto it = first; it != last; ++it) {
        if (it->second == waiter) {
          self->waiters_.erase(it);
          break;
        }
      }
      --self->open_;
      self->open_gauge_.Decrement();
    }
  } unregister{this, &waiter, owner};
  bool on_open_done = false;

  for (;;) {
    std::uint64_t seen;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return Error::Unavailable("the service is shutting down");
      seen = waiter.epoch;
    }
    if (cancelled()) return Error::Unavailable("the client went away");
    if (Clock::now() >= end) {
      return Error{ErrorCode::kDeadlineExceeded, "the watch reached its deadline", {}};
    }
    auto page = items_.WatchPage(owner, collection, since, options_.page_size,
                                 std::min(end, DeadlineIn(kReadBudget)));
    if (!page.ok()) return std::move(page).error();
    if (on_open && !on_open_done) {
      on_open();
      on_open_done = true;
    }
    for (const auto& change : page->changes()) {
      if (!send(change)) return Error::Unavailable("the client went away");
    }
    since = page->next_since();
    if (page->changes_size() >= options_.page_size) continue;  // more backlog

    // Wait for a wake-up newer than the read, the re-poll interval, the end
    // or shutdown, looking at `cancelled` (which cannot wake us) meanwhile.
    const Deadline repoll = std::min(end, DeadlineIn(options_.poll_interval));
    std::unique_lock lock(mu_);
    while (waiter.epoch == seen && !stopping_ && Clock::now() < repoll) {
      waiter.cv.wait_until(lock, std::min(repoll, DeadlineIn(options_.cancel_check)));
      if (waiter.epoch != seen || stopping_) break;
      lock.unlock();
      const bool gone = cancelled();
      lock.lock();
      if (gone) return Error::Unavailable("the client went away");
    }
  }
}

}  // namespace portico::data

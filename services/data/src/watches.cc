#include "watches.h"

#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <functional>

#include "items.h"
#include "portico/admin/metrics.h"
#include "portico/log/log.h"
#include "portico/pg/listener.h"
#include "portico/rpc/executor.h"

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
// When the executor's queue is full, a watch asks again this much later
// (the service is overloaded; watchers can wait a little).
constexpr std::chrono::milliseconds kBusyRetry{100};

}  // namespace

// One open watch. Its flags say what it is doing; at most one read runs and
// at most one batch is being delivered, never both at once, so the feed
// position `since` is only touched by the read in flight.
class Watch {
 public:
  Watch(std::string owner, std::string collection, std::int64_t since, Deadline end,
        std::shared_ptr<WatchSink> sink)
      : owner(std::move(owner)),
        collection(std::move(collection)),
        end(end),
        since(since),
        sink(std::move(sink)) {}

  const std::string owner;
  const std::string collection;
  const Deadline end;

  std::mutex mu;
  std::int64_t since;                   // written only by the read in flight
  std::shared_ptr<WatchSink> sink;      // null once over; guarded by mu
  bool opened = false;                  // the first read succeeded; guarded by mu
  bool reading = false;                 // a read is queued or running; guarded by mu
  bool writing = false;                 // the sink is delivering a batch; guarded by mu
  bool dirty = false;                   // woken while reading or writing: read again; guarded by mu
  bool more = false;                    // the last page was full: read on; guarded by mu
  bool done = false;                    // ended or closed; guarded by mu
  Deadline timer_at = Deadline::max();  // earliest pending timer entry; guarded by mu
};

Watches::Watches(Items& items, rpc::Executor& executor, std::string database_url,
                 WatchOptions options)
    : items_(items),
      executor_(executor),
      database_url_(std::move(database_url)),
      options_(options),
      open_gauge_(OpenGauge()) {}

Watches::~Watches() { Stop(); }

void Watches::Start() {
  listen_thread_ = std::jthread([this](std::stop_token stop) { Listen(stop); });
  timer_thread_ = std::jthread([this](std::stop_token stop) { RunTimers(stop); });
}

void Watches::Stop() {
  std::vector<std::shared_ptr<Watch>> all;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& [owner, w] : watches_) all.push_back(w);
  }
  for (auto& w : all) Finish(w, Error::Unavailable("the service is shutting down"));
  if (listen_thread_.joinable()) {
    listen_thread_.request_stop();
    {
      std::lock_guard lock(listener_mu_);
      if (listener_ != nullptr) listener_->Interrupt();
    }
    listen_thread_.join();
  }
  if (timer_thread_.joinable()) {
    timer_thread_.request_stop();
    timer_thread_.join();
  }
  // Reads still queued or running refer to this object: wait them out (each
  // is bounded by kReadBudget).
  std::unique_lock lock(mu_);
  tasks_done_.wait(lock, [this] { return tasks_ == 0; });
}

int Watches::open() const {
  std::lock_guard lock(mu_);
  return static_cast<int>(watches_.size());
}

Result<std::shared_ptr<Watch>> Watches::Open(const std::string& owner, std::string_view collection,
                                             std::int64_t since, Deadline end,
                                             std::shared_ptr<WatchSink> sink) {
  auto w = std::make_shared<Watch>(owner, std::string(collection), since, end, std::move(sink));
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Error::Unavailable("the service is shutting down");
    if (static_cast<int>(watches_.size()) >= options_.max_watches) {
      Error e{
          ErrorCode::kResourceExhausted, "too many change watches are open; try again later", {}};
      e.retry_after_seconds = 5;
      return e;
    }
    // Registered before the first read: a change that commits after the
    // read started finds the watch and makes it read again.
    watches_.emplace(owner, w);
    open_gauge_.Increment();
  }
  {
    std::lock_guard lock(w->mu);
    w->reading = true;
    // The end of the watch's life is a timer entry of its own.
    ScheduleLocked(w, end);
  }
  StartRead(w);
  return w;
}

void Watches::Delivered(const std::shared_ptr<Watch>& w) {
  {
    std::lock_guard lock(w->mu);
    w->writing = false;
    if (w->done) return;
    if (!w->more && !w->dirty) {
      ScheduleLocked(w, DeadlineIn(options_.poll_interval));
      return;
    }
    w->more = false;
    w->dirty = false;
    w->reading = true;
  }
  StartRead(w);
}

void Watches::Close(const std::shared_ptr<Watch>& w) {
  {
    std::lock_guard lock(w->mu);
    if (w->done) return;
    w->done = true;
    w->sink.reset();
  }
  Forget(w.get());
}

void Watches::Finish(const std::shared_ptr<Watch>& w, Error why) {
  std::shared_ptr<WatchSink> sink;
  {
    std::lock_guard lock(w->mu);
    if (w->done) return;
    w->done = true;
    sink = std::move(w->sink);
  }
  Forget(w.get());
  if (sink) sink->End(std::move(why));
}

void Watches::Forget(Watch* w) {
  std::lock_guard lock(mu_);
  auto [first, last] = watches_.equal_range(w->owner);
  for (auto it = first; it != last; ++it) {
    if (it->second.get() == w) {
      watches_.erase(it);
      open_gauge_.Decrement();
      return;
    }
  }
}

void Watches::Poke(const std::shared_ptr<Watch>& w) {
  {
    std::lock_guard lock(w->mu);
    if (w->done) return;
    if (w->reading || w->writing) {
      w->dirty = true;
      return;
    }
    w->reading = true;
  }
  StartRead(w);
}

void Watches::StartRead(const std::shared_ptr<Watch>& w) {
  {
    std::lock_guard lock(mu_);
    ++tasks_;
  }
  const bool queued = executor_.TrySubmit([this, w] {
    if (Clock::now() >= w->end) {
      Finish(w, Error{ErrorCode::kDeadlineExceeded, "the watch reached its deadline", {}});
    } else {
      ReadDone(w, items_.WatchPage(w->owner, w->collection, w->since, options_.page_size,
                                   std::min(w->end, DeadlineIn(kReadBudget))));
    }
    std::lock_guard lock(mu_);
    if (--tasks_ == 0) tasks_done_.notify_all();
  });
  if (queued) return;
  {
    std::lock_guard lock(mu_);
    if (--tasks_ == 0) tasks_done_.notify_all();
  }
  std::lock_guard lock(w->mu);
  w->reading = false;
  if (!w->done) ScheduleLocked(w, DeadlineIn(kBusyRetry));
}

void Watches::ReadDone(const std::shared_ptr<Watch>& w, Result<v1::ListChangesResponse> page) {
  if (!page.ok()) {
    {
      std::lock_guard lock(w->mu);
      w->reading = false;
    }
    Finish(w, std::move(page).error());
    return;
  }
  std::shared_ptr<WatchSink> sink;
  bool open_now = false;
  bool read_again = false;
  std::vector<v1::Change> batch;
  {
    std::lock_guard lock(w->mu);
    w->reading = false;
    if (w->done) return;
    sink = w->sink;
    if (!w->opened) {
      w->opened = true;
      open_now = true;
    }
    if (page->changes_size() > 0) {
      w->since = page->next_since();
      w->more = page->changes_size() >= options_.page_size;
      w->writing = true;
      batch.reserve(static_cast<std::size_t>(page->changes_size()));
      for (auto& change : *page->mutable_changes()) batch.push_back(std::move(change));
    } else if (w->dirty) {
      w->dirty = false;
      w->reading = true;
      read_again = true;
    } else {
      ScheduleLocked(w, DeadlineIn(options_.poll_interval));
    }
  }
  if (open_now) sink->Opened();
  if (!batch.empty()) sink->Deliver(w, std::move(batch));
  if (read_again) StartRead(w);
}

void Watches::ScheduleLocked(const std::shared_ptr<Watch>& w, Deadline at) {
  at = std::min(at, w->end);
  // One pending entry per watch is enough: an entry that fires earlier than
  // needed only costs a read. A sooner one (a busy retry) is added.
  if (at >= w->timer_at && at != w->end) return;
  if (at < w->timer_at) w->timer_at = at;
  {
    std::lock_guard lock(timer_mu_);
    timers_.push_back({at, w});
    std::push_heap(timers_.begin(), timers_.end(), std::greater<>());
  }
  timer_cv_.notify_one();
}

void Watches::RunTimers(std::stop_token stop) {
  std::unique_lock lock(timer_mu_);
  while (!stop.stop_requested()) {
    if (timers_.empty()) {
      timer_cv_.wait(lock, stop, [this] { return !timers_.empty(); });
      continue;
    }
    const Deadline at = timers_.front().at;
    if (Clock::now() < at) {
      timer_cv_.wait_until(lock, stop, at,
                           [this, at] { return !timers_.empty() && timers_.front().at < at; });
      continue;
    }
    std::pop_heap(timers_.begin(), timers_.end(), std::greater<>());
    TimerEntry entry = std::move(timers_.back());
    timers_.pop_back();
    lock.unlock();
    if (auto w = entry.watch.lock()) {
      bool expired = false;
      {
        std::lock_guard wl(w->mu);
        if (w->timer_at == entry.at) w->timer_at = Deadline::max();
        expired = Clock::now() >= w->end;
      }
      if (expired) {
        Finish(w, Error{ErrorCode::kDeadlineExceeded, "the watch reached its deadline", {}});
      } else {
        Poke(w);
      }
    }
    lock.lock();
  }
}

void Watches::WakeOwner(const std::string& owner) {
  std::vector<std::shared_ptr<Watch>> woken;
  {
    std::lock_guard lock(mu_);
    auto [first, last] = watches_.equal_range(owner);
    for (auto it = first; it != last; ++it) woken.push_back(it->second);
  }
  for (auto& w : woken) Poke(w);
}

void Watches::WakeAll() {
  std::vector<std::shared_ptr<Watch>> woken;
  {
    std::lock_guard lock(mu_);
    for (auto& [owner, w] : watches_) woken.push_back(w);
  }
  for (auto& w : woken) Poke(w);
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

}  // namespace portico::data

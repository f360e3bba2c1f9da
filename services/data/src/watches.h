#pragma once
// Live change feeds (DataService/WatchChanges): the backlog after `since`,
// then each change as it commits, in seq order, never skipping or repeating
// one. Every read is Items::WatchPage (the ListChanges query), so the feed's
// no-skip guarantee (items.cc) holds for watches too. Wake-ups come from
// PostgreSQL NOTIFY (one listening connection per process, fanned out to
// the watchers of the notified owner) and from a periodic re-poll, so a lost
// notification delays a change but never loses it.
//
// A watch holds no thread: it is a little state machine. Reads run as tasks
// on the service's rpc::Executor (one at a time per watch); delivery goes
// through a WatchSink (the gRPC stream), which says when it has written a
// batch; re-polls and the end of a watch's life are entries in one timer
// thread's queue. An open watch costs its state and its stream, nothing else.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "portico/core/deadline.h"
#include "portico/core/result.h"
#include "portico/data/v1/data.pb.h"

namespace prometheus {
class Gauge;
}
namespace portico::pg {
class Listener;
}
namespace portico::rpc {
class Executor;
}

namespace portico::data {

class Items;

struct WatchOptions {
  int max_watches = 10000;                        // beyond: kResourceExhausted
  std::chrono::milliseconds poll_interval{5000};  // re-read without a notification
  int page_size = 500;                            // changes per read of the backlog
};

class Watch;  // one open watch; opaque to callers

/// Where a watch's output goes: the transport (a gRPC server stream).
/// Watches calls a sink from its own and the executor's threads, and may
/// call it from two at once (End while a delivery starts): a sink
/// serializes itself, and ignores what comes after End. Implementations
/// must not block.
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  /// The first read succeeded: the request is valid and the stream is open.
  virtual void Opened() = 0;
  /// Write these changes in order, then call Watches::Delivered(watch)
  /// (from any thread). Not called again before that.
  virtual void Deliver(std::shared_ptr<Watch> watch, std::vector<v1::Change> changes) = 0;
  /// The watch is over (the last call): the read's error (SINCE_TOO_OLD,
  /// kUnauthenticated once the owner is purged, kInvalidArgument, ...),
  /// kUnavailable when the service stops, kDeadlineExceeded at its end.
  virtual void End(Error why) = 0;
};

/// Thread-safe. Start and Stop from the owning thread; everything else from
/// any thread.
class Watches {
 public:
  /// `database_url` opens the listening connection (not from the pool).
  /// Reads run on `executor`, which must outlive the Watches.
  Watches(Items& items, rpc::Executor& executor, std::string database_url, WatchOptions options);
  ~Watches();  // Stop()
  Watches(const Watches&) = delete;
  Watches& operator=(const Watches&) = delete;

  /// Starts the listener thread (it reconnects by itself, waking every
  /// watcher after a reconnect since notifications may have been missed)
  /// and the timer thread.
  void Start();
  /// Ends every watch (End with kUnavailable "the service is shutting
  /// down") and refuses new ones; stops both threads. Idempotent.
  void Stop();

  /// Opens a watch of `owner`'s `collection` from `since` that lasts until
  /// `end`, and starts its first read. kResourceExhausted (retry after 5 s)
  /// if max_watches are open; kUnavailable when stopped. `sink` must stay
  /// valid until End was called or Close returned.
  Result<std::shared_ptr<Watch>> Open(const std::string& owner, std::string_view collection,
                                      std::int64_t since, Deadline end,
                                      std::shared_ptr<WatchSink> sink);
  /// The sink wrote the last batch: read on if there may be more.
  void Delivered(const std::shared_ptr<Watch>& watch);
  /// The client went away (or the stream ended): forget the watch. The sink
  /// is not called after Close returns. Idempotent.
  void Close(const std::shared_ptr<Watch>& watch);

  /// Watches open now.
  int open() const;

 private:
  struct TimerEntry {
    Deadline at;
    std::weak_ptr<Watch> watch;
    bool operator>(const TimerEntry& o) const { return at > o.at; }
  };
  void Listen(std::stop_token stop);
  void RunTimers(std::stop_token stop);
  void WakeOwner(const std::string& owner);
  void WakeAll();
  /// Asks for a read: starts one, or marks the watch to read again after
  /// the read or delivery under way.
  void Poke(const std::shared_ptr<Watch>& watch);
  /// Queues the read of a watch whose `reading` the caller has set.
  void StartRead(const std::shared_ptr<Watch>& watch);
  void ReadDone(const std::shared_ptr<Watch>& watch, Result<v1::ListChangesResponse> page);
  void ScheduleLocked(const std::shared_ptr<Watch>& watch, Deadline at);  // watch->mu held
  void Finish(const std::shared_ptr<Watch>& watch, Error why);
  void Forget(Watch* watch);

  Items& items_;
  rpc::Executor& executor_;
  std::string database_url_;
  WatchOptions options_;
  prometheus::Gauge& open_gauge_;

  mutable std::mutex mu_;
  std::multimap<std::string, std::shared_ptr<Watch>> watches_;  // by owner; guarded by mu_
  bool stopping_ = false;                                       // guarded by mu_
  int tasks_ = 0;  // reads queued on or running in the executor; guarded by mu_
  std::condition_variable tasks_done_;

  std::mutex timer_mu_;
  std::condition_variable_any timer_cv_;
  std::vector<TimerEntry> timers_;  // a min-heap on `at`; guarded by timer_mu_

  std::jthread listen_thread_;
  std::jthread timer_thread_;
  std::mutex listener_mu_;
  pg::Listener* listener_ = nullptr;  // the thread's current one, for Stop; guarded by listener_mu_
};

}  // namespace portico::data

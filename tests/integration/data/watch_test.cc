// Live change watches (Watches) against a real PostgreSQL: NOTIFY wake-ups,
// the re-poll safety net, ordering under concurrent writers, the bound on
// open watches, purge and shutdown.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <span>
#include <thread>

#include "items.h"
#include "portico/core/uuid.h"
#include "portico/pg/migrate.h"
#include "portico/pg/pool.h"
#include "portico/testing/pg_cluster.h"
#include "watches.h"

namespace portico::data {
std::span<const pg::Migration> Migrations();

namespace {

using namespace std::chrono_literals;

Deadline Soon() { return DeadlineIn(20s); }

google::protobuf::Struct Data(const std::string& json) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok()) << json;
  return s;
}

// What one watch received, filled from its own thread.
struct Received {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<v1::Change> changes;  // guarded by mu
  bool opened = false;              // guarded by mu

  bool Send(const v1::Change& c) {
    std::lock_guard lock(mu);
    changes.push_back(c);
    cv.notify_all();
    return true;
  }
  // Waits until `pred(changes)` holds, for up to `timeout`.
  bool WaitFor(const std::function<bool(const std::vector<v1::Change>&)>& pred,
               std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return pred(changes); });
  }
  std::vector<v1::Change> Snapshot() {
    std::lock_guard lock(mu);
    return changes;
  }
};

auto UpToSeq(std::int64_t seq) {
  return [seq](const std::vector<v1::Change>& c) { return !c.empty() && c.back().seq() >= seq; };
}

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = testing::SharedPgCluster().CreateUniqueDatabase("watch");
    auto pool = pg::Pool::Create({.url = url_, .size = 8});
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(*pool);
    ASSERT_TRUE(pg::Migrate(*pool_, Migrations(), "portico_data", Soon()).ok());
    items_ = std::make_unique<Items>(*pool_, ItemLimits{});
  }

  // Runs a watch of (owner, "notes") from `since` on its own thread.
  std::future<Status> StartWatch(Watches& w, Received& r, const std::string& owner,
                                 std::int64_t since = 0, std::atomic<bool>* cancelled = nullptr) {
    return std::async(std::launch::async, [&w, &r, owner, since, cancelled] {
      return w.Watch(
          owner, "notes", since, DeadlineIn(60s), [&r](const v1::Change& c) { return r.Send(c); },
          [cancelled] { return cancelled != nullptr && cancelled->load(); },
          [&r] {
            std::lock_guard lock(r.mu);
            r.opened = true;
            r.cv.notify_all();
          });
    });
  }

  std::int64_t LastSeq(const std::string& owner) {
    auto page = items_->ListChanges(owner, "notes", 0, 1000, Soon());
    EXPECT_TRUE(page.ok());
    return page.ok() ? page->next_since() : -1;
  }

  std::string url_;
  std::unique_ptr<pg::Pool> pool_;
  std::unique_ptr<Items> items_;
  const std::string alice_ = NewUuidV7();
  const std::string bob_ = NewUuidV7();
};

TEST_F(WatchTest, BacklogThenLiveChangesInSeqOrderUnderConcurrentWriters) {
  // A re-poll far away: only notifications can deliver promptly.
  Watches watches(*items_, url_, {.max_watches = 4, .poll_interval = 60s});
  watches.Start();
  auto first = items_->Create(alice_, "notes", Data(R"({"n":0})"), Soon());
  ASSERT_TRUE(first.ok());
  Received got;
  std::atomic<bool> stop{false};
  auto done = StartWatch(watches, got, alice_, 0, &stop);
  ASSERT_TRUE(got.WaitFor(UpToSeq(1)));

  // Writers of the same owner race; one also updates and deletes.
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        auto c =
            items_->Create(alice_, "notes", Data(R"({"t":)" + std::to_string(t) + "}"), Soon());
        ASSERT_TRUE(c.ok());
        if (i % 3 == 0) {
          ASSERT_TRUE(items_->Delete(alice_, "notes", c->id(), {}, Soon()).ok());
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  // Bob's writes never reach Alice's watch.
  ASSERT_TRUE(items_->Create(bob_, "notes", Data("{}"), Soon()).ok());
  const std::int64_t last = LastSeq(alice_);
  ASSERT_TRUE(got.WaitFor(UpToSeq(last), 10s)) << "got " << got.Snapshot().size();

  // Every seq once, in order, each the latest change of its item; replaying
  // them gives what ListChanges gives from 0.
  const auto changes = got.Snapshot();
  std::map<std::string, v1::Change> replay;
  for (std::size_t i = 0; i < changes.size(); ++i) {
    if (i > 0) {
      EXPECT_LT(changes[i - 1].seq(), changes[i].seq());
    }
    EXPECT_EQ(changes[i].item().owner_id(), alice_);
    replay[changes[i].item().id()] = changes[i];
  }
  auto feed = items_->ListChanges(alice_, "notes", 0, 1000, Soon());
  ASSERT_TRUE(feed.ok());
  ASSERT_EQ(static_cast<std::size_t>(feed->changes_size()), replay.size());
  for (const auto& c : feed->changes()) {
    ASSERT_TRUE(replay.contains(c.item().id()));
    EXPECT_EQ(replay[c.item().id()].seq(), c.seq());
    EXPECT_EQ(replay[c.item().id()].kind(), c.kind());
  }
  EXPECT_EQ(watches.open(), 1);
  stop = true;
  EXPECT_EQ(done.get().error().code, ErrorCode::kUnavailable);  // the client went away
  EXPECT_EQ(watches.open(), 0);
}

TEST_F(WatchTest, ThePeriodicReadDeliversWhenNoNotificationComes) {
  // The listener cannot connect at all: only the re-poll is left.
  Watches watches(*items_, "postgresql://127.0.0.1:1/none?connect_timeout=1",
                  {.max_watches = 4, .poll_interval = 200ms});
  watches.Start();
  Received got;
  std::atomic<bool> stop{false};
  auto done = StartWatch(watches, got, alice_, 0, &stop);
  ASSERT_TRUE(got.WaitFor([&](const auto&) { return got.opened; }));
  ASSERT_TRUE(items_->Create(alice_, "notes", Data("{}"), Soon()).ok());
  EXPECT_TRUE(got.WaitFor(UpToSeq(1), 5s));
  stop = true;
  (void)done.get();
}

TEST_F(WatchTest, ErrorsBeforeOpeningAreTheFeedsOwn) {
  Watches watches(*items_, url_, {.max_watches = 4});
  watches.Start();
  ASSERT_TRUE(items_->Create(alice_, "notes", Data("{}"), Soon()).ok());
  Received got;
  auto too_new = StartWatch(watches, got, alice_, 99).get();
  ASSERT_FALSE(too_new.ok());
  EXPECT_EQ(too_new.error().reason, kReasonSinceTooOld);
  EXPECT_FALSE(got.opened);
  auto bad = watches.Watch(
      alice_, "Bad Name", 0, DeadlineIn(5s), [](const v1::Change&) { return true; },
      [] { return false; });
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(WatchTest, APurgeEndsTheOwnersWatchUnauthenticated) {
  Watches watches(*items_, url_, {.max_watches = 4, .poll_interval = 60s});
  watches.Start();
  ASSERT_TRUE(items_->Create(alice_, "notes", Data("{}"), Soon()).ok());
  Received got;
  auto done = StartWatch(watches, got, alice_, 0);
  ASSERT_TRUE(got.WaitFor(UpToSeq(1)));
  ASSERT_TRUE(items_->PurgeOwner(alice_, Soon()).ok());
  ASSERT_EQ(done.wait_for(10s), std::future_status::ready);
  auto st = done.get();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kUnauthenticated);
}

TEST_F(WatchTest, WatchesAreBoundedAndStopEndsThemAtOnce) {
  Watches watches(*items_, url_, {.max_watches = 1, .poll_interval = 60s});
  watches.Start();
  Received a, b;
  auto first = StartWatch(watches, a, alice_);
  ASSERT_TRUE(a.WaitFor([&](const auto&) { return a.opened; }));
  auto second = StartWatch(watches, b, bob_).get();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kResourceExhausted);
  EXPECT_GT(second.error().retry_after_seconds, 0);

  const auto start = Clock::now();
  watches.Stop();
  ASSERT_EQ(first.wait_for(5s), std::future_status::ready);
  EXPECT_LT(Clock::now() - start, 3s);
  EXPECT_EQ(first.get().error().code, ErrorCode::kUnavailable);
  // No new watch after Stop.
  EXPECT_EQ(StartWatch(watches, b, bob_).get().error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(watches.open(), 0);
}

}  // namespace
}  // namespace portico::data

// Live change watches (Watches) against a real PostgreSQL: NOTIFY wake-ups,
// the re-poll safety net, ordering under concurrent writers, the bound on
// open watches, purge and shutdown.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <thread>

#include "items.h"
#include "portico/core/uuid.h"
#include "portico/pg/migrate.h"
#include "portico/pg/pool.h"
#include "portico/rpc/executor.h"
#include "portico/testing/pg_cluster.h"
#include "watches.h"

namespace portico::data {
std::span<const pg::Migration> Migrations();

namespace {

using namespace std::chrono_literals;

Deadline Soon() { return DeadlineIn(20s); }

// An item's data as the API takes it: JSON text.
std::string Data(const std::string& json) { return json; }

// A watch's sink that records what it got, as the gRPC stream would write
// it; it acknowledges every batch at once.
class Received final : public WatchSink {
 public:
  explicit Received(Watches& watches) : watches_(watches) {}

  void Opened() override {
    std::lock_guard lock(mu_);
    opened_ = true;
    cv_.notify_all();
  }
  void Deliver(std::shared_ptr<Watch> watch, std::vector<v1::Change> changes) override {
    {
      std::lock_guard lock(mu_);
      for (auto& c : changes) changes_.push_back(std::move(c));
      cv_.notify_all();
    }
    watches_.Delivered(watch);
  }
  void End(Error why) override {
    std::lock_guard lock(mu_);
    ended_ = std::move(why);
    cv_.notify_all();
  }

  // Waits until `pred(changes)` holds, for up to `timeout`.
  bool WaitFor(const std::function<bool(const std::vector<v1::Change>&)>& pred,
               std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return pred(changes_); });
  }
  bool WaitOpened(std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return opened_; });
  }
  // How the watch ended, once it has (nullopt after `timeout`).
  std::optional<Error> WaitEnd(std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return ended_.has_value(); });
    return ended_;
  }
  std::vector<v1::Change> Snapshot() {
    std::lock_guard lock(mu_);
    return changes_;
  }
  bool opened() {
    std::lock_guard lock(mu_);
    return opened_;
  }

 private:
  Watches& watches_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<v1::Change> changes_;  // guarded by mu_
  bool opened_ = false;              // guarded by mu_
  std::optional<Error> ended_;       // guarded by mu_
};

auto UpToSeq(std::int64_t seq) {
  return [seq](const std::vector<v1::Change>& c) { return !c.empty() && c.back().seq() >= seq; };
}

int ThreadsOfThisProcess() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("Threads:")) return std::stoi(line.substr(8));
  }
  return -1;
}

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = testing::SharedPgCluster().CreateUniqueDatabase("watch");
    auto pool = pg::Pool::Create({.url = url_, .size = 4});
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(*pool);
    ASSERT_TRUE(pg::Migrate(*pool_, Migrations(), "portico_data", Soon()).ok());
    items_ = std::make_unique<Items>(*pool_, ItemLimits{});
  }

  // Opens a watch of (owner, "notes") from `since` into a new sink.
  std::pair<std::shared_ptr<Received>, Result<std::shared_ptr<Watch>>> StartWatch(
      Watches& w, const std::string& owner, std::int64_t since = 0,
      std::string_view collection = "notes") {
    auto got = std::make_shared<Received>(w);
    auto watch = w.Open(owner, collection, since, DeadlineIn(60s), got);
    return {got, std::move(watch)};
  }

  std::int64_t LastSeq(const std::string& owner) {
    auto page = items_->ListChanges(owner, "notes", 0, 1000, Soon());
    EXPECT_TRUE(page.ok());
    return page.ok() ? page->next_since() : -1;
  }

  std::string url_;
  std::unique_ptr<pg::Pool> pool_;
  std::unique_ptr<Items> items_;
  // Reads run here, as in the service: one worker per connection.
  rpc::Executor executor_{{.name = "watch-test", .threads = 4, .max_queue = 100000}};
  const std::string alice_ = NewUuidV7();
  const std::string bob_ = NewUuidV7();
};

TEST_F(WatchTest, BacklogThenLiveChangesInSeqOrderUnderConcurrentWriters) {
  // A re-poll far away: only notifications can deliver promptly.
  Watches watches(*items_, executor_, url_, {.max_watches = 4, .poll_interval = 60s});
  watches.Start();
  auto first = items_->Create(alice_, "notes", Data(R"({"n":0})"), Soon());
  ASSERT_TRUE(first.ok());
  auto [got_ptr, watch] = StartWatch(watches, alice_, 0);
  ASSERT_TRUE(watch.ok());
  Received& got = *got_ptr;
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
  watches.Close(*watch);  // the client went away
  EXPECT_EQ(watches.open(), 0);
  EXPECT_FALSE(got.WaitEnd(100ms).has_value());  // a closed watch's sink hears nothing more
}

TEST_F(WatchTest, ThePeriodicReadDeliversWhenNoNotificationComes) {
  // The listener cannot connect at all: only the re-poll is left.
  Watches watches(*items_, executor_, "postgresql://127.0.0.1:1/none?connect_timeout=1",
                  {.max_watches = 4, .poll_interval = 200ms});
  watches.Start();
  auto [got, watch] = StartWatch(watches, alice_, 0);
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(got->WaitOpened());
  ASSERT_TRUE(items_->Create(alice_, "notes", Data("{}"), Soon()).ok());
  EXPECT_TRUE(got->WaitFor(UpToSeq(1), 5s));
  watches.Close(*watch);
}

TEST_F(WatchTest, ErrorsBeforeOpeningAreTheFeedsOwn) {
  Watches watches(*items_, executor_, url_, {.max_watches = 4});
  watches.Start();
  ASSERT_TRUE(items_->Create(alice_, "notes", Data("{}"), Soon()).ok());
  auto [got, watch] = StartWatch(watches, alice_, 99);
  ASSERT_TRUE(watch.ok());
  auto too_new = got->WaitEnd();
  ASSERT_TRUE(too_new.has_value());
  EXPECT_EQ(too_new->reason, kReasonSinceTooOld);
  EXPECT_FALSE(got->opened());
  auto [bad, bad_watch] = StartWatch(watches, alice_, 0, "Bad Name");
  ASSERT_TRUE(bad_watch.ok());
  auto why = bad->WaitEnd();
  ASSERT_TRUE(why.has_value());
  EXPECT_EQ(why->code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(watches.open(), 0);
}

TEST_F(WatchTest, APurgeEndsTheOwnersWatchUnauthenticated) {
  Watches watches(*items_, executor_, url_, {.max_watches = 4, .poll_interval = 60s});
  watches.Start();
  ASSERT_TRUE(items_->Create(alice_, "notes", Data("{}"), Soon()).ok());
  auto [got, watch] = StartWatch(watches, alice_, 0);
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(got->WaitFor(UpToSeq(1)));
  ASSERT_TRUE(items_->PurgeOwner(alice_, Soon()).ok());
  auto why = got->WaitEnd();
  ASSERT_TRUE(why.has_value());
  EXPECT_EQ(why->code, ErrorCode::kUnauthenticated);
}

TEST_F(WatchTest, WatchesAreBoundedAndStopEndsThemAtOnce) {
  Watches watches(*items_, executor_, url_, {.max_watches = 1, .poll_interval = 60s});
  watches.Start();
  auto [a, first] = StartWatch(watches, alice_);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(a->WaitOpened());
  auto [b, second] = StartWatch(watches, bob_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kResourceExhausted);
  EXPECT_GT(second.error().retry_after_seconds, 0);

  const auto start = Clock::now();
  watches.Stop();
  auto why = a->WaitEnd(5s);
  EXPECT_LT(Clock::now() - start, 3s);
  ASSERT_TRUE(why.has_value());
  EXPECT_EQ(why->code, ErrorCode::kUnavailable);
  // No new watch after Stop.
  auto [c, third] = StartWatch(watches, bob_);
  EXPECT_EQ(third.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(watches.open(), 0);
}

// A watch holds no thread: 2,000 watches open on 4 workers, the process
// gains no threads, and a change of an owner reaches every one of that
// owner's watchers.
TEST_F(WatchTest, ThousandsOfWatchesHoldNoThreads) {
  Watches watches(*items_, executor_, url_, {.max_watches = 5000, .poll_interval = 60s});
  watches.Start();
  const int threads_before = ThreadsOfThisProcess();
  std::vector<std::shared_ptr<Received>> sinks;
  std::vector<std::shared_ptr<Watch>> handles;
  constexpr int kWatches = 2000;
  for (int i = 0; i < kWatches; ++i) {
    auto [got, watch] = StartWatch(watches, i % 2 == 0 ? alice_ : bob_);
    ASSERT_TRUE(watch.ok());
    sinks.push_back(got);
    handles.push_back(*watch);
  }
  for (auto& s : sinks) ASSERT_TRUE(s->WaitOpened(30s));
  EXPECT_EQ(watches.open(), kWatches);
  EXPECT_EQ(ThreadsOfThisProcess(), threads_before);
  ASSERT_TRUE(items_->Create(alice_, "notes", Data(R"({"to":"all"})"), Soon()).ok());
  for (int i = 0; i < kWatches; i += 2) ASSERT_TRUE(sinks[i]->WaitFor(UpToSeq(1), 30s)) << i;
  for (int i = 1; i < kWatches; i += 2) EXPECT_TRUE(sinks[i]->Snapshot().empty());
  for (auto& h : handles) watches.Close(h);
  EXPECT_EQ(watches.open(), 0);
}

}  // namespace
}  // namespace portico::data

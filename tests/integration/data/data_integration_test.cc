// The data service's logic against a real, throwaway PostgreSQL.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <sodium.h>

#include <atomic>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <thread>

#include "filter.h"
#include "items.h"
#include "portico/transcode/json_object.h"
#include "portico/auth/jwt.h"
#include "portico/core/uuid.h"
#include "portico/pg/migrate.h"
#include "portico/pg/pool.h"
#include "portico/testing/pg_cluster.h"
#include "pruner.h"

namespace portico::data {
std::span<const pg::Migration> Migrations();

namespace {

using google::protobuf::util::MessageDifferencer;

Deadline Soon() { return DeadlineIn(std::chrono::seconds(20)); }

// An item's data as the API takes it: JSON text.
std::string Data(const std::string& json) { return json; }

// JSON text as a value, to compare data regardless of spacing and member
// order (PostgreSQL's jsonb prints `{"b": 2}`, in its own key order).
boost::json::value Json(std::string_view text) {
  boost::system::error_code ec;
  auto v = boost::json::parse(boost::json::string_view(text.data(), text.size()), ec);
  EXPECT_FALSE(ec) << text;
  return v;
}

bool HasMember(std::string_view data, const char* name) {
  return Json(data).as_object().contains(name);
}

Precondition IfMatch(const std::string& header) { return ParseIfMatch(header); }

class ItemsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = testing::SharedPgCluster().CreateUniqueDatabase("data");
    auto pool = pg::Pool::Create({.url = url_, .size = 12});
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(*pool);
    ASSERT_TRUE(pg::Migrate(*pool_, Migrations(), "portico_data", Soon()).ok());
    items_ = std::make_unique<Items>(*pool_, ItemLimits{.max_data_bytes = 1024});
  }

 public:
  // Backends of this test's database waiting on a lock.
  std::int64_t LockWaiters() {
    return Count(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'");
  }

 protected:
  std::int64_t Count(const std::string& sql) {
    auto lease = pool_->Acquire(Soon());
    auto rows = lease->Exec(sql);
    EXPECT_TRUE(rows.ok()) << lease->last_error_message();
    return rows->front().GetInt64(0);
  }
  v1::Item MustCreate(const std::string& collection, const std::string& json,
                      const std::string& owner = "") {
    auto r = items_->Create(owner.empty() ? alice_ : owner, collection, Data(json), Soon());
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? *r : v1::Item();
  }
  std::vector<v1::Item> ListAll(const std::string& owner, const std::string& collection,
                                const std::string& order_by = "", const std::string& filter = "",
                                int page_size = 7) {
    std::vector<v1::Item> out;
    std::string token;
    for (int pages = 0; pages < 1000; ++pages) {
      auto page = items_->List(owner, collection,
                               ListQuery{page_size, token, order_by, filter}, Soon());
      EXPECT_TRUE(page.ok()) << page.error().message;
      if (!page.ok()) break;
      for (const auto& it : page->items()) out.push_back(it);
      token = page->next_page_token();
      if (token.empty()) break;
    }
    return out;
  }

  std::string url_;
  std::unique_ptr<pg::Pool> pool_;
  std::unique_ptr<Items> items_;
  const std::string alice_ = NewUuidV7();
  const std::string bob_ = NewUuidV7();
};

TEST_F(ItemsTest, CreateThenGetRoundTripsJsonWithVersionAndTimes) {
  auto created = items_->Create(alice_, "notes",
                                Data(R"({"title":"a \"quoted\" ' title","n":1.5,"nested":{"x":[1,null,true]}})"),
                                Soon());
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_TRUE(IsUuid(created->id()));
  EXPECT_EQ(created->version(), 1);
  EXPECT_EQ(created->owner_id(), alice_);
  EXPECT_GT(created->create_time().seconds(), 1700000000);
  auto got = items_->Get(alice_, "notes", created->id(), Soon());
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(MessageDifferencer::Equals(*got, *created))
      << got->DebugString() << created->DebugString();
  EXPECT_EQ(Json(got->data()).at("title").as_string(), "a \"quoted\" ' title");
}

TEST_F(ItemsTest, OtherOwnersAndOtherCollectionsSeeNothing) {
  auto created = MustCreate("notes", R"({"a":1})");
  EXPECT_EQ(items_->Get(bob_, "notes", created.id(), Soon()).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(items_->Get(alice_, "other", created.id(), Soon()).error().code,
            ErrorCode::kNotFound);
  EXPECT_EQ(items_->Get(alice_, "notes", "not-a-uuid", Soon()).error().code, ErrorCode::kNotFound);
  auto bobs = items_->List(bob_, "notes", 0, "", Soon());
  ASSERT_TRUE(bobs.ok());
  EXPECT_EQ(bobs->items_size(), 0);
  // Bob can neither write nor delete it.
  EXPECT_EQ(items_->Replace(bob_, "notes", created.id(), Data("{}"), {}, Soon()).error().code,
            ErrorCode::kNotFound);
  EXPECT_EQ(items_->Update(bob_, "notes", created.id(), Data("{}"), {}, Soon()).error().code,
            ErrorCode::kNotFound);
  EXPECT_EQ(items_->Delete(bob_, "notes", created.id(), {}, Soon()).error().code,
            ErrorCode::kNotFound);
  EXPECT_EQ(items_->Get(alice_, "notes", created.id(), Soon())->version(), 1);
}

TEST_F(ItemsTest, InvalidInputIsRejectedAndStoresNothing) {
  for (const char* bad : {"", "Notes", "1abc", "a b", "a/b", "a\"b",
                          "a234567890123456789012345678901234567890123456789012345678901234"}) {
    auto r = items_->Create(alice_, bad, Data("{}"), Soon());
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().fields.at(0).field, "collection");
  }
  EXPECT_TRUE(ValidateCollection("a_b-c9").ok());
  auto big = items_->Create(alice_, "notes", Data(R"({"s":")" + std::string(2000, 'x') + "\"}"),
                            Soon());
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().fields.at(0).field, "data");
  std::string deep = "{\"a\":", tail = "}";
  for (int i = 0; i < transcode::kMaxJsonObjectDepth; ++i) deep += "{\"a\":", tail += "}";  // 65 levels
  auto too_deep = items_->Create(alice_, "notes", Data(deep + "1" + tail), Soon());
  ASSERT_FALSE(too_deep.ok());
  EXPECT_EQ(too_deep.error().fields.at(0).field, "data");
  auto bad_key = items_->Create(alice_, "notes", Data("{}"), "has space", Soon());
  ASSERT_FALSE(bad_key.ok());
  EXPECT_EQ(bad_key.error().fields.at(0).field, "idempotencyKey");
  EXPECT_EQ(Count("SELECT count(*) FROM items"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM changes"), 0);
}

TEST_F(ItemsTest, WritesBumpVersionAndRespectIfMatch) {
  auto item = MustCreate("notes", R"({"a":1,"keep":{"x":1,"y":2}})");
  auto replaced = items_->Replace(alice_, "notes", item.id(), Data(R"({"b":2})"), IfMatch("\"1\""),
                                  Soon());
  ASSERT_TRUE(replaced.ok()) << replaced.error().message;
  EXPECT_EQ(replaced->version(), 2);
  EXPECT_EQ(Json(replaced->data()), Json(R"({"b":2})"));
  EXPECT_GT(google::protobuf::util::TimeUtil::TimestampToMicroseconds(replaced->update_time()),
            google::protobuf::util::TimeUtil::TimestampToMicroseconds(item.update_time()));
  EXPECT_TRUE(MessageDifferencer::Equals(replaced->create_time(), item.create_time()));

  // A stale If-Match changes nothing.
  auto stale = items_->Replace(alice_, "notes", item.id(), Data(R"({"c":3})"), IfMatch("\"1\""),
                               Soon());
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code, ErrorCode::kVersionMismatch);
  EXPECT_EQ(items_->Update(alice_, "notes", item.id(), Data(R"({"c":3})"), IfMatch("W/\"2\""),
                           Soon()).error().code,
            ErrorCode::kVersionMismatch);  // weak tags never match If-Match
  EXPECT_EQ(items_->Delete(alice_, "notes", item.id(), IfMatch("\"7\", \"9\""), Soon())
                .error().code,
            ErrorCode::kVersionMismatch);
  auto now = items_->Get(alice_, "notes", item.id(), Soon());
  EXPECT_EQ(now->version(), 2);
  EXPECT_EQ(Json(now->data()), Json(R"({"b":2})"));

  // Lists, "*" and no If-Match at all succeed.
  auto listed = items_->Update(alice_, "notes", item.id(), Data(R"({"c":3})"),
                               IfMatch("\"5\", \"2\""), Soon());
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->version(), 3);
  auto star = items_->Replace(alice_, "notes", item.id(), Data(R"({"d":4})"), IfMatch("*"), Soon());
  ASSERT_TRUE(star.ok());
  EXPECT_EQ(star->version(), 4);
  EXPECT_TRUE(items_->Delete(alice_, "notes", item.id(), {}, Soon()).ok());
  EXPECT_EQ(items_->Get(alice_, "notes", item.id(), Soon()).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(items_->Delete(alice_, "notes", item.id(), {}, Soon()).error().code,
            ErrorCode::kNotFound);
  EXPECT_EQ(items_->Replace(alice_, "notes", item.id(), Data("{}"), IfMatch("*"), Soon())
                .error().code,
            ErrorCode::kNotFound);
}

TEST_F(ItemsTest, MergePatchFollowsRfc7396) {
  auto item = MustCreate("notes", R"({"a":"b","c":{"d":"e","f":"g"},"arr":[1,2],"gone":1})");
  auto patched = items_->Update(
      alice_, "notes", item.id(),
      Data(R"({"a":"z","c":{"f":null,"n":{"deep":null,"k":1}},"arr":[3],"gone":null,"new":true})"),
      {}, Soon());
  ASSERT_TRUE(patched.ok()) << patched.error().message;
  EXPECT_EQ(Json(patched->data()),
            Json(R"({"a":"z","c":{"d":"e","n":{"k":1}},"arr":[3],"new":true})"))
      << patched->data();
  EXPECT_EQ(patched->version(), 2);
  // A patch that makes the data too large is rejected and changes nothing.
  auto big = items_->Update(alice_, "notes", item.id(),
                            Data(R"({"s":")" + std::string(2000, 'x') + "\"}"), {}, Soon());
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().fields.at(0).field, "data");
  EXPECT_EQ(items_->Get(alice_, "notes", item.id(), Soon())->version(), 2);
}

TEST_F(ItemsTest, ConcurrentWritersOnOneVersionNeverBothWin) {
  for (int round = 0; round < 3; ++round) {
    auto item = MustCreate("race", R"({"n":0})");
    constexpr int kThreads = 12;
    std::atomic<int> won{0}, lost{0}, other{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        const auto pre = IfMatch("\"1\"");
        const auto data = Data("{\"t\":" + std::to_string(t) + "}");
        Status st;
        if (t % 3 == 0) {
          st = items_->Delete(alice_, "race", item.id(), pre, Soon());
        } else {
          auto r = t % 3 == 1 ? items_->Replace(alice_, "race", item.id(), data, pre, Soon())
                              : items_->Update(alice_, "race", item.id(), data, pre, Soon());
          if (!r.ok()) st = std::move(r).error();
        }
        if (st.ok()) {
          ++won;
        } else if (st.error().code == ErrorCode::kVersionMismatch ||
                   st.error().code == ErrorCode::kNotFound) {
          ++lost;
        } else {
          ++other;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(won.load(), 1);
    EXPECT_EQ(lost.load(), kThreads - 1);
    EXPECT_EQ(other.load(), 0);
    auto now = items_->Get(alice_, "race", item.id(), Soon());
    if (now.ok()) {
      EXPECT_EQ(now->version(), 2);
    }
  }
}

TEST_F(ItemsTest, ListCollectionsCountsItemsPerCollection) {
  for (int i = 0; i < 3; ++i) MustCreate("notes", "{}");
  auto todo = MustCreate("todo", "{}");
  MustCreate("other", "{}", bob_);
  auto list = items_->ListCollections(alice_, Soon());
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->collections_size(), 2);
  EXPECT_EQ(list->collections(0).name(), "notes");
  EXPECT_EQ(list->collections(0).item_count(), 3);
  EXPECT_EQ(list->collections(1).name(), "todo");
  EXPECT_EQ(list->collections(1).item_count(), 1);
  ASSERT_TRUE(items_->Delete(alice_, "todo", todo.id(), {}, Soon()).ok());
  EXPECT_EQ(items_->ListCollections(alice_, Soon())->collections_size(), 1);
}

// ---------------------------------------------------------------- feed

// A client's copy of a collection, built only from the feed.
struct Replica {
  std::map<std::string, v1::Item> items;
  std::int64_t since = 0;
  void Apply(const v1::ListChangesResponse& page) {
    for (const auto& c : page.changes()) {
      EXPECT_GT(c.seq(), since) << "the feed went backwards";
      since = c.seq();
      if (c.kind() == v1::Change::DELETE) {
        items.erase(c.item().id());
      } else {
        items[c.item().id()] = c.item();
      }
    }
    EXPECT_EQ(page.next_since(), since);
  }
};

void SyncAll(Items& items, const std::string& owner, const std::string& collection,
             Replica* replica, int page_size = 5) {
  for (int i = 0; i < 10000; ++i) {
    auto page = items.ListChanges(owner, collection, replica->since, page_size, Soon());
    ASSERT_TRUE(page.ok()) << page.error().message;
    replica->Apply(*page);
    if (page->changes_size() < page_size) return;
  }
}

TEST_F(ItemsTest, FeedHasUpsertsAndTombstonesInCommitOrder) {
  auto a = MustCreate("notes", R"({"a":1})");
  auto b = MustCreate("notes", R"({"b":1})");
  MustCreate("elsewhere", R"({"x":1})");
  auto a2 = items_->Update(alice_, "notes", a.id(), Data(R"({"a":2})"), {}, Soon());
  ASSERT_TRUE(a2.ok());
  ASSERT_TRUE(items_->Delete(alice_, "notes", b.id(), {}, Soon()).ok());
  auto feed = items_->ListChanges(alice_, "notes", 0, 100, Soon());
  ASSERT_TRUE(feed.ok()) << feed.error().message;
  // One change per item, the latest: a's update (seq 4), b's tombstone (seq 5).
  ASSERT_EQ(feed->changes_size(), 2);
  EXPECT_EQ(feed->changes(0).kind(), v1::Change::UPSERT);
  EXPECT_EQ(feed->changes(0).seq(), 4);
  EXPECT_TRUE(MessageDifferencer::Equals(feed->changes(0).item(), *a2));
  EXPECT_EQ(feed->changes(1).kind(), v1::Change::DELETE);
  EXPECT_EQ(feed->changes(1).seq(), 5);
  EXPECT_EQ(feed->changes(1).item().id(), b.id());
  EXPECT_EQ(feed->changes(1).item().version(), 2);
  EXPECT_TRUE(feed->changes(1).item().data().empty());
  EXPECT_EQ(feed->next_since(), 5);
  auto after = items_->ListChanges(alice_, "notes", 5, 100, Soon());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->changes_size(), 0);
  EXPECT_EQ(after->next_since(), 5);
  // Bob's feed is his own.
  EXPECT_EQ(items_->ListChanges(bob_, "notes", 0, 100, Soon())->changes_size(), 0);
  EXPECT_EQ(items_->ListChanges(alice_, "notes", -1, 10, Soon()).error().fields.at(0).field,
            "since");
  EXPECT_EQ(items_->ListChanges(alice_, "notes", 0, 5000, Soon()).error().fields.at(0).field,
            "pageSize");
  // A since beyond the last change is not a position of this feed.
  EXPECT_EQ(items_->ListChanges(alice_, "notes", 99, 10, Soon()).error().code,
            ErrorCode::kFailedPrecondition);
}

// A write that commits late must not be skipped by a reader that has already
// read a later one. A trigger makes one create sleep inside its transaction
// (after it took its seq); a second create starts meanwhile, and a reader
// syncs throughout. The reader must end with both items.
TEST_F(ItemsTest, ALateCommitIsNeverSkippedByTheFeed) {
  {
    auto lease = pool_->Acquire(Soon());
    ASSERT_TRUE(lease->ExecScript(
        "CREATE FUNCTION slow_items() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.data @> '{\"slow\":true}' THEN PERFORM pg_sleep(0.4); END IF; RETURN NEW; END $$;"
        "CREATE TRIGGER slow_items BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION "
        "slow_items();").ok());
  }
  MustCreate("feed", R"({"first":true})");
  Replica reader;
  SyncAll(*items_, alice_, "feed", &reader);
  std::atomic<bool> done{false};
  std::thread slow([&] { MustCreate("feed", R"({"slow":true})"); });
  // Wait (by observation, not by time) until the slow writer sits in pg_sleep.
  for (int i = 0; i < 2000 && Count("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                    "current_database() AND wait_event = 'PgSleep'") == 0;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::thread fast([&] { MustCreate("feed", R"({"fast":true})"); });
  std::thread read([&] {
    while (!done) SyncAll(*items_, alice_, "feed", &reader, 1);
  });
  slow.join();
  fast.join();
  done = true;
  read.join();
  SyncAll(*items_, alice_, "feed", &reader);
  EXPECT_EQ(reader.items.size(), 3u);
  std::set<std::string> keys;
  for (const auto& [id, item] : reader.items) {
    const boost::json::value data = Json(item.data());
    for (const auto& member : data.as_object()) keys.insert(member.key());
  }
  EXPECT_EQ(keys, (std::set<std::string>{"first", "slow", "fast"}));
  // The slow writer took its seq first, so it commits first.
  auto feed = items_->ListChanges(alice_, "feed", 0, 10, Soon());
  ASSERT_EQ(feed->changes_size(), 3);
  EXPECT_TRUE(HasMember(feed->changes(1).item().data(), "slow"));
  EXPECT_TRUE(HasMember(feed->changes(2).item().data(), "fast"));
}

TEST_F(ItemsTest, ReplayingTheFeedReproducesTheCollectionAfterARandomMix) {
  constexpr int kThreads = 4;
  Replica live;  // syncs while the writers run
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done) SyncAll(*items_, alice_, "mix", &live, 3);
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<std::string> mine;
      for (int op = 0; op < 60; ++op) {
        const int dice = static_cast<int>(rng() % 10);
        if (mine.empty() || dice < 4) {
          auto r = items_->Create(alice_, "mix",
                                  Data("{\"t\":" + std::to_string(t) + ",\"op\":" +
                                       std::to_string(op) + "}"),
                                  Soon());
          ASSERT_TRUE(r.ok());
          mine.push_back(r->id());
        } else if (dice < 8) {
          const std::string& id = mine[rng() % mine.size()];
          ASSERT_TRUE(items_->Update(alice_, "mix", id,
                                     Data("{\"op\":" + std::to_string(op) + "}"), {}, Soon())
                          .ok());
        } else {
          const std::size_t k = rng() % mine.size();
          ASSERT_TRUE(items_->Delete(alice_, "mix", mine[k], {}, Soon()).ok());
          mine.erase(mine.begin() + static_cast<long>(k));
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  reader.join();
  SyncAll(*items_, alice_, "mix", &live, 3);
  Replica fresh;
  SyncAll(*items_, alice_, "mix", &fresh, 7);
  std::map<std::string, v1::Item> server;
  for (const auto& item : ListAll(alice_, "mix")) server[item.id()] = item;
  ASSERT_FALSE(server.empty());
  for (const Replica* r : {&live, &fresh}) {
    ASSERT_EQ(r->items.size(), server.size());
    for (const auto& [id, item] : server) {
      ASSERT_TRUE(r->items.contains(id));
      EXPECT_TRUE(MessageDifferencer::Equals(r->items.at(id), item))
          << r->items.at(id).DebugString() << item.DebugString();
    }
  }
}

TEST_F(ItemsTest, PrunedTombstonesMakeOldPositionsGone) {
  Items no_retention(*pool_, ItemLimits{.change_retention = std::chrono::seconds(0),
                                        .idempotency_ttl = std::chrono::seconds(0)});
  auto a = MustCreate("feed", "{}");
  auto b = MustCreate("feed", "{}");
  Replica early;
  SyncAll(*items_, alice_, "feed", &early);  // since = 2
  ASSERT_TRUE(items_->Delete(alice_, "feed", a.id(), {}, Soon()).ok());  // seq 3
  ASSERT_TRUE(items_->Delete(alice_, "feed", b.id(), {}, Soon()).ok());  // seq 4
  MustCreate("feed", "{}");                                              // seq 5
  // With the default retention nothing goes.
  auto kept = items_->Prune(Soon());
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->tombstones, 0);
  auto pruned = no_retention.Prune(Soon());
  ASSERT_TRUE(pruned.ok()) << pruned.error().message;
  EXPECT_EQ(pruned->tombstones, 2);
  auto gone = items_->ListChanges(alice_, "feed", early.since, 10, Soon());
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ErrorCode::kFailedPrecondition);
  // From 0, or from after the pruned tombstones, the feed works.
  auto full = items_->ListChanges(alice_, "feed", 0, 10, Soon());
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->changes_size(), 1);
  EXPECT_TRUE(items_->ListChanges(alice_, "feed", 4, 10, Soon()).ok());
  EXPECT_EQ(Count("SELECT count(*) FROM changes WHERE deleted"), 0);
}

// ---------------------------------------------------------------- idempotency

TEST_F(ItemsTest, IdempotentCreateReturnsTheFirstResult) {
  auto first = items_->Create(alice_, "orders", Data(R"({"sku":"a","qty":1})"), "key-1", Soon());
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_FALSE(first->replayed);
  // The same request, even with its members in another order and other
  // spacing, replays.
  auto again = items_->Create(alice_, "orders", Data(R"({"qty":1, "sku":"a"})"), "key-1", Soon());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->replayed);
  EXPECT_TRUE(MessageDifferencer::Equals(again->item, first->item));
  // Other data or another collection with the same key: refused. 1.0 is
  // other data than 1: it would be stored (and returned) as 1.0.
  auto spelled = items_->Create(alice_, "orders", Data(R"({"sku":"a","qty":1.0})"), "key-1", Soon());
  ASSERT_FALSE(spelled.ok());
  EXPECT_EQ(spelled.error().reason, kReasonIdempotencyKeyReused);
  auto other = items_->Create(alice_, "orders", Data(R"({"sku":"b","qty":1})"), "key-1", Soon());
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(items_->Create(alice_, "orders2", Data(R"({"sku":"a","qty":1})"), "key-1", Soon())
                .error().code,
            ErrorCode::kFailedPrecondition);
  // Keys are per owner.
  auto bobs = items_->Create(bob_, "orders", Data(R"({"sku":"b"})"), "key-1", Soon());
  ASSERT_TRUE(bobs.ok());
  EXPECT_FALSE(bobs->replayed);
  EXPECT_EQ(Count("SELECT count(*) FROM items"), 2);
  // Even after the item changes, the retry answers what the first call did.
  ASSERT_TRUE(items_->Update(alice_, "orders", first->item.id(), Data(R"({"qty":2})"), {}, Soon())
                  .ok());
  auto later = items_->Create(alice_, "orders", Data(R"({"sku":"a","qty":1})"), "key-1", Soon());
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->item.version(), 1);
}

TEST_F(ItemsTest, IdempotentCreateInFlightIsAConflict) {
  // Another session holds the key's lock, as a first request still running would.
  auto lease = pool_->Acquire(Soon());
  auto tx = lease->Begin();
  ASSERT_TRUE(tx.ok());
  ASSERT_TRUE(tx->Exec("SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2, 0))",
                       {alice_, "busy"}).ok());
  auto r = items_->Create(alice_, "orders", Data("{}"), "busy", Soon());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kAlreadyExists);
  EXPECT_TRUE(tx->Rollback().ok());
  EXPECT_TRUE(items_->Create(alice_, "orders", Data("{}"), "busy", Soon()).ok());
}

TEST_F(ItemsTest, ConcurrentRetriesMakeOneItem) {
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<std::string> ids;
  std::atomic<int> conflicts{0}, failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      auto r = items_->Create(alice_, "orders", Data(R"({"x":1})"), "same-key", Soon());
      if (r.ok()) {
        std::lock_guard lock(mu);
        ids.insert(r->item.id());
      } else if (r.error().code == ErrorCode::kAlreadyExists) {
        ++conflicts;
      } else {
        ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM items"), 1);
}

TEST_F(ItemsTest, IdempotencyKeysExpire) {
  Items short_keys(*pool_, ItemLimits{.idempotency_ttl = std::chrono::seconds(0)});
  auto first = short_keys.Create(alice_, "orders", Data("{}"), "k", Soon());
  ASSERT_TRUE(first.ok());
  auto second = short_keys.Create(alice_, "orders", Data(R"({"other":1})"), "k", Soon());
  ASSERT_TRUE(second.ok()) << second.error().message;  // expired: a new request
  EXPECT_FALSE(second->replayed);
  EXPECT_NE(second->item.id(), first->item.id());
  auto pruned = short_keys.Prune(Soon());
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(pruned->idempotency_keys, 1);
  EXPECT_EQ(Count("SELECT count(*) FROM idempotency_keys"), 0);
}

// ---------------------------------------------------------------- purge

TEST_F(ItemsTest, PurgeOwnerRemovesEverythingOfThatOwnerOnly) {
  auto a = MustCreate("notes", "{}");
  ASSERT_TRUE(items_->Create(alice_, "notes", Data("{}"), "k", Soon()).ok());
  ASSERT_TRUE(items_->Delete(alice_, "notes", a.id(), {}, Soon()).ok());
  MustCreate("notes", "{}", bob_);
  ASSERT_TRUE(items_->PurgeOwner(alice_, Soon()).ok());
  ASSERT_TRUE(items_->PurgeOwner(alice_, Soon()).ok());  // idempotent
  for (const char* table : {"items", "changes", "idempotency_keys", "owner_seqs"}) {
    EXPECT_EQ(Count(std::string("SELECT count(*) FROM ") + table + " WHERE owner_id = '" + alice_ +
                    "'"),
              0)
        << table;
    EXPECT_EQ(Count(std::string("SELECT count(*) FROM ") + table + " WHERE owner_id = '" + bob_ +
                    "'") > 0,
              std::string(table) != "idempotency_keys")
        << table;
  }
  EXPECT_EQ(items_->PurgeOwner("nope", Soon()).error().fields.at(0).field, "ownerId");
}

// Waits (by observation, bounded) until `n` backends of this database wait
// on a lock, or `stop()` says the waiter is already past the point.
void WaitForLockWaiters(ItemsTest* test, int n, const std::function<bool()>& stop);

TEST_F(ItemsTest, APurgedOwnerCanNeverWriteAgain) {
  auto a = MustCreate("notes", R"({"a":1})");
  ASSERT_TRUE(items_->PurgeOwner(alice_, Soon()).ok());
  // A later write with the deleted user's (still valid) access token.
  auto created = items_->Create(alice_, "notes", Data(R"({"b":2})"), Soon());
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(created.error().message, "the account no longer exists");
  auto keyed = items_->Create(alice_, "notes", Data(R"({"b":2})"), "key-1", Soon());
  ASSERT_FALSE(keyed.ok());
  EXPECT_EQ(keyed.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(items_->Replace(alice_, "notes", a.id(), Data("{}"), {}, Soon()).error().code,
            ErrorCode::kUnauthenticated);
  EXPECT_EQ(items_->Update(alice_, "notes", a.id(), Data("{}"), {}, Soon()).error().code,
            ErrorCode::kUnauthenticated);
  EXPECT_EQ(items_->Delete(alice_, "notes", a.id(), {}, Soon()).error().code,
            ErrorCode::kUnauthenticated);
  for (const char* table : {"items", "changes", "idempotency_keys", "owner_seqs"}) {
    EXPECT_EQ(
        Count(std::string("SELECT count(*) FROM ") + table + " WHERE owner_id = '" + alice_ + "'"),
        0)
        << table;
  }
  // Reads simply find nothing; a second purge is still fine.
  EXPECT_EQ(items_->List(alice_, "notes", 0, "", Soon())->items_size(), 0);
  EXPECT_EQ(items_->Get(alice_, "notes", a.id(), Soon()).error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(items_->PurgeOwner(alice_, Soon()).ok());
  EXPECT_EQ(Count("SELECT count(*) FROM purged_owners WHERE owner_id = '" + alice_ + "'"), 1);
  // Bob is untouched.
  MustCreate("notes", "{}", bob_);
}

// A write already waiting on the owner's lock when the purge takes it must
// not bring the owner back once the purge commits. A held row lock queues
// the purge first and the write second (PostgreSQL grants row-lock waiters
// in arrival order), so the interleaving is fixed, not timed.
TEST_F(ItemsTest, AWriteQueuedBehindAPurgeIsRefused) {
  MustCreate("notes", R"({"a":1})");
  auto holder_lease = pool_->Acquire(Soon());
  ASSERT_TRUE(holder_lease.ok());
  auto holder = holder_lease->Begin();
  ASSERT_TRUE(holder.ok());
  ASSERT_TRUE(
      holder->Exec("SELECT 1 FROM owner_seqs WHERE owner_id = $1 FOR UPDATE", {alice_}).ok());
  std::atomic<bool> purged{false}, written{false};
  Status purge_status;
  Result<v1::Item> write_result = Error::Internal("not run");
  std::thread purge([&] {
    purge_status = items_->PurgeOwner(alice_, Soon());
    purged = true;
  });
  WaitForLockWaiters(this, 1, [&] { return purged.load(); });
  std::thread write([&] {
    write_result = items_->Create(alice_, "notes", Data(R"({"late":true})"), Soon());
    written = true;
  });
  WaitForLockWaiters(this, 2, [&] { return written.load(); });
  ASSERT_TRUE(holder->Commit().ok());
  purge.join();
  write.join();
  ASSERT_TRUE(purge_status.ok()) << purge_status.error().message;
  ASSERT_FALSE(write_result.ok());
  EXPECT_EQ(write_result.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(Count("SELECT count(*) FROM items WHERE owner_id = '" + alice_ + "'"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM owner_seqs WHERE owner_id = '" + alice_ + "'"), 0);
}

// The owner's first write ever (no owner_seqs row yet) racing a purge: the
// purge must wait for it and then delete what it wrote. The write is played
// by hand (sequence row and item, uncommitted) so the order is fixed.
TEST_F(ItemsTest, APurgeWaitsForAFirstWriteInFlight) {
  auto writer_lease = pool_->Acquire(Soon());
  ASSERT_TRUE(writer_lease.ok());
  auto writer = writer_lease->Begin();
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE(
      writer->Exec("INSERT INTO owner_seqs (owner_id, last_seq) VALUES ($1, 1)", {alice_}).ok());
  ASSERT_TRUE(writer
                  ->Exec("INSERT INTO items (owner_id, collection, id, data) VALUES "
                         "($1, 'notes', $2, '{}')",
                         {alice_, NewUuidV7()})
                  .ok());
  std::atomic<bool> purged{false};
  Status purge_status;
  std::thread purge([&] {
    purge_status = items_->PurgeOwner(alice_, Soon());
    purged = true;
  });
  WaitForLockWaiters(this, 1, [&] { return purged.load(); });
  ASSERT_TRUE(writer->Commit().ok());
  purge.join();
  ASSERT_TRUE(purge_status.ok());
  EXPECT_EQ(Count("SELECT count(*) FROM items WHERE owner_id = '" + alice_ + "'"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM owner_seqs WHERE owner_id = '" + alice_ + "'"), 0);
}

// Prune and a writer (or PurgeOwner) must lock an owner's rows in the same
// order: owner_seqs first, then changes. The holder plays a writer that has
// the owner's sequence row and then touches the owner's changes while
// Prune is waiting; with the order reversed this is a deadlock (40P01).
TEST_F(ItemsTest, PruneTakesTheOwnersLockBeforeItsChanges) {
  Items no_retention(*pool_, ItemLimits{.change_retention = std::chrono::seconds(0),
                                        .idempotency_ttl = std::chrono::seconds(0)});
  auto a = MustCreate("feed", "{}");
  ASSERT_TRUE(items_->Delete(alice_, "feed", a.id(), {}, Soon()).ok());
  auto holder_lease = pool_->Acquire(Soon());
  ASSERT_TRUE(holder_lease.ok());
  auto holder = holder_lease->Begin();
  ASSERT_TRUE(holder.ok());
  ASSERT_TRUE(
      holder->Exec("SELECT 1 FROM owner_seqs WHERE owner_id = $1 FOR UPDATE", {alice_}).ok());
  std::atomic<bool> pruned{false};
  Result<PruneReport> report = Error::Internal("not run");
  std::thread prune([&] {
    report = no_retention.Prune(Soon());
    pruned = true;
  });
  WaitForLockWaiters(this, 1, [&] { return pruned.load(); });
  auto touched = holder->Exec("UPDATE changes SET version = version WHERE owner_id = $1", {alice_});
  EXPECT_TRUE(touched.ok()) << holder_lease->last_sqlstate();
  if (touched.ok())
    EXPECT_TRUE(holder->Commit().ok());
  else
    (void)holder->Rollback();
  prune.join();
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->tombstones, 1);
  EXPECT_EQ(Count("SELECT count(*) FROM changes WHERE deleted"), 0);
}

void WaitForLockWaiters(ItemsTest* test, int n, const std::function<bool()>& stop) {
  for (int i = 0; i < 5000 && !stop(); ++i) {
    if (test->LockWaiters() >= n) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// ---------------------------------------------------------------- listing

TEST_F(ItemsTest, PagesAreNewestFirstAndStableUnderConcurrentInserts) {
  std::vector<std::string> ids;
  for (int i = 0; i < 25; ++i) ids.push_back(MustCreate("tasks", "{\"i\":" + std::to_string(i) + "}").id());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    while (!stop) (void)items_->Create(alice_, "tasks", Data(R"({"late":true})"), Soon());
  });
  std::vector<std::string> seen;
  std::string token;
  do {
    auto page = items_->List(alice_, "tasks", 4, token, Soon());
    ASSERT_TRUE(page.ok()) << page.error().message;
    for (const auto& item : page->items()) {
      if (!HasMember(item.data(), "late")) seen.push_back(item.id());
    }
    token = page->next_page_token();
  } while (!token.empty() && seen.size() < 25);
  stop = true;
  writer.join();
  EXPECT_EQ(seen, std::vector<std::string>(ids.rbegin(), ids.rend()));
}

TEST_F(ItemsTest, LargeItemsEndAPageEarlyAndEveryItemStillComes) {
  Items small_pages(*pool_, ItemLimits{.max_data_bytes = 1024, .max_page_bytes = 1500});
  std::set<std::string> ids;
  for (int i = 0; i < 7; ++i) {
    auto r = small_pages.Create(alice_, "big", Data(R"({"s":")" + std::string(600, 'x') + "\"}"),
                                Soon());
    ASSERT_TRUE(r.ok());
    ids.insert(r->id());
  }
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto page = small_pages.List(alice_, "big", 100, token, Soon());
    ASSERT_TRUE(page.ok());
    EXPECT_GE(page->items_size(), 1);
    EXPECT_LE(page->items_size(), 2);
    for (const auto& item : page->items()) EXPECT_TRUE(seen.insert(item.id()).second);
    token = page->next_page_token();
    ++pages;
  } while (!token.empty() && pages < 20);
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(pages, 4);
}

TEST_F(ItemsTest, PageSizeTokenOrderAndFilterAreValidated) {
  EXPECT_EQ(items_->List(alice_, "tasks", 1001, "", Soon()).error().fields.at(0).field, "pageSize");
  EXPECT_EQ(items_->List(alice_, "tasks", -1, "", Soon()).error().fields.at(0).field, "pageSize");
  EXPECT_EQ(items_->List(alice_, "tasks", 10, "forged", Soon()).error().fields.at(0).field,
            "pageToken");
  EXPECT_TRUE(items_->List(alice_, "tasks", 1000, "", Soon()).ok());
  for (const char* bad : {"id", "data.", "data.a b", "createTime sideways", "data.1x", "title"}) {
    auto r = items_->List(alice_, "tasks", ListQuery{10, "", bad, ""}, Soon());
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().fields.at(0).field, "orderBy") << bad;
  }
  // A token works only for the query that made it, and any altered byte is caught.
  for (int i = 0; i < 3; ++i) MustCreate("tasks", "{\"n\":" + std::to_string(i) + "}");
  auto page = items_->List(alice_, "tasks", ListQuery{1, "", "data.n", ""}, Soon());
  ASSERT_TRUE(page.ok());
  const std::string token = page->next_page_token();
  ASSERT_FALSE(token.empty());
  EXPECT_TRUE(items_->List(alice_, "tasks", ListQuery{1, token, "data.n", ""}, Soon()).ok());
  EXPECT_EQ(items_->List(alice_, "tasks", ListQuery{1, token, "data.n desc", ""}, Soon())
                .error().fields.at(0).field,
            "pageToken");
  EXPECT_EQ(items_->List(alice_, "tasks", ListQuery{1, token, "data.n", "data.n > 0"}, Soon())
                .error().fields.at(0).field,
            "pageToken");
  EXPECT_FALSE(items_->List(alice_, "other", ListQuery{1, token, "data.n", ""}, Soon()).ok());
  Items other_key(*pool_, ItemLimits{.page_token_key = "another replica's key"});
  EXPECT_FALSE(other_key.List(alice_, "tasks", ListQuery{1, token, "data.n", ""}, Soon()).ok());
  for (std::size_t i = 0; i < token.size(); i += 5) {
    std::string altered = token;
    altered[i] = altered[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(items_->List(alice_, "tasks", ListQuery{1, altered, "data.n", ""}, Soon()).ok())
        << i;
  }
}

TEST_F(ItemsTest, OrderByDataPathAndTimesWithIdTieBreakAcrossPages) {
  // Values of mixed types, ties and missing fields.
  const std::vector<std::string> values = {"3", "1", "\"b\"", "1", "null", "", "2.5",
                                           "\"a\"", "true", "3", "", "-1"};
  for (const auto& v : values) {
    MustCreate("sorted", v.empty() ? R"({"other":1})" : "{\"p\":{\"v\":" + v + "}}");
  }
  auto all = ListAll(alice_, "sorted", "", "", 100);
  ASSERT_EQ(all.size(), values.size());
  // The expected order, computed by PostgreSQL's own jsonb ordering, on the
  // whole collection at once (no cursor involved).
  for (bool desc : {false, true}) {
    auto lease = pool_->Acquire(Soon());
    auto rows = lease->Exec(
        std::string("SELECT id::text FROM items WHERE owner_id = $1 AND collection = 'sorted' "
                    "ORDER BY COALESCE(data #> '{p,v}', 'null'::jsonb) ") +
            (desc ? "DESC, id DESC" : "ASC, id ASC"),
        {alice_});
    ASSERT_TRUE(rows.ok());
    std::vector<std::string> expected;
    for (pg::Row r : *rows) expected.push_back(r.GetString(0));
    for (int page_size : {1, 2, 5}) {
      std::vector<std::string> got;
      for (const auto& item : ListAll(alice_, "sorted", desc ? "data.p.v desc" : "data.p.v asc", "",
                                      page_size)) {
        got.push_back(item.id());
      }
      EXPECT_EQ(got, expected) << desc << " " << page_size;
    }
  }
  // createTime ascending is creation order; updateTime follows writes.
  std::vector<std::string> created;
  for (const auto& item : ListAll(alice_, "sorted", "createTime", "", 3)) created.push_back(item.id());
  std::vector<std::string> by_id;
  for (auto it = all.rbegin(); it != all.rend(); ++it) by_id.push_back(it->id());
  EXPECT_EQ(created, by_id);
  ASSERT_TRUE(items_->Update(alice_, "sorted", by_id[0], Data(R"({"touched":1})"), {}, Soon()).ok());
  auto updated = ListAll(alice_, "sorted", "updateTime desc", "", 4);
  ASSERT_EQ(updated.size(), values.size());
  EXPECT_EQ(updated[0].id(), by_id[0]);
}

struct FilterCase {
  std::string filter;
  std::set<std::string> expected;  // names of matching items
};

TEST_F(ItemsTest, FilterTable) {
  const std::vector<std::pair<std::string, std::string>> docs = {
      {"open3", R"({"status":"open","priority":3,"archived":false,"tags":["x","y"]})"},
      {"open1", R"({"status":"open","priority":1,"archived":true})"},
      {"closed5", R"({"status":"closed","priority":5,"owner":{"name":"Ann"}})"},
      {"nulls", R"({"status":null,"priority":"high"})"},
      {"inject", R"({"status":"x' OR '1'='1","q":"\"; DROP TABLE items; --"})"},
      {"unicode", R"({"status":"ünï\ncode","priority":2.5})"},
      {"array", R"({"status":["open"],"priority":4})"},
  };
  std::map<std::string, std::string> name_of;
  for (const auto& [name, json] : docs) {
    auto item = MustCreate("filtered", R"({"name":")" + name + "\"," + json.substr(1));
    name_of[item.id()] = name;
  }
  MustCreate("filtered", R"({"status":"open"})", bob_);  // never visible to alice
  const std::vector<FilterCase> cases = {
      {"", {"open3", "open1", "closed5", "nulls", "inject", "unicode", "array"}},
      {R"(data.status = "open")", {"open3", "open1"}},
      {R"(data.status != "open")", {"closed5", "nulls", "inject", "unicode", "array"}},
      {R"(data.status = "open" AND (data.priority >= 3 OR NOT data.archived = true))", {"open3"}},
      {R"(data.status = "open" and (data.priority >= 3 or not data.archived = true))", {"open3"}},
      {"data.priority > 2", {"open3", "closed5", "unicode", "array"}},
      {"data.priority < 2.5", {"open1"}},
      {"data.priority <= 2.5", {"open1", "unicode"}},
      {R"(data.priority > "a")", {"nulls"}},  // strings compare with strings only
      {"data.priority IN (1, 5, 7)", {"open1", "closed5"}},
      {R"(data.status IN ("closed", null))", {"closed5", "nulls"}},
      {"data.status = null", {"nulls"}},
      {"data.archived = false", {"open3"}},
      {"data.missing = null", {}},
      {"NOT data.missing = 1",
       {"open3", "open1", "closed5", "nulls", "inject", "unicode", "array"}},
      {R"(data.owner.name = "Ann")", {"closed5"}},
      {R"(data.status = "x' OR '1'='1")", {"inject"}},
      {R"(data.q = "\"; DROP TABLE items; --")", {"inject"}},
      {R"(data.status = "\u00fcn\u00efX")", {}},
      {R"(data.status = "ünï\ncode")", {"unicode"}},
      {R"(data.tags = "x")", {}},  // equality is exact: an array holding "x" is not "x"
      {R"(data.owner = "Ann")", {}},
      {"data.priority = 3.0", {"open3"}},
      {R"(data.status = "open" OR data.status = "closed")", {"open3", "open1", "closed5"}},
      {"createTime > 2000-01-01T00:00:00Z",
       {"open3", "open1", "closed5", "nulls", "inject", "unicode", "array"}},
      {R"(createTime < "2000-01-01T00:00:00+02:00")", {}},
      {"updateTime >= 2000-01-01T00:00:00.5Z AND data.priority = 5", {"closed5"}},
      {"((((data.priority = 4))))", {"array"}},
      // Edges the compiler must turn into SQL PostgreSQL accepts.
      {"data.priority < 1e999", {"open3", "open1", "closed5", "unicode", "array"}},
      {"data.priority > -1E-999", {"open3", "open1", "closed5", "unicode", "array"}},
      {"data.priority = -0", {}},
      {R"(data.priority IN (1, "high", null, true, 2024-01-01T00:00:00Z))", {"open1", "nulls"}},
      {"createTime > 0001-01-01T00:00:00-01:00",
       {"open3", "open1", "closed5", "nulls", "inject", "unicode", "array"}},
      {"createTime < 9999-12-31T23:59:59.999999999Z",
       {"open3", "open1", "closed5", "nulls", "inject", "unicode", "array"}},
      {"createTime IN (2024-01-01T00:00:00Z, \"2024-01-01T00:00:00+01:00\")", {}},
      {"data.priority >= 1 AND data.priority <= 1 AND data.priority != 2", {"open1"}},
  };
  for (const auto& c : cases) {
    std::set<std::string> got;
    for (const auto& item : ListAll(alice_, "filtered", "", c.filter, 3)) got.insert(name_of[item.id()]);
    EXPECT_EQ(got, c.expected) << c.filter;
  }
  // Sorting and filtering together.
  std::vector<std::string> sorted;
  for (const auto& item : ListAll(alice_, "filtered", "data.priority desc", "data.priority > 1", 1)) {
    sorted.push_back(name_of[item.id()]);
  }
  EXPECT_EQ(sorted, (std::vector<std::string>{"closed5", "array", "open3", "unicode"}));
  EXPECT_EQ(Count("SELECT count(*) FROM items"), 8);  // nothing was dropped
}

TEST_F(ItemsTest, BadFiltersNameThePosition) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"data.status =", "position 14"},
      {"data.status = open", "position 15"},
      {"status = \"x\"", "position 1"},
      {"data.a = 1 AND", "position 15"},
      {"data.a = 1 data.b = 2", "position 12"},
      {"(data.a = 1", "position 12"},
      {"data.a = \"unterminated", "position 10"},
      {"data.a ! 1", "position 8"},
      {"data.a = 1e9999", "position 10"},
      {"data.a = \"\\u0000\"", "position 11"},
      {"data.a = \"\\ud800\"", "position 11"},
      {"createTime > 5", "position 14"},
      {"createTime > \"yesterday\"", "position 14"},
      {"data.a IN 1", "position 11"},
      {"data.a IN (1,", "position 14"},
      {"data..a = 1", "position 6"},
      {"data.a = 1; DROP TABLE items", "position 11"},
      {"data.a = 1 -- comment", "position 12"},
      // Operators outside `= != < <= > >=`, which PostgreSQL would reject.
      {"data.a == 1", "position 8"},
      {"data.a => 1", "position 8"},
      {"data.a <> 1", "position 8"},
      {"data.a ! 1", "position 8"},
      {"data.a === 1", "position 8"},
      {"data.a =! 1", "position 8"},
      {"data.a >== 1", "position 8"},
      {"createTime == 2024-01-01T00:00:00Z", "position 12"},
      {"NOT data.a == 1", "position 12"},
      // Numbers JSON (and so jsonb) does not have.
      {"data.a = NaN", "position 10"},
      {"data.a = Infinity", "position 10"},
      {"data.a = -Infinity", "position 10"},
      {"data.a = 1e1000", "position 10"},
      {"data.a = 01", "position 10"},
      {"data.a = .5", "position 10"},
      {"data.a = 0x10", "position 11"},
      // Times that parse but lie outside 0001-01-01..9999-12-31 in UTC, and
      // times that are not RFC 3339.
      {"createTime > 0001-01-01T00:00:00+01:00", "position 14"},
      {"createTime > \"9999-12-31T23:59:59-01:00\"", "position 14"},
      {"data.t = 0001-01-01T00:00:00+01:00", "position 10"},
      {"createTime > 2024-02-30T00:00:00Z", "position 14"},
      {"createTime > 2024-01-01T24:00:00Z", "position 14"},
      {"createTime > 2024-01-01T00:00:00", "position 14"},
      {"createTime > 2024-01-01", "position 14"},
      {"createTime > 0000-01-01T00:00:00Z", "position 14"},
      {"createTime > null", "position 14"},
      // IN lists: empty, or a value a time field cannot be compared with.
      {"data.a IN ()", "position 12"},
      {"data.a IN (,)", "position 12"},
      {"createTime IN (2024-01-01T00:00:00Z, \"x\")", "position 38"},
      {"createTime IN (2024-01-01T00:00:00Z, 1)", "position 38"},
  };
  for (const auto& [filter, where] : bad) {
    auto r = items_->List(alice_, "notes", ListQuery{10, "", "", filter}, Soon());
    ASSERT_FALSE(r.ok()) << filter;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << filter;
    ASSERT_EQ(r.error().fields.size(), 1u);
    EXPECT_EQ(r.error().fields[0].field, "filter");
    EXPECT_NE(r.error().fields[0].message.find(where), std::string::npos)
        << filter << ": " << r.error().fields[0].message;
  }
  std::string deep;
  for (int i = 0; i < 40; ++i) deep += "(";
  deep += "data.a = 1";
  for (int i = 0; i < 40; ++i) deep += ")";
  EXPECT_EQ(items_->List(alice_, "notes", ListQuery{10, "", "", deep}, Soon()).error().fields.at(0)
                .field,
            "filter");
  std::string nots;
  for (int i = 0; i < 40; ++i) nots += "NOT ";
  EXPECT_FALSE(items_->List(alice_, "notes", ListQuery{10, "", "", nots + "data.a = 1"}, Soon()).ok());
  EXPECT_FALSE(
      items_->List(alice_, "notes", ListQuery{10, "", "", "data.a = \"" + std::string(5000, 'x') + "\""},
                   Soon())
          .ok());
}

// A page token made with the key, as Items makes them (see items.cc).
std::string ForgePageToken(const std::string& key, const std::string& context,
                           const std::string& id, const std::string& sort_key) {
  const std::string payload = "c2\n" + id + "\n" + sort_key;
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(payload.data()),
                                payload.size());
  const unsigned char sep = 0;
  crypto_auth_hmacsha256_update(&st, &sep, 1);
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(context.data()),
                                context.size());
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_final(&st, mac);
  return auth::Base64UrlEncode(payload + std::string(reinterpret_cast<const char*>(mac), 16));
}

// With the public default key anyone can make page tokens. The owner still
// comes from the caller, so a forged token only moves the caller within
// their own items; values in it must still never reach PostgreSQL unchecked
// (a 400, not a 500 from a failed cast or an overflow).
TEST_F(ItemsTest, ForgedPageTokensAreRefusedNotFailed) {
  MustCreate("notes", R"({"n":1})");
  MustCreate("notes", R"({"n":2})");
  const std::string key = ItemLimits{}.page_token_key;
  const std::string id = NewUuidV7();
  // A well-formed forged token works (this is what the key protects).
  auto forged = items_->List(
      alice_, "notes",
      ListQuery{10, ForgePageToken(key, std::string("notes\0data.n asc\0", 17), id, "1"),
                "data.n asc", ""},
      Soon());
  ASSERT_TRUE(forged.ok()) << forged.error().message;
  EXPECT_EQ(forged->items_size(), 1);
  const struct {
    std::string order_by, sort_key;
  } bad[] = {
      {"data.n asc", "not json"},
      {"data.n asc", "{\"a\":"},
      {"createTime asc", "9223372036854775807"},
      {"updateTime desc", "-9223372036854775807"},
      {"createTime asc", "253402300800000000"},
  };
  for (const auto& b : bad) {
    std::string context = "notes";
    context += '\0';
    context += b.order_by;
    context += '\0';
    auto r = items_->List(
        alice_, "notes",
        ListQuery{10, ForgePageToken(key, context, id, b.sort_key), b.order_by, ""}, Soon());
    ASSERT_FALSE(r.ok()) << b.sort_key;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument)
        << b.sort_key << ": " << r.error().message;
    ASSERT_EQ(r.error().fields.size(), 1u) << b.sort_key;
    EXPECT_EQ(r.error().fields[0].field, "pageToken");
  }
}

// ---------------------------------------------------------------- pruner

// Full batches would keep a pass going for kMaxPruneBatchesPerPass batches;
// a stop request must end it after the batch in progress.
TEST(Pruner, StopsBetweenBatches) {
  std::stop_source stop;
  int calls = 0;
  RunPruner(
      [&](Deadline) -> Result<PruneReport> {
        if (++calls == 3) stop.request_stop();
        return PruneReport{.tombstones = kPruneBatchSize, .idempotency_keys = 0};
      },
      std::chrono::hours(1), stop.get_token());
  EXPECT_EQ(calls, 3);
}

// A batch that throws (or fails) ends its pass; the next pass runs, and the
// exception never leaves the loop (it would terminate the process).
TEST(Pruner, SurvivesThrowingAndFailingBatches) {
  std::stop_source stop;
  int calls = 0;
  RunPruner(
      [&](Deadline) -> Result<PruneReport> {
        ++calls;
        if (calls == 1) throw std::runtime_error("connection exploded");
        if (calls == 2) return Error::Unavailable("database down");
        stop.request_stop();
        return PruneReport{};
      },
      std::chrono::milliseconds(1), stop.get_token());
  EXPECT_EQ(calls, 3);
}

TEST(FilterCompiler, EmitsParametersNeverValues) {
  auto c = CompileFilter(R"(data.a = "x' OR 1=1 --" AND createTime < 2024-01-01T00:00:00Z)", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->sql.find("OR 1=1"), std::string::npos) << c->sql;
  EXPECT_EQ(c->sql, "(data @> $4::jsonb AND (create_time < $5::timestamptz))");
  EXPECT_EQ(c->params,
            (std::vector<std::string>{R"({"a":"x' OR 1=1 --"})", "2024-01-01T00:00:00Z"}));
  auto range = CompileFilter(R"(data.a.b >= 3)", 1);
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->params, (std::vector<std::string>{R"({"a","b"})", "3"}));
}

}  // namespace
}  // namespace portico::data

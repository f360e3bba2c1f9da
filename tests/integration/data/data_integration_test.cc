// The data service's logic against a real, throwaway PostgreSQL.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <set>
#include <span>
#include <thread>

#include "items.h"
#include "portico/core/uuid.h"
#include "portico/pg/migrate.h"
#include "portico/pg/pool.h"
#include "portico/testing/pg_cluster.h"

namespace portico::data {
std::span<const pg::Migration> Migrations();

namespace {

Deadline Soon() { return DeadlineIn(std::chrono::seconds(10)); }

google::protobuf::Struct Data(const std::string& json) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok()) << json;
  return s;
}

class ItemsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pool = pg::Pool::Create({.url = testing::SharedPgCluster().CreateUniqueDatabase("data"),
                                  .size = 4});
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(*pool);
    ASSERT_TRUE(pg::Migrate(*pool_, Migrations(), "portico_data", Soon()).ok());
    items_ = std::make_unique<Items>(*pool_, ItemLimits{.max_data_bytes = 1024, .max_depth = 8});
  }
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
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*got, *created))
      << got->DebugString() << created->DebugString();
  EXPECT_EQ(got->data().fields().at("title").string_value(), "a \"quoted\" ' title");
}

TEST_F(ItemsTest, OtherOwnersAndOtherCollectionsSeeNothing) {
  auto created = items_->Create(alice_, "notes", Data(R"({"a":1})"), Soon());
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(items_->Get(bob_, "notes", created->id(), Soon()).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(items_->Get(alice_, "other", created->id(), Soon()).error().code,
            ErrorCode::kNotFound);
  EXPECT_EQ(items_->Get(alice_, "notes", "not-a-uuid", Soon()).error().code, ErrorCode::kNotFound);
  auto bobs = items_->List(bob_, "notes", 0, "", Soon());
  ASSERT_TRUE(bobs.ok());
  EXPECT_EQ(bobs->items_size(), 0);
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
  for (int i = 0; i < 9; ++i) deep += "{\"a\":", tail += "}";
  auto too_deep = items_->Create(alice_, "notes", Data(deep + "1" + tail), Soon());
  ASSERT_FALSE(too_deep.ok());
  EXPECT_EQ(too_deep.error().fields.at(0).field, "data");
  auto lease = pool_->Acquire(Soon());
  EXPECT_EQ(lease->Exec("SELECT count(*) FROM items")->front().GetInt64(0), 0);
}

TEST_F(ItemsTest, PagesAreNewestFirstAndStableUnderConcurrentInserts) {
  std::vector<std::string> ids;
  for (int i = 0; i < 25; ++i) {
    auto r = items_->Create(alice_, "tasks", Data("{\"i\":" + std::to_string(i) + "}"), Soon());
    ASSERT_TRUE(r.ok());
    ids.push_back(r->id());
  }
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
      if (!item.data().fields().contains("late")) seen.push_back(item.id());
    }
    token = page->next_page_token();
  } while (!token.empty() && seen.size() < 25);
  stop = true;
  writer.join();
  EXPECT_EQ(seen, std::vector<std::string>(ids.rbegin(), ids.rend()));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 25u);
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
    EXPECT_LE(page->items_size(), 2);  // 2 x ~600 bytes fit in 1500, 3 do not
    for (const auto& item : page->items()) EXPECT_TRUE(seen.insert(item.id()).second);
    token = page->next_page_token();
    ++pages;
  } while (!token.empty() && pages < 20);
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(pages, 4);
}

TEST_F(ItemsTest, PageSizeAndTokenAreValidated) {
  EXPECT_EQ(items_->List(alice_, "tasks", 1001, "", Soon()).error().fields.at(0).field, "pageSize");
  EXPECT_EQ(items_->List(alice_, "tasks", -1, "", Soon()).error().fields.at(0).field, "pageSize");
  EXPECT_EQ(items_->List(alice_, "tasks", 10, "forged", Soon()).error().fields.at(0).field,
            "pageToken");
  EXPECT_TRUE(items_->List(alice_, "tasks", 1000, "", Soon()).ok());
}

}  // namespace
}  // namespace portico::data

// The users service's logic against a real, throwaway PostgreSQL.
#include <gtest/gtest.h>

#include <span>
#include <future>
#include <thread>

#include "accounts.h"
#include "key_ring.h"
#include "password_pool.h"
#include "portico/auth/jwt.h"
#include "portico/pg/migrate.h"
#include "portico/pg/pool.h"
#include "portico/testing/pg_cluster.h"
#include "settings.h"

namespace portico::users {
std::span<const pg::Migration> Migrations();

namespace {

Deadline Soon() { return DeadlineIn(std::chrono::seconds(10)); }

class UsersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pool = pg::Pool::Create({.url = testing::SharedPgCluster().CreateUniqueDatabase("users"),
                                  .size = 4});
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(*pool);
    auto migrated = pg::Migrate(*pool_, Migrations(), "portico_users", Soon());
    ASSERT_TRUE(migrated.ok()) << migrated.error().message;
    settings_.password_params = {.ops_limit = 1, .mem_limit = 8 << 20};
    keys_ = std::make_unique<KeyRing>(*pool_);
    ASSERT_TRUE(keys_->Load(Soon()).ok());
    passwords_ = std::make_unique<PasswordPool>(settings_.password_params, 2, 16);
    accounts_ = std::make_unique<Accounts>(*pool_, *keys_, *passwords_, settings_);
  }

  std::int64_t Count(const std::string& sql) {
    auto lease = pool_->Acquire(Soon());
    auto rows = lease->Exec(sql);
    EXPECT_TRUE(rows.ok());
    return rows->front().GetInt64(0);
  }

  Settings settings_;
  std::unique_ptr<pg::Pool> pool_;
  std::unique_ptr<KeyRing> keys_;
  std::unique_ptr<PasswordPool> passwords_;
  std::unique_ptr<Accounts> accounts_;
};

TEST_F(UsersTest, RegisterStoresANormalizedUserWithAnArgon2idHash) {
  auto user = accounts_->Register("  Ada@Example.COM ", "correct horse battery", "Ada", Soon());
  ASSERT_TRUE(user.ok()) << user.error().message;
  EXPECT_EQ(user->email(), "ada@example.com");
  EXPECT_EQ(user->role(), v1::USER);
  auto lease = pool_->Acquire(Soon());
  auto rows = lease->Exec("SELECT password_hash FROM users WHERE id = $1", {user->id()});
  ASSERT_TRUE(rows.ok());
  const std::string hash = rows->front().GetString(0);
  EXPECT_TRUE(hash.starts_with("$argon2id$")) << hash;
  EXPECT_EQ(hash.find("correct horse"), std::string::npos);
}

TEST_F(UsersTest, DuplicateEmailIsAlreadyExistsEvenWhenRacing) {
  ASSERT_TRUE(accounts_->Register("dup@example.com", "correct horse battery", "A", Soon()).ok());
  auto again = accounts_->Register("DUP@example.com", "another password!", "B", Soon());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);

  std::atomic<int> created{0}, conflicts{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      auto r = accounts_->Register("race@example.com", "correct horse battery", "R", Soon());
      if (r.ok()) ++created;
      else if (r.error().code == ErrorCode::kAlreadyExists) ++conflicts;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(conflicts.load(), 5);
  EXPECT_EQ(Count("SELECT count(*) FROM users WHERE email = 'race@example.com'"), 1);
}

TEST_F(UsersTest, ValidationNamesEveryBadFieldAndStoresNothing) {
  auto r = accounts_->Register("no-at-sign", "short", "bad\x01name", Soon());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  std::vector<std::string> fields;
  for (const auto& f : r.error().fields) fields.push_back(f.field);
  EXPECT_EQ(fields, (std::vector<std::string>{"email", "password", "displayName"}));
  EXPECT_EQ(Count("SELECT count(*) FROM users"), 0);
  // 128 characters is the limit, counted in code points, never truncated.
  EXPECT_TRUE(ValidatePassword(std::string(128, 'x'), 12, "password").ok());
  EXPECT_FALSE(ValidatePassword(std::string(129, 'x'), 12, "password").ok());
  EXPECT_TRUE(ValidatePassword("ééééééééééé\xc3\xa9", 12, "password").ok());  // 12 code points
  EXPECT_FALSE(ValidatePassword("\xff\xfe bad utf8 here", 12, "password").ok());
}

TEST_F(UsersTest, LoginIssuesAVerifiableTokenAndStoresOnlyTheRefreshHash) {
  auto user = accounts_->Register("login@example.com", "correct horse battery", "L", Soon());
  ASSERT_TRUE(user.ok());
  auto pair = accounts_->Login("LOGIN@example.com", "correct horse battery", {"ua/1", "10.0.0.1"},
                               Soon());
  ASSERT_TRUE(pair.ok()) << pair.error().message;
  EXPECT_EQ(pair->token_type(), "Bearer");
  EXPECT_EQ(pair->expires_in(), 900);

  auth::Verifier verifier(keys_->keyset(), {.issuer = "portico", .audience = "portico-api"});
  auto claims = verifier.Verify(pair->access_token());
  ASSERT_TRUE(claims.ok()) << claims.error().message;
  EXPECT_EQ(claims->sub, user->id());
  EXPECT_EQ(claims->role, "USER");
  EXPECT_EQ(claims->exp - claims->iat, 900);

  EXPECT_EQ(Count("SELECT count(*) FROM refresh_tokens WHERE token_hash = '" +
                  auth::Sha256Hex(pair->refresh_token()) + "'"),
            1);
  EXPECT_EQ(Count("SELECT count(*) FROM refresh_tokens WHERE token_hash = '" +
                  pair->refresh_token() + "'"),
            0);
  EXPECT_EQ(Count("SELECT count(*) FROM sessions WHERE user_agent = 'ua/1' AND "
                  "client_address = '10.0.0.1'"),
            1);
}

TEST_F(UsersTest, WrongPasswordAndUnknownEmailGiveTheSameAnswer) {
  ASSERT_TRUE(accounts_->Register("who@example.com", "correct horse battery", "W", Soon()).ok());
  auto wrong = accounts_->Login("who@example.com", "incorrect horse!!", {}, Soon());
  auto unknown = accounts_->Login("nobody@example.com", "incorrect horse!!", {}, Soon());
  ASSERT_FALSE(wrong.ok());
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(wrong.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(unknown.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(wrong.error().message, unknown.error().message);
  EXPECT_EQ(Count("SELECT count(*) FROM sessions"), 0);
}

TEST_F(UsersTest, DisabledAccountCannotSignIn) {
  auto user = accounts_->Register("off@example.com", "correct horse battery", "O", Soon());
  ASSERT_TRUE(user.ok());
  auto lease = pool_->Acquire(Soon());
  ASSERT_TRUE(lease->Exec("UPDATE users SET disabled = true WHERE id = $1", {user->id()}).ok());
  auto r = accounts_->Login("off@example.com", "correct horse battery", {}, Soon());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kPermissionDenied);
}

TEST_F(UsersTest, GetUserByIdAndUnknownIds) {
  auto user = accounts_->Register("get@example.com", "correct horse battery", "G", Soon());
  ASSERT_TRUE(user.ok());
  auto got = accounts_->GetUser(user->id(), Soon());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->email(), "get@example.com");
  EXPECT_EQ(got->create_time().seconds(), user->create_time().seconds());
  EXPECT_EQ(accounts_->GetUser("0190a0b2-7c1d-7e3f-8a4b-5c6d7e8f9a0b", Soon()).error().code,
            ErrorCode::kNotFound);
  EXPECT_EQ(accounts_->GetUser("'; DROP TABLE users; --", Soon()).error().code,
            ErrorCode::kNotFound);
}

TEST_F(UsersTest, ReplicasStartingTogetherShareOneSigningKey) {
  // A second database where several "replicas" load keys at once.
  auto pool = pg::Pool::Create({.url = testing::SharedPgCluster().CreateUniqueDatabase("keys"),
                                .size = 8});
  ASSERT_TRUE(pool.ok());
  ASSERT_TRUE(pg::Migrate(**pool, Migrations(), "portico_users", Soon()).ok());
  std::vector<std::unique_ptr<KeyRing>> rings;
  for (int i = 0; i < 6; ++i) rings.push_back(std::make_unique<KeyRing>(**pool));
  std::vector<std::thread> threads;
  for (auto& ring : rings) {
    threads.emplace_back([&ring] { EXPECT_TRUE(ring->Load(Soon()).ok()); });
  }
  for (auto& t : threads) t.join();
  for (auto& ring : rings) {
    ASSERT_TRUE(ring->Current().has_value());
    EXPECT_EQ(ring->Current()->kid, rings[0]->Current()->kid);
  }
  auto lease = (*pool)->Acquire(Soon());
  EXPECT_EQ(lease->Exec("SELECT count(*) FROM signing_keys")->front().GetInt64(0), 1);
  for (auto& ring : rings) {
    auto published = ring->Published();
    ASSERT_EQ(published.size(), 1u);
    EXPECT_EQ(published[0].kid, rings[0]->Current()->kid);
    EXPECT_TRUE(ring->keyset()->Find(published[0].kid).has_value());
  }
}

TEST_F(UsersTest, JwksPublishesTheSigningKeyAsAnEd25519Jwk) {
  auto jwks = accounts_->Jwks();
  ASSERT_EQ(jwks.keys_size(), 1);
  const auto& jwk = jwks.keys(0);
  EXPECT_EQ(jwk.kid(), keys_->Current()->kid);
  EXPECT_EQ(jwk.kty(), "OKP");
  EXPECT_EQ(jwk.crv(), "Ed25519");
  EXPECT_EQ(jwk.alg(), "EdDSA");
  EXPECT_EQ(jwk.use(), "sig");
  auto key = auth::PublicKeyFromJwk(jwk.kty(), jwk.crv(), jwk.x(), jwk.kid());
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->key, keys_->Current()->public_key);
}

TEST(PasswordPool, FullQueueIsResourceExhaustedAtOnce) {
  PasswordPool pool({.ops_limit = 1, .mem_limit = 8 << 20}, /*workers=*/1, /*max_queue=*/1);
  // Occupy the only worker, then the only queue slot.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  std::thread busy([&] {
    EXPECT_TRUE(pool.Execute([&started, released] {
                      started.set_value();
                      released.wait();
                    },
                    DeadlineIn(std::chrono::seconds(30)))
                    .ok());
  });
  started.get_future().wait();
  std::thread queued([&] {
    EXPECT_TRUE(pool.Hash("correct horse battery", DeadlineIn(std::chrono::seconds(30))).ok());
  });
  while (pool.queued() < 1) std::this_thread::yield();
  // Worker busy, queue full: the next caller is refused at once.
  auto refused = pool.Hash("correct horse battery", DeadlineIn(std::chrono::seconds(30)));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kResourceExhausted);
  release.set_value();
  busy.join();
  queued.join();
  // Free again: hashes and verifies.
  auto hash = pool.Hash("correct horse battery", DeadlineIn(std::chrono::seconds(30)));
  ASSERT_TRUE(hash.ok());
  EXPECT_TRUE(*pool.Verify(*hash, "correct horse battery", DeadlineIn(std::chrono::seconds(30))));
  EXPECT_FALSE(*pool.Verify(*hash, "correct horse batterY", DeadlineIn(std::chrono::seconds(30))));
}

TEST(PasswordPool, DeadlineWhileQueuedIsDeadlineExceeded) {
  PasswordPool pool({.ops_limit = 1, .mem_limit = 8 << 20}, 1, 4);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  std::thread busy([&] {
    (void)pool.Execute([&started, released] {
      started.set_value();
      released.wait();
    }, DeadlineIn(std::chrono::seconds(30)));
  });
  started.get_future().wait();
  auto late = pool.Hash("correct horse battery", DeadlineIn(std::chrono::milliseconds(50)));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kDeadlineExceeded);
  release.set_value();
  busy.join();
}

}  // namespace
}  // namespace portico::users

// The users service's logic against a real, throwaway PostgreSQL.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <stop_token>
#include <thread>

#include "accounts.h"
#include "grpc_services.h"
#include "key_ring.h"
#include "password_pool.h"
#include "purge_dispatcher.h"
#include <grpcpp/grpcpp.h>
#include "portico/auth/jwt.h"
#include "portico/data/v1/data.grpc.pb.h"
#include "portico/pg/migrate.h"
#include "portico/pg/pool.h"
#include "portico/rpc/executor.h"
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

// The pool is the server's capacity, not the caller's limit: 503, not 429.
TEST(PasswordPool, FullQueueIsUnavailableAtOnce) {
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
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(refused.error().retry_after_seconds, 1);
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

// ---- sessions, refresh rotation, administration, throttling, PATs, keys, outbox ----

class AccountsFlowTest : public UsersTest {
 protected:
  v1::User Make(const std::string& email) {
    auto u = accounts_->Register(email, "correct horse battery", "N", Soon());
    EXPECT_TRUE(u.ok()) << (u.ok() ? "" : u.error().message);
    return u.ok() ? *u : v1::User();
  }
  v1::TokenPair SignIn(const std::string& email, const std::string& pw = "correct horse battery") {
    auto p = accounts_->Login(email, pw, {"ua", "10.0.0.9"}, Soon());
    EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message);
    return p.ok() ? *p : v1::TokenPair();
  }
  Caller CallerOf(const v1::TokenPair& pair) {
    auth::Verifier verifier(keys_->keyset(), {.issuer = "portico", .audience = "portico-api"});
    auto c = verifier.Verify(pair.access_token());
    EXPECT_TRUE(c.ok());
    return {c->sub, SessionIdFromJti(c->jti), c->role == "ADMIN"};
  }
  void Exec(const std::string& sql) {
    auto lease = pool_->Acquire(Soon());
    ASSERT_TRUE(lease->Exec(sql).ok()) << sql;
  }
};

TEST_F(AccountsFlowTest, RefreshRotatesAndAReusedTokenRevokesTheFamily) {
  Make("r@example.com");
  auto p1 = SignIn("r@example.com");
  auto p2 = accounts_->Refresh(p1.refresh_token(), Soon());
  ASSERT_TRUE(p2.ok());
  EXPECT_NE(p2->refresh_token(), p1.refresh_token());
  // Within the grace window (10 s by default): the same successor.
  auto again = accounts_->Refresh(p1.refresh_token(), Soon());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->refresh_token(), p2->refresh_token());
  EXPECT_EQ(Count("SELECT count(*) FROM refresh_tokens"), 2);  // no extra token made
  // Move the rotation out of the window: now it is reuse.
  Exec("UPDATE refresh_tokens SET use_time = now() - interval '1 hour' WHERE use_time IS NOT NULL");
  auto reused = accounts_->Refresh(p1.refresh_token(), Soon());
  ASSERT_FALSE(reused.ok());
  EXPECT_EQ(reused.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(Count("SELECT count(*) FROM sessions WHERE revoke_time IS NOT NULL"), 1);
  EXPECT_EQ(accounts_->Refresh(p2->refresh_token(), Soon()).error().code,
            ErrorCode::kUnauthenticated);
  // Expired tokens do not refresh.
  auto p3 = SignIn("r@example.com");
  Exec("UPDATE refresh_tokens SET expire_time = now() - interval '1 second'");
  EXPECT_EQ(accounts_->Refresh(p3.refresh_token(), Soon()).error().code,
            ErrorCode::kUnauthenticated);
}

TEST_F(AccountsFlowTest, ConcurrentRefreshesOfOneTokenAllGetTheSameSuccessor) {
  Make("c@example.com");
  auto p = SignIn("c@example.com");
  std::vector<std::future<Result<v1::TokenPair>>> futures;
  for (int i = 0; i < 4; ++i) {
    futures.push_back(std::async(std::launch::async,
                                 [&] { return accounts_->Refresh(p.refresh_token(), Soon()); }));
  }
  std::set<std::string> successors;
  for (auto& f : futures) {
    auto r = f.get();
    ASSERT_TRUE(r.ok()) << r.error().message;
    successors.insert(r->refresh_token());
  }
  EXPECT_EQ(successors.size(), 1u);
}

TEST_F(AccountsFlowTest, ChangePasswordKeepsOnlyTheCallersSession) {
  Make("p@example.com");
  auto a = SignIn("p@example.com");
  auto b = SignIn("p@example.com");
  ASSERT_TRUE(accounts_->ChangePassword(CallerOf(a), "correct horse battery",
                                        "another good password", Soon())
                  .ok());
  EXPECT_TRUE(accounts_->Refresh(a.refresh_token(), Soon()).ok());
  EXPECT_FALSE(accounts_->Refresh(b.refresh_token(), Soon()).ok());
  auto wrong = accounts_->ChangePassword(CallerOf(a), "nope nope nope", "yet another password",
                                         Soon());
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().fields.front().field, "currentPassword");
}

TEST_F(AccountsFlowTest, LastAdminIsProtectedAndDisablingRevokesSessions) {
  auto made =
      accounts_->EnsureAdmin("Boss@Example.com", "admin password 1", AdminPolicy::kCreateOnly,
                             Soon());
  ASSERT_TRUE(made.ok());
  EXPECT_EQ(*made, AdminOutcome::kCreated);
  EXPECT_EQ(*accounts_->EnsureAdmin("boss@example.com", "ignored password",
                                    AdminPolicy::kCreateOnly, Soon()),
            AdminOutcome::kAlreadyAdmin);
  auto boss = CallerOf(SignIn("boss@example.com", "admin password 1"));
  EXPECT_TRUE(boss.admin);
  v1::UpdateUserRequest demote;
  demote.set_id(boss.user_id);
  demote.set_role(v1::USER);
  EXPECT_EQ(accounts_->UpdateUser(boss, demote, Soon()).error().code,
            ErrorCode::kFailedPrecondition);
  EXPECT_EQ(accounts_->DeleteUser(boss, boss.user_id, Soon()).error().code,
            ErrorCode::kFailedPrecondition);

  auto u = Make("u@example.com");
  auto up = SignIn("u@example.com");
  v1::UpdateUserRequest disable;
  disable.set_id(u.id());
  disable.set_disabled(true);
  auto disabled = accounts_->UpdateUser(boss, disable, Soon());
  ASSERT_TRUE(disabled.ok());
  EXPECT_TRUE(disabled->disabled());
  EXPECT_FALSE(accounts_->Refresh(up.refresh_token(), Soon()).ok());

  // With a second admin, either may step down.
  v1::UpdateUserRequest promote;
  promote.set_id(u.id());
  promote.set_role(v1::ADMIN);
  promote.set_disabled(false);
  ASSERT_TRUE(accounts_->UpdateUser(boss, promote, Soon()).ok());
  EXPECT_TRUE(accounts_->UpdateUser(boss, demote, Soon()).ok());
}

TEST_F(AccountsFlowTest, ListUsersPagesAndTreatsThePrefixLiterally) {
  for (int i = 0; i < 5; ++i) Make("list" + std::to_string(i) + "@example.com");
  Make("l%st@example.com");
  v1::ListUsersRequest req;
  req.set_page_size(2);
  req.set_email_prefix("LIST");
  int total = 0, pages = 0;
  do {
    auto page = accounts_->ListUsers(req, Soon());
    ASSERT_TRUE(page.ok());
    total += page->users_size();
    ++pages;
    req.set_page_token(page->next_page_token());
  } while (!req.page_token().empty());
  EXPECT_EQ(total, 5);
  EXPECT_EQ(pages, 3);
  req.set_email_prefix("l%");
  req.set_page_size(0);
  auto literal = accounts_->ListUsers(req, Soon());
  ASSERT_TRUE(literal.ok());
  ASSERT_EQ(literal->users_size(), 1);
  EXPECT_EQ(literal->users(0).email(), "l%st@example.com");
}

TEST_F(AccountsFlowTest, FailedSignInsThrottlePerAccountAndPerAddress) {
  settings_.login_max_failures = 2;
  settings_.login_address_max_failures = 4;
  Make("t@example.com");
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(accounts_->Login("t@example.com", "wrong wrong wrong", {"", "1.1.1.1"}, Soon())
                  .error()
                  .code,
              ErrorCode::kUnauthenticated);
  }
  auto locked = accounts_->Login("t@example.com", "correct horse battery", {"", "2.2.2.2"}, Soon());
  ASSERT_FALSE(locked.ok());
  EXPECT_EQ(locked.error().code, ErrorCode::kResourceExhausted);
  EXPECT_GT(locked.error().retry_after_seconds, 250);  // 5 min lockout by default
  // The lock lives in the database, so another replica sees it.
  EXPECT_EQ(Count("SELECT count(*) FROM login_failures WHERE locked_until > now()"), 1);

  // Per address: different accounts from one address.
  for (int i = 0; i < 4; ++i) {
    (void)accounts_->Login("x" + std::to_string(i) + "@example.com", "wrong wrong wrong",
                           {"", "3.3.3.3"}, Soon());
  }
  auto by_address = accounts_->Login("t2@example.com", "whatever whatever", {"", "3.3.3.3"},
                                     Soon());
  EXPECT_EQ(by_address.error().code, ErrorCode::kResourceExhausted);
  EXPECT_GT(by_address.error().retry_after_seconds, 0);
}

TEST_F(AccountsFlowTest, PersonalAccessTokensIntrospectToScopedShortLivedTokens) {
  auto u = Make("pat@example.com");
  auto caller = CallerOf(SignIn("pat@example.com"));
  auto t = accounts_->CreateToken(caller, "ci", {"data:read", "data:read", "users:read"}, 0,
                                  Soon());
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_TRUE(t->token().starts_with("pat_"));
  EXPECT_EQ(t->scopes_size(), 2);
  EXPECT_EQ(Count("SELECT count(*) FROM personal_tokens WHERE token_hash = '" +
                  auth::Sha256Hex(t->token()) + "'"),
            1);
  auto info = accounts_->Introspect(t->token(), Soon());
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->active());
  EXPECT_EQ(info->subject(), u.id());
  auth::Verifier verifier(keys_->keyset(), {.issuer = "portico", .audience = "portico-api"});
  auto claims = verifier.Verify(info->access_token());
  ASSERT_TRUE(claims.ok());
  EXPECT_EQ(claims->sub, u.id());
  EXPECT_EQ(claims->scopes, (std::vector<std::string>{"data:read", "users:read"}));
  EXPECT_LE(claims->exp - claims->iat, 300);

  EXPECT_FALSE(accounts_->Introspect("pat_unknown", Soon())->active());
  EXPECT_FALSE(accounts_->Introspect("eyJhbGciOi", Soon())->active());
  // Expired.
  auto short_lived = accounts_->CreateToken(caller, "short", {"users:read"}, 60, Soon());
  ASSERT_TRUE(short_lived.ok());
  Exec("UPDATE personal_tokens SET expire_time = now() - interval '1 second' WHERE name = 'short'");
  EXPECT_FALSE(accounts_->Introspect(short_lived->token(), Soon())->active());
  // Revoked.
  ASSERT_TRUE(accounts_->RevokeToken(caller, t->id(), Soon()).ok());
  EXPECT_FALSE(accounts_->Introspect(t->token(), Soon())->active());
  EXPECT_EQ(accounts_->RevokeToken(caller, t->id(), Soon()).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(accounts_->ListTokens(caller, Soon())->tokens_size(), 1);
}

TEST_F(AccountsFlowTest, KeysRotateAndOldTokensStillVerify) {
  auto u = Make("k@example.com");
  auto before = SignIn("k@example.com");
  const std::string old_kid = keys_->Current()->kid;
  auto not_due = keys_->RotateIfDue(std::chrono::hours(24), Soon());
  ASSERT_TRUE(not_due.ok());
  EXPECT_FALSE(*not_due);
  auto rotated = keys_->RotateIfDue(std::chrono::seconds(0), Soon());
  ASSERT_TRUE(rotated.ok());
  EXPECT_TRUE(*rotated);
  EXPECT_NE(keys_->Current()->kid, old_kid);
  auto jwks = accounts_->Jwks();
  ASSERT_EQ(jwks.keys_size(), 2);
  EXPECT_EQ(jwks.keys(1).kid(), old_kid);
  auth::Verifier verifier(keys_->keyset(), {.issuer = "portico", .audience = "portico-api"});
  EXPECT_TRUE(verifier.Verify(before.access_token()).ok());
  EXPECT_TRUE(verifier.Verify(SignIn("k@example.com").access_token()).ok());
}

TEST_F(AccountsFlowTest, ANewKeyIsPublishedBeforeItSigns) {
  // Another replica's view of the same database, with the activation delay
  // the service uses: a key it has just made is published at once but signs
  // only once every replica has had time to publish it too.
  KeyRing replica(*pool_);
  replica.set_activation_delay(std::chrono::hours(1));
  ASSERT_TRUE(replica.Load(Soon()).ok());
  const std::string old_kid = replica.Current()->kid;  // the only key signs at once
  auto rotated = replica.RotateIfDue(std::chrono::seconds(0), Soon());
  ASSERT_TRUE(rotated.ok());
  ASSERT_TRUE(*rotated);
  const auto published = replica.Published();
  ASSERT_EQ(published.size(), 2u);
  EXPECT_NE(published[0].kid, old_kid);  // the new key is published...
  EXPECT_EQ(replica.Current()->kid, old_kid);  // ...but the old one still signs
  auto token = replica.Sign({.iss = "portico", .aud = "portico-api", .sub = "s", .role = "USER",
                             .jti = "j"},
                            std::chrono::seconds(60));
  ASSERT_TRUE(token.ok());
  auth::Verifier verifier(replica.keyset(), {.issuer = "portico", .audience = "portico-api"});
  EXPECT_TRUE(verifier.Verify(*token).ok());
  // Without a delay (the fixture's ring) the newest key signs.
  ASSERT_TRUE(keys_->Load(Soon()).ok());
  EXPECT_EQ(keys_->Current()->kid, published[0].kid);
}

TEST_F(AccountsFlowTest, DeletionQueuesAPurgeThatIsRetriedUntilDataAnswers) {
  auto u = Make("d@example.com");
  auto caller = CallerOf(SignIn("d@example.com"));
  int woken = 0;
  accounts_->set_on_purge_queued([&] { ++woken; });
  ASSERT_TRUE(accounts_->DeleteUser(caller, u.id(), Soon()).ok());
  EXPECT_EQ(woken, 1);
  EXPECT_EQ(Count("SELECT count(*) FROM users"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM sessions"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM purge_outbox WHERE owner_id = '" + u.id() + "'"), 1);
  EXPECT_EQ(accounts_->DeleteUser(caller, u.id(), Soon()).error().code, ErrorCode::kNotFound);

  // Nothing listens on this target: the attempt fails and is rescheduled.
  grpc::ChannelArguments args;
  PurgeDispatcher dispatcher(*pool_, *keys_, settings_,
                             grpc::CreateCustomChannel("127.0.0.1:1",
                                                       grpc::InsecureChannelCredentials(), args));
  auto delivered = dispatcher.DeliverDue();
  ASSERT_TRUE(delivered.ok());
  EXPECT_EQ(*delivered, 0);
  EXPECT_EQ(Count("SELECT count(*) FROM purge_outbox WHERE attempts = 1 AND "
                  "next_attempt_time > now() AND last_error <> ''"),
            1);
  // Not due yet: a second pass does not call again.
  EXPECT_EQ(*dispatcher.DeliverDue(), 0);
  EXPECT_EQ(Count("SELECT max(attempts) FROM purge_outbox"), 1);
}

TEST_F(AccountsFlowTest, BootstrapNeverPromotesWhoeverRegisteredTheAdminEmail) {
  // Someone registers the configured admin e-mail before the first start.
  auto squatter = Make("root@example.com");
  auto bootstrap = accounts_->EnsureAdmin("ROOT@example.com", "the real admin password",
                                          AdminPolicy::kCreateOnly, Soon());
  ASSERT_TRUE(bootstrap.ok()) << bootstrap.error().message;
  EXPECT_EQ(*bootstrap, AdminOutcome::kExistsNotAdmin);
  // Every restart runs the bootstrap again: still nothing.
  EXPECT_EQ(*accounts_->EnsureAdmin("root@example.com", "the real admin password",
                                    AdminPolicy::kCreateOnly, Soon()),
            AdminOutcome::kExistsNotAdmin);
  EXPECT_EQ(Count("SELECT count(*) FROM users WHERE role = 'ADMIN'"), 0);
  EXPECT_FALSE(CallerOf(SignIn("root@example.com")).admin);
  // Neither the bootstrap password nor a new account came from it.
  EXPECT_EQ(accounts_->Login("root@example.com", "the real admin password", {}, Soon())
                .error()
                .code,
            ErrorCode::kUnauthenticated);
  EXPECT_EQ(Count("SELECT count(*) FROM users"), 1);

  // The operator command promotes deliberately (the password is left alone).
  auto promoted = accounts_->EnsureAdmin("root@example.com", "ignored password!",
                                         AdminPolicy::kCreateOrPromote, Soon());
  ASSERT_TRUE(promoted.ok());
  EXPECT_EQ(*promoted, AdminOutcome::kPromoted);
  EXPECT_TRUE(CallerOf(SignIn("root@example.com")).admin);
  EXPECT_EQ(*accounts_->EnsureAdmin("root@example.com", "ignored password!",
                                    AdminPolicy::kCreateOrPromote, Soon()),
            AdminOutcome::kAlreadyAdmin);
  EXPECT_EQ(Count("SELECT count(*) FROM users WHERE role = 'ADMIN' AND id = '" +
                  squatter.id() + "'"),
            1);
}

// Runs `n` concurrent wrong sign-ins for `email`: how many were checked
// (kUnauthenticated: the hash ran) and how many throttled (Retry-After set).
std::pair<int, int> ConcurrentGuesses(Accounts& accounts, const std::string& email, int n) {
  std::atomic<int> checked{0}, throttled{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      // Distinct addresses: only the per-account throttle is under test.
      auto r = accounts.Login(email, "wrong guess number " + std::to_string(i),
                              {"", "10.1.0." + std::to_string(i)}, Soon());
      if (!r.ok() && r.error().code == ErrorCode::kUnauthenticated) ++checked;
      if (!r.ok() && r.error().code == ErrorCode::kResourceExhausted &&
          r.error().retry_after_seconds > 0) {
        ++throttled;
      }
    });
  }
  for (auto& t : threads) t.join();
  return {checked.load(), throttled.load()};
}

TEST_F(AccountsFlowTest, ConcurrentGuessesNeverGetPastThePerAccountLimit) {
  settings_.login_max_failures = 3;
  Make("brute@example.com");
  // Each attempt is reserved in the database before its hash runs, so however
  // many arrive at once exactly max_failures are checked and the rest refused.
  auto [checked, throttled] = ConcurrentGuesses(*accounts_, "brute@example.com", 40);
  EXPECT_EQ(checked, 3);
  EXPECT_EQ(throttled, 37);
  auto right = accounts_->Login("brute@example.com", "correct horse battery", {"", "10.2.0.1"},
                                Soon());
  ASSERT_FALSE(right.ok());
  EXPECT_EQ(right.error().code, ErrorCode::kResourceExhausted);
  EXPECT_GT(right.error().retry_after_seconds, 250);

  // An unknown e-mail behaves exactly the same.
  auto [ghost_checked, ghost_throttled] =
      ConcurrentGuesses(*accounts_, "ghost@example.com", 40);
  EXPECT_EQ(ghost_checked, 3);
  EXPECT_EQ(ghost_throttled, 37);
  EXPECT_EQ(Count("SELECT count(*) FROM login_failures WHERE locked_until > now()"), 2);

  // Once the lock has run out, the count starts afresh; a success clears it.
  Exec("UPDATE login_failures SET locked_until = now() - interval '1 second'");
  EXPECT_EQ(accounts_->Login("brute@example.com", "wrong wrong wrong", {"", "10.2.0.2"}, Soon())
                .error()
                .code,
            ErrorCode::kUnauthenticated);
  EXPECT_TRUE(
      accounts_->Login("brute@example.com", "correct horse battery", {"", "10.2.0.3"}, Soon())
          .ok());
  EXPECT_EQ(Count("SELECT count(*) FROM login_failures WHERE email = 'brute@example.com'"), 0);
}

TEST_F(AccountsFlowTest, WrongCurrentPasswordsAreThrottledLikeSignIns) {
  settings_.login_max_failures = 3;
  Make("cp@example.com");
  auto me = CallerOf(SignIn("cp@example.com"));
  for (int i = 0; i < 3; ++i) {
    auto wrong = accounts_->ChangePassword(me, "guess guess " + std::to_string(i),
                                           "a brand new password", Soon());
    ASSERT_FALSE(wrong.ok());
    EXPECT_EQ(wrong.error().code, ErrorCode::kInvalidArgument);
  }
  // Locked: even the right current password is refused, and so is sign-in.
  auto locked = accounts_->ChangePassword(me, "correct horse battery", "a brand new password",
                                          Soon());
  ASSERT_FALSE(locked.ok());
  EXPECT_EQ(locked.error().code, ErrorCode::kResourceExhausted);
  EXPECT_GT(locked.error().retry_after_seconds, 250);
  EXPECT_EQ(accounts_->Login("cp@example.com", "correct horse battery", {"", "10.3.0.1"}, Soon())
                .error()
                .code,
            ErrorCode::kResourceExhausted);
  // The password did not change.
  Exec("UPDATE login_failures SET locked_until = now() - interval '1 second'");
  EXPECT_TRUE(
      accounts_->Login("cp@example.com", "correct horse battery", {"", "10.3.0.2"}, Soon()).ok());
}

TEST_F(AccountsFlowTest, ADemotedAdminCannotReadOtherUsersWithItsOldToken) {
  ASSERT_TRUE(accounts_->EnsureAdmin("chief@example.com", "admin password 1",
                                     AdminPolicy::kCreateOnly, Soon())
                  .ok());
  auto other = Make("other@example.com");
  const auto chief = SignIn("chief@example.com", "admin password 1");

  auth::Verifier verifier(keys_->keyset(), {.issuer = "portico", .audience = "portico-api"});
  rpc::Executor calls({.name = "calls", .threads = 2, .max_queue = 16});
  rpc::Executor sign_ins({.name = "sign-in", .threads = 1, .max_queue = 16});
  UserServiceImpl service(*accounts_, verifier, calls, sign_ins);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  ASSERT_TRUE(server);
  auto stub = v1::UserService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  auto get = [&](const std::string& id) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + chief.access_token());
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetUserRequest req;
    req.set_id(id);
    v1::User resp;
    return stub->GetUser(&ctx, req, &resp).error_code();
  };
  EXPECT_EQ(get(other.id()), grpc::StatusCode::OK);
  // Demoted (the token still says ADMIN): another account is "not found" at once.
  Exec("UPDATE users SET role = 'USER' WHERE email = 'chief@example.com'");
  EXPECT_EQ(get(other.id()), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(get(CallerOf(chief).user_id), grpc::StatusCode::OK);  // its own still works
  // Promoted again, or disabled: the account's state decides.
  Exec("UPDATE users SET role = 'ADMIN' WHERE email = 'chief@example.com'");
  EXPECT_EQ(get(other.id()), grpc::StatusCode::OK);
  Exec("UPDATE users SET disabled = true WHERE email = 'chief@example.com'");
  EXPECT_EQ(get(other.id()), grpc::StatusCode::NOT_FOUND);
  server->Shutdown();
}

// A data service whose PurgeOwner calls can be held until released.
class FakeDataAdmin final : public data::v1::DataAdmin::Service {
 public:
  grpc::Status PurgeOwner(grpc::ServerContext* ctx, const data::v1::PurgeOwnerRequest* req,
                          google::protobuf::Empty*) override {
    std::unique_lock lock(mu);
    ++calls[req->owner_id()];
    ++in_flight;
    cv.notify_all();
    // Held until released; cancellation is polled (nothing signals it).
    while (hold && !ctx->IsCancelled()) cv.wait_for(lock, std::chrono::milliseconds(20));
    --in_flight;
    return ctx->IsCancelled() ? grpc::Status::CANCELLED : grpc::Status::OK;
  }
  void WaitForCalls(int n) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return in_flight >= n; });
  }
  void Release() {
    std::lock_guard lock(mu);
    hold = false;
    cv.notify_all();
  }
  std::mutex mu;
  std::condition_variable cv;
  bool hold = true;                    // guarded by mu
  int in_flight = 0;                   // guarded by mu
  std::map<std::string, int> calls;    // guarded by mu
};

class PurgeTest : public AccountsFlowTest {
 protected:
  void SetUp() override {
    AccountsFlowTest::SetUp();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&data_);
    server_ = builder.BuildAndStart();
    ASSERT_TRUE(server_);
  }
  void TearDown() override {
    data_.Release();
    if (server_) server_->Shutdown();
  }
  std::unique_ptr<PurgeDispatcher> Dispatcher() {
    return std::make_unique<PurgeDispatcher>(
        *pool_, *keys_, settings_,
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                            grpc::InsecureChannelCredentials()));
  }
  std::string DeleteOne(const std::string& email) {
    auto u = Make(email);
    EXPECT_TRUE(accounts_->DeleteUser(CallerOf(SignIn(email)), u.id(), Soon()).ok());
    return u.id();
  }
  FakeDataAdmin data_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(PurgeTest, TwoReplicasNeverDeliverTheSameRowAtOnce) {
  const std::string owner = DeleteOne("gone1@example.com");
  auto a = Dispatcher();
  auto b = Dispatcher();
  auto first = std::async(std::launch::async, [&] { return a->DeliverDue(); });
  data_.WaitForCalls(1);  // replica A is delivering the row right now
  auto second = b->DeliverDue();
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(*second, 0);
  data_.Release();
  auto delivered = first.get();
  ASSERT_TRUE(delivered.ok()) << delivered.error().message;
  EXPECT_EQ(*delivered, 1);
  {
    std::lock_guard lock(data_.mu);
    EXPECT_EQ(data_.calls[owner], 1);
  }
  EXPECT_EQ(Count("SELECT count(*) FROM purge_outbox"), 0);
}

TEST_F(PurgeTest, AStopRequestCancelsTheCallInFlightWithoutCountingAnAttempt) {
  DeleteOne("gone2@example.com");
  DeleteOne("gone3@example.com");
  auto d = Dispatcher();
  std::stop_source stop;
  auto pass = std::async(std::launch::async, [&] { return d->DeliverDue(stop.get_token()); });
  data_.WaitForCalls(1);
  stop.request_stop();
  // Returns although the data service never answers: the call was cancelled
  // and the second row was not started.
  auto delivered = pass.get();
  ASSERT_TRUE(delivered.ok()) << delivered.error().message;
  EXPECT_EQ(*delivered, 0);
  {
    std::lock_guard lock(data_.mu);
    EXPECT_EQ(data_.calls.size(), 1u);
  }
  // Both rows are due now and neither counts an attempt.
  EXPECT_EQ(Count("SELECT count(*) FROM purge_outbox WHERE attempts = 0 AND "
                  "next_attempt_time <= now()"),
            2);
}

TEST(SettingsTest, KeyRotationMustOutliveEveryTokenItsKeySigned) {
  Settings s;  // defaults: 15 min access tokens, 5 min PAT exchange, 1 min check, 30 days
  EXPECT_TRUE(CheckSettings(s).ok());
  s.key_rotation = 2 * s.access_token_ttl + s.key_check_interval;
  EXPECT_TRUE(CheckSettings(s).ok());
  s.key_rotation -= std::chrono::seconds(1);
  auto bad = CheckSettings(s);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("PORTICO_JWT_KEY_ROTATION"), std::string::npos);
  s.key_rotation = std::chrono::seconds(0);
  EXPECT_FALSE(CheckSettings(s).ok());
  // The PAT exchange lifetime counts too when it is the longest.
  s.access_token_ttl = std::chrono::seconds(60);
  s.key_rotation = 2 * std::chrono::seconds(60) + s.key_check_interval;
  EXPECT_FALSE(CheckSettings(s).ok());  // PAT exchange tokens live 300 s
  // A fixed key file never rotates.
  s.key_file = "/some/key";
  EXPECT_TRUE(CheckSettings(s).ok());
}

TEST_F(AccountsFlowTest, HousekeepingDeletesOnlyWhatExpired) {
  Make("h@example.com");
  auto live = SignIn("h@example.com");
  auto old = SignIn("h@example.com");
  Exec("UPDATE refresh_tokens SET expire_time = now() - interval '2 days' WHERE token_hash = '" +
       auth::Sha256Hex(old.refresh_token()) + "'");
  (void)accounts_->Login("gone@example.com", "wrong wrong wrong", {}, Soon());
  Exec("UPDATE login_failures SET last_failure = now() - interval '1 day'");
  auto deleted = accounts_->Housekeeping(Soon());
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(*deleted, 3);  // one token, its session, one counter
  EXPECT_EQ(Count("SELECT count(*) FROM sessions"), 1);
  EXPECT_TRUE(accounts_->Refresh(live.refresh_token(), Soon()).ok());
}

}  // namespace
}  // namespace portico::users

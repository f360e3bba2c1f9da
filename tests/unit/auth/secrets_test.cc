#include "portico/auth/secrets.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "portico/auth/jwt.h"

namespace portico::auth {
namespace {

// libsodium's cheapest Argon2id settings keep the tests fast.
const PasswordParams kFast{1, 8 * 1024 * 1024};

TEST(Passwords, HashThenVerify) {
  const auto hash = HashPassword("correct horse battery staple", kFast);
  ASSERT_TRUE(hash.ok()) << hash.error().message;
  EXPECT_EQ(hash->rfind("$argon2id$v=19$m=8192,t=1,p=1$", 0), 0u) << *hash;
  EXPECT_TRUE(VerifyPassword(*hash, "correct horse battery staple"));
  EXPECT_FALSE(VerifyPassword(*hash, "correct horse battery stapl"));
  EXPECT_FALSE(VerifyPassword(*hash, "correct horse battery staple "));
  EXPECT_FALSE(VerifyPassword(*hash, ""));
  // Salted: the same password hashes differently each time.
  const auto again = HashPassword("correct horse battery staple", kFast);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*hash, *again);
  EXPECT_TRUE(VerifyPassword(*again, "correct horse battery staple"));
}

TEST(Passwords, MalformedHashesAreFalse) {
  const auto hash = HashPassword("pw", kFast);
  ASSERT_TRUE(hash.ok());
  std::string corrupted = *hash;
  corrupted[corrupted.size() - 3] = corrupted[corrupted.size() - 3] == 'A' ? 'B' : 'A';
  for (const std::string& bad : {
           std::string(), std::string("pw"), std::string("$argon2id$"),
           hash->substr(0, hash->size() - 10), corrupted,
           std::string("$argon2i$") + hash->substr(10),  // a different algorithm
           std::string("$2b$12$abcdefghijklmnopqrstuuG8e.y8mWn3KL0t2Q2VxNPxjMs0PHJDm"),
           *hash + std::string("\0", 1), std::string(1000, '$'),
       }) {
    EXPECT_FALSE(VerifyPassword(bad, "pw")) << bad;
  }
}

TEST(Passwords, LongPasswordsAreNotTruncated) {
  std::string a(1000, 'p');
  std::string b = a;
  b[900] = 'q';
  const auto hash = HashPassword(a, kFast);
  ASSERT_TRUE(hash.ok());
  EXPECT_TRUE(VerifyPassword(*hash, a));
  EXPECT_FALSE(VerifyPassword(*hash, b));
  EXPECT_FALSE(VerifyPassword(*hash, a.substr(0, 999)));
  EXPECT_FALSE(VerifyPassword(*hash, a.substr(0, 128)));
}

TEST(Passwords, EmbeddedNulIsPartOfThePassword) {
  const std::string with_nul("ab\0cd", 5);
  const auto hash = HashPassword(with_nul, kFast);
  ASSERT_TRUE(hash.ok());
  EXPECT_TRUE(VerifyPassword(*hash, with_nul));
  EXPECT_FALSE(VerifyPassword(*hash, "ab"));
}

TEST(Passwords, NeedsRehashWhenParametersChange) {
  const auto hash = HashPassword("pw", kFast);
  ASSERT_TRUE(hash.ok());
  EXPECT_FALSE(PasswordNeedsRehash(*hash, kFast));
  EXPECT_TRUE(PasswordNeedsRehash(*hash, PasswordParams{2, 8 * 1024 * 1024}));
  EXPECT_TRUE(PasswordNeedsRehash(*hash, PasswordParams{1, 16 * 1024 * 1024}));
  EXPECT_TRUE(PasswordNeedsRehash("garbage", kFast));
  EXPECT_TRUE(PasswordNeedsRehash("", kFast));
}

TEST(Passwords, ParametersBelowTheMinimumAreABug) {
  EXPECT_THROW((void)HashPassword("pw", PasswordParams{0, 8 * 1024 * 1024}), std::invalid_argument);
  EXPECT_THROW((void)HashPassword("pw", PasswordParams{1, 1024}), std::invalid_argument);
}

TEST(Secrets, Sha256HexKnownVectors) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Secrets, RandomTokensAreUrlSafeAndUnique) {
  const std::string token = RandomToken();
  EXPECT_EQ(token.size(), 43u);  // 32 bytes, unpadded
  EXPECT_EQ(Base64UrlDecode(token)->size(), 32u);
  EXPECT_EQ(RandomToken(12).size(), 16u);
  EXPECT_EQ(RandomToken(0), "");
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string t = RandomToken();
    EXPECT_EQ(t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
              std::string::npos);
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(Secrets, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret "));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_TRUE(ConstantTimeEquals(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
  EXPECT_FALSE(ConstantTimeEquals(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

}  // namespace
}  // namespace portico::auth

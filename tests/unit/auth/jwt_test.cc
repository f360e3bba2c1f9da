#include <gtest/gtest.h>
#include <sodium.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "portico/auth/jwt.h"

namespace portico::auth {
namespace {

constexpr std::int64_t kNow = 1700000000;

Claims SampleClaims() {
  Claims c;
  c.iss = "portico-users";
  c.aud = "portico";
  c.sub = "0190c0de-0000-7000-8000-000000000001";
  c.role = "USER";
  c.iat = kNow;
  c.exp = kNow + 900;
  c.jti = "jti-1";
  return c;
}

PublicKey Public(const SigningKey& k) { return {k.kid, k.public_key}; }

std::vector<std::string> Parts(const std::string& token) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const auto dot = token.find('.', start);
    out.push_back(token.substr(start, dot == std::string::npos ? dot : dot - start));
    if (dot == std::string::npos) return out;
    start = dot + 1;
  }
}

std::string Join(const std::vector<std::string>& p) { return p[0] + "." + p[1] + "." + p[2]; }

// "header.payload" signed with `key`, for tokens Sign() would never make.
std::string SignRaw(const std::string& header, const std::string& payload, const SigningKey& key) {
  const std::string input = Base64UrlEncode(header) + "." + Base64UrlEncode(payload);
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(input.data()),
                       input.size(), key.secret_key.data());
  return input + "." + Base64UrlEncode(std::string_view(reinterpret_cast<char*>(sig), sizeof sig));
}

std::string Header(const SigningKey& key) {
  return R"({"alg":"EdDSA","typ":"JWT","kid":")" + key.kid + R"("})";
}

std::string Payload(std::string_view aud_json = R"("portico")") {
  return R"({"iss":"portico-users","aud":)" + std::string(aud_json) +
         R"(,"sub":"u1","role":"USER","iat":1700000000,"exp":1700000900,"jti":"j"})";
}

class JwtTest : public ::testing::Test {
 protected:
  JwtTest() : key_(GenerateSigningKey()), keys_(std::make_shared<KeySet>()) {
    keys_->Replace({Public(key_)});
  }

  VerifierOptions Options() {
    VerifierOptions o;
    o.issuer = "portico-users";
    o.audience = "portico";
    o.leeway = std::chrono::seconds(30);
    o.clock = [this] { return now_.load(); };
    return o;
  }

  Verifier MakeVerifier(std::size_t cache_size = 10000) {
    VerifierOptions o = Options();
    o.cache_size = cache_size;
    return Verifier(keys_, std::move(o));
  }

  void ExpectRejected(const Verifier& v, const std::string& token, const std::string& reason) {
    const auto r = v.Verify(token);
    ASSERT_FALSE(r.ok()) << token;
    EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated);
    EXPECT_EQ(r.error().message, reason) << token;
  }

  std::atomic<std::int64_t> now_{kNow};
  SigningKey key_;
  std::shared_ptr<KeySet> keys_;
};

TEST_F(JwtTest, GeneratedKeysAreDistinctWithUrlSafeKids) {
  const SigningKey other = GenerateSigningKey();
  EXPECT_EQ(key_.kid.size(), 16u);
  EXPECT_EQ(key_.kid.find_first_not_of(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  EXPECT_NE(key_.kid, other.kid);
  EXPECT_NE(key_.public_key, other.public_key);
}

TEST_F(JwtTest, SignThenVerifyRoundTripsEveryClaim) {
  Claims c = SampleClaims();
  c.role = "ADMIN";
  c.nbf = kNow - 5;
  c.scopes = {"data:read", "users:read"};
  const std::string token = Sign(c, key_);
  const auto parts = Parts(token);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(*Base64UrlDecode(parts[0]), Header(key_));
  const std::string payload = *Base64UrlDecode(parts[1]);
  EXPECT_NE(payload.find(R"("scope":"data:read users:read")"), std::string::npos) << payload;
  EXPECT_NE(payload.find(R"("nbf":1699999995)"), std::string::npos) << payload;

  const auto r = MakeVerifier().Verify(token);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->iss, c.iss);
  EXPECT_EQ(r->aud, c.aud);
  EXPECT_EQ(r->sub, c.sub);
  EXPECT_EQ(r->role, "ADMIN");
  EXPECT_EQ(r->iat, c.iat);
  EXPECT_EQ(r->exp, c.exp);
  EXPECT_EQ(r->nbf, c.nbf);
  EXPECT_EQ(r->jti, c.jti);
  EXPECT_EQ(r->scopes, c.scopes);
}

TEST_F(JwtTest, OmitsNbfAndScopeWhenUnset) {
  const std::string payload = *Base64UrlDecode(Parts(Sign(SampleClaims(), key_))[1]);
  EXPECT_EQ(payload.find("nbf"), std::string::npos);
  EXPECT_EQ(payload.find("scope"), std::string::npos);
  const auto r = MakeVerifier().Verify(Sign(SampleClaims(), key_));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->nbf, 0);
  EXPECT_TRUE(r->scopes.empty());
}

TEST_F(JwtTest, RejectsTamperedPayloadHeaderAndSignature) {
  const Verifier v = MakeVerifier(0);
  const std::string token = Sign(SampleClaims(), key_);
  auto parts = Parts(token);

  auto payload = parts;
  std::string admin = *Base64UrlDecode(parts[1]);
  admin.replace(admin.find("USER"), 4, "ADMIN");
  payload[1] = Base64UrlEncode(admin);
  ExpectRejected(v, Join(payload), "bad signature");

  auto header = parts;
  header[0] = Base64UrlEncode(R"({"alg":"EdDSA","kid":")" + key_.kid + R"("})");
  ExpectRejected(v, Join(header), "bad signature");

  auto sig = parts;
  std::string raw = *Base64UrlDecode(parts[2]);
  raw[10] = static_cast<char>(raw[10] ^ 1);
  sig[2] = Base64UrlEncode(raw);
  ExpectRejected(v, Join(sig), "bad signature");

  const SigningKey impostor{key_.kid, GenerateSigningKey().public_key, GenerateSigningKey().secret_key};
  ExpectRejected(v, Sign(SampleClaims(), impostor), "bad signature");
  EXPECT_TRUE(v.Verify(token).ok());
}

TEST_F(JwtTest, AcceptsOnlyEdDsaWithAKid) {
  const Verifier v = MakeVerifier(0);
  const std::string payload = Payload();
  EXPECT_TRUE(v.Verify(SignRaw(Header(key_), payload, key_)).ok());
  for (const char* alg : {"none", "HS256", "RS256", "ES256", "eddsa", "Ed25519"}) {
    const std::string h = std::string(R"({"alg":")") + alg + R"(","kid":")" + key_.kid + R"("})";
    ExpectRejected(v, SignRaw(h, payload, key_), "unsupported alg");
  }
  ExpectRejected(v, SignRaw(R"({"kid":")" + key_.kid + R"("})", payload, key_), "unsupported alg");
  ExpectRejected(v, SignRaw(R"({"alg":["EdDSA"],"kid":")" + key_.kid + R"("})", payload, key_),
                 "unsupported alg");
  // An unsigned token in the classic "alg: none" shape.
  ExpectRejected(v,
                 Base64UrlEncode(R"({"alg":"none","kid":")" + key_.kid + R"("})") + "." +
                     Base64UrlEncode(payload) + ".",
                 "unsupported alg");
  ExpectRejected(v, SignRaw(R"({"alg":"EdDSA","typ":"JWT"})", payload, key_), "missing kid");
  ExpectRejected(v, SignRaw(R"({"alg":"EdDSA","kid":""})", payload, key_), "missing kid");
  ExpectRejected(v, SignRaw(R"({"alg":"EdDSA","kid":7})", payload, key_), "missing kid");
  ExpectRejected(v, SignRaw(R"({"alg":"EdDSA","kid":")" + key_.kid + R"(","crit":["exp"]})", payload, key_),
                 "unsupported header");
  ExpectRejected(v, SignRaw(R"({"alg":"EdDSA","typ":"JWE","kid":")" + key_.kid + R"("})", payload, key_),
                 "unsupported typ");
}

TEST_F(JwtTest, UnknownKidIsRejectedWithoutRefresh) {
  const SigningKey stranger = GenerateSigningKey();
  ExpectRejected(MakeVerifier(), Sign(SampleClaims(), stranger), "unknown key");
}

TEST_F(JwtTest, UnknownKidTriggersOneRefreshThenRetries) {
  const SigningKey next = GenerateSigningKey();
  int refreshes = 0;
  const Verifier v(keys_, Options(), [&] {
    ++refreshes;
    keys_->Replace({Public(key_), Public(next)});
  }, std::chrono::hours(1));
  const auto r = v.Verify(Sign(SampleClaims(), next));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(refreshes, 1);
  EXPECT_TRUE(v.Verify(Sign(SampleClaims(), key_)).ok());
  EXPECT_EQ(refreshes, 1);  // known kids never refresh
}

TEST_F(JwtTest, RefreshIsRateLimited) {
  const SigningKey stranger = GenerateSigningKey();
  int refreshes = 0;
  const Verifier limited(keys_, Options(), [&] { ++refreshes; }, std::chrono::hours(1));
  for (int i = 0; i < 5; ++i) ExpectRejected(limited, Sign(SampleClaims(), stranger), "unknown key");
  EXPECT_EQ(refreshes, 1);

  int unlimited_refreshes = 0;
  const Verifier unlimited(keys_, Options(), [&] { ++unlimited_refreshes; }, std::chrono::seconds(0));
  for (int i = 0; i < 5; ++i) ExpectRejected(unlimited, Sign(SampleClaims(), stranger), "unknown key");
  EXPECT_EQ(unlimited_refreshes, 5);
}

TEST_F(JwtTest, RefreshIsRateLimitedAcrossThreads) {
  const SigningKey stranger = GenerateSigningKey();
  std::atomic<int> refreshes{0};
  const Verifier v(keys_, Options(), [&] { ++refreshes; }, std::chrono::hours(1));
  const std::string token = Sign(SampleClaims(), stranger);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) EXPECT_FALSE(v.Verify(token).ok());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(refreshes.load(), 1);
}

TEST_F(JwtTest, ExpiryHonoursLeeway) {
  const Verifier v = MakeVerifier(0);
  const std::string token = Sign(SampleClaims(), key_);  // exp = kNow + 900
  now_ = kNow + 900 + 29;
  EXPECT_TRUE(v.Verify(token).ok());
  now_ = kNow + 900 + 30;
  ExpectRejected(v, token, "expired");
  now_ = kNow + 100000;
  ExpectRejected(v, token, "expired");
}

TEST_F(JwtTest, NotBeforeHonoursLeeway) {
  const Verifier v = MakeVerifier(0);
  Claims c = SampleClaims();
  c.nbf = kNow + 100;
  const std::string token = Sign(c, key_);
  ExpectRejected(v, token, "not yet valid");
  now_ = kNow + 70;
  EXPECT_TRUE(v.Verify(token).ok());
}

TEST_F(JwtTest, IssuedInTheFutureIsRejected) {
  const Verifier v = MakeVerifier(0);
  Claims c = SampleClaims();
  c.iat = kNow + 31;
  ExpectRejected(v, Sign(c, key_), "issued in the future");
  c.iat = kNow + 30;
  EXPECT_TRUE(v.Verify(Sign(c, key_)).ok());
}

TEST_F(JwtTest, WrongIssuerOrAudienceIsRejected) {
  const Verifier v = MakeVerifier(0);
  Claims c = SampleClaims();
  c.iss = "someone-else";
  ExpectRejected(v, Sign(c, key_), "wrong issuer");
  c = SampleClaims();
  c.aud = "portico-admin";
  ExpectRejected(v, Sign(c, key_), "wrong audience");
  c.aud = "";
  ExpectRejected(v, Sign(c, key_), "wrong audience");
}

TEST_F(JwtTest, AudienceMayBeAnArray) {
  const Verifier v = MakeVerifier(0);
  const auto r = v.Verify(SignRaw(Header(key_), Payload(R"(["other","portico"])"), key_));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->aud, "portico");
  ExpectRejected(v, SignRaw(Header(key_), Payload(R"(["other"])"), key_), "wrong audience");
  ExpectRejected(v, SignRaw(Header(key_), Payload(R"([])"), key_), "wrong audience");
  ExpectRejected(v, SignRaw(Header(key_), Payload(R"(["portico",1])"), key_), "malformed claims");
  ExpectRejected(v, SignRaw(Header(key_), Payload(R"({"portico":1})"), key_), "malformed claims");
}

TEST_F(JwtTest, MalformedClaimsAreRejected) {
  const Verifier v = MakeVerifier(0);
  const std::string h = Header(key_);
  ExpectRejected(v, SignRaw(h, "[]", key_), "malformed claims");
  ExpectRejected(v, SignRaw(h, "not json", key_), "malformed claims");
  ExpectRejected(v, SignRaw(h, R"({"iss":"portico-users","aud":"portico","sub":"u","role":"USER","iat":1700000000})", key_),
                 "malformed claims");  // no exp
  ExpectRejected(v, SignRaw(h, R"({"iss":"portico-users","aud":"portico","sub":"u","role":"USER","iat":1700000000,"exp":"1700000900"})", key_),
                 "malformed claims");  // exp as a string
  ExpectRejected(v, SignRaw(h, R"({"iss":"portico-users","aud":"portico","role":"USER","iat":1700000000,"exp":1700000900})", key_),
                 "malformed claims");  // no sub
  ExpectRejected(v, SignRaw(h, R"({"iss":"portico-users","aud":"portico","sub":"u","role":"USER","iat":1700000000,"exp":-1})", key_),
                 "malformed claims");
  ExpectRejected(v, SignRaw(h, R"({"iss":"portico-users","aud":"portico","sub":"u","role":"USER","iat":1700000000,"exp":1700000900,"scope":["a"]})", key_),
                 "malformed claims");
  const auto fractional = v.Verify(SignRaw(h, R"({"iss":"portico-users","aud":"portico","sub":"u","role":"USER","iat":1700000000.5,"exp":1700000900.9})", key_));
  ASSERT_TRUE(fractional.ok()) << fractional.error().message;
  EXPECT_EQ(fractional->exp, 1700000900);
}

TEST_F(JwtTest, MalformedTokensAreRejected) {
  const Verifier v = MakeVerifier(0);
  const std::string token = Sign(SampleClaims(), key_);
  const auto parts = Parts(token);
  for (const std::string& bad : {
           std::string(), std::string("."), std::string(".."), std::string("..."),
           parts[0] + "." + parts[1],                             // two parts
           token + ".",                                           // four parts
           token + "." + parts[2],                                // four parts
           parts[0] + "=." + parts[1] + "." + parts[2],           // padding
           parts[0] + "." + parts[1] + "." + parts[2] + "==",     // padding
           parts[0] + "." + parts[1] + "." + parts[2] + "A",      // 65+ bytes of signature
           parts[0] + "." + parts[1] + "." + parts[2].substr(4),  // short signature
           "+" + token.substr(1),                                 // standard alphabet
           parts[0] + " ." + parts[1] + "." + parts[2],           // whitespace
           Base64UrlEncode("{") + "." + parts[1] + "." + parts[2],
           Base64UrlEncode("[]") + "." + parts[1] + "." + parts[2],
       }) {
    const auto r = v.Verify(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated);
  }
  ExpectRejected(v, token + "." + parts[2], "malformed");
  ExpectRejected(v, "a.b", "malformed");
  // A signature whose last character carries non-zero unused bits would be a
  // second spelling of the same token.
  std::string noncanonical = parts[2];
  noncanonical.back() = static_cast<char>(noncanonical.back() + 1);
  ExpectRejected(v, parts[0] + "." + parts[1] + "." + noncanonical, "malformed");
}

TEST_F(JwtTest, OversizedTokensAreRejectedBeforeParsing) {
  const Verifier v = MakeVerifier(0);
  Claims c = SampleClaims();
  c.sub = std::string(9000, 'x');
  ExpectRejected(v, Sign(c, key_), "token too large");
  ExpectRejected(v, std::string(1 << 20, 'A'), "token too large");
  c.sub = std::string(4000, 'x');
  EXPECT_TRUE(v.Verify(Sign(c, key_)).ok());
}

TEST_F(JwtTest, CacheReturnsSameClaimsAndStillExpires) {
  const Verifier v = MakeVerifier();
  Claims c = SampleClaims();
  c.scopes = {"data:read"};
  const std::string token = Sign(c, key_);
  const auto first = v.Verify(token);
  const auto second = v.Verify(token);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->sub, first->sub);
  EXPECT_EQ(second->jti, first->jti);
  EXPECT_EQ(second->scopes, first->scopes);
  EXPECT_EQ(second->exp, first->exp);
  now_ = c.exp + 30;
  ExpectRejected(v, token, "expired");
  ExpectRejected(v, token, "expired");
}

TEST_F(JwtTest, CachedTokenStopsVerifyingWhenItsKeyLeavesTheSet) {
  const Verifier v = MakeVerifier();
  const std::string token = Sign(SampleClaims(), key_);
  ASSERT_TRUE(v.Verify(token).ok());
  const SigningKey next = GenerateSigningKey();
  keys_->Replace({Public(next)});
  ExpectRejected(v, token, "unknown key");
  // Same kid, different key bytes: the cached result is not reused.
  keys_->Replace({PublicKey{key_.kid, next.public_key}});
  ExpectRejected(v, token, "bad signature");
  keys_->Replace({Public(key_)});
  EXPECT_TRUE(v.Verify(token).ok());
}

TEST_F(JwtTest, SmallCacheEvictsButStillVerifies) {
  const Verifier v = MakeVerifier(2);
  std::vector<std::string> tokens;
  for (int i = 0; i < 5; ++i) {
    Claims c = SampleClaims();
    c.jti = "jti-" + std::to_string(i);
    tokens.push_back(Sign(c, key_));
  }
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 5; ++i) {
      const auto r = v.Verify(tokens[i]);
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(r->jti, "jti-" + std::to_string(i));
    }
  }
}

TEST_F(JwtTest, KeyRotationKeepsOldTokensValidWhileTheOldKeyIsPublished) {
  const Verifier v = MakeVerifier(0);
  const std::string old_token = Sign(SampleClaims(), key_);
  const SigningKey next = GenerateSigningKey();
  keys_->Replace({Public(next), Public(key_)});
  EXPECT_TRUE(v.Verify(old_token).ok());
  EXPECT_TRUE(v.Verify(Sign(SampleClaims(), next)).ok());
  keys_->Replace({Public(next)});
  ExpectRejected(v, old_token, "unknown key");
  EXPECT_TRUE(v.Verify(Sign(SampleClaims(), next)).ok());
}

TEST_F(JwtTest, KeySetFindsByKid) {
  const SigningKey other = GenerateSigningKey();
  KeySet set;
  EXPECT_TRUE(set.empty());
  set.Replace({Public(key_), Public(other)});
  EXPECT_FALSE(set.empty());
  EXPECT_EQ(set.All().size(), 2u);
  EXPECT_EQ(set.Find(other.kid), other.public_key);
  EXPECT_EQ(set.Find("nope"), std::nullopt);
}

TEST_F(JwtTest, ConcurrentVerificationIsConsistent) {
  const SigningKey other = GenerateSigningKey();
  keys_->Replace({Public(key_), Public(other)});
  const Verifier v = MakeVerifier(16);
  std::vector<std::string> good;
  for (int i = 0; i < 32; ++i) {
    Claims c = SampleClaims();
    c.sub = "user-" + std::to_string(i);
    good.push_back(Sign(c, i % 2 ? key_ : other));
  }
  std::string bad = good[0];
  bad[bad.size() - 5] = bad[bad.size() - 5] == 'A' ? 'B' : 'A';
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 400; ++i) {
        const int n = (i * 7 + t) % 32;
        const auto r = v.Verify(good[n]);
        if (!r.ok() || r->sub != "user-" + std::to_string(n)) ++failures;
        if (v.Verify(bad).ok()) ++failures;
        if (i % 50 == 0) keys_->Replace({Public(key_), Public(other)});
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(Base64Url, Rfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},         {"f", "Zg"},          {"fo", "Zm8"},        {"foo", "Zm9v"},
      {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64UrlEncode(plain), encoded);
    EXPECT_EQ(Base64UrlDecode(encoded), plain);
  }
  EXPECT_EQ(Base64UrlDecode("Zg=="), "f");
  EXPECT_EQ(Base64UrlDecode("Zm8="), "fo");
  EXPECT_EQ(Base64UrlDecode("Zm9vYmE="), "fooba");
}

TEST(Base64Url, UsesTheUrlSafeAlphabet) {
  const std::string bytes("\xfb\xff\xbf\x00\x01", 5);
  EXPECT_EQ(Base64UrlEncode(bytes), "-_-_AAE");
  EXPECT_EQ(Base64UrlDecode("-_-_AAE"), bytes);
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(Base64UrlDecode(Base64UrlEncode(all)), all);
}

TEST(Base64Url, RejectsInvalidInput) {
  for (const char* bad : {"+/", "Zm9v+", "Zm9/", "Z", "Zm9vY", "Zg=", "Zg===", "Z===", "=",
                          "Zm=8", "Zm 9v", "Zm9v\n", "Zh", "Zm9=", "Zg==Zg=="}) {
    EXPECT_EQ(Base64UrlDecode(bad), std::nullopt) << bad;
  }
  EXPECT_EQ(Base64UrlDecode(std::string_view("Zg\0", 3)), std::nullopt);
}

TEST(Jwks, EncodeDecodeRoundTrip) {
  const SigningKey a = GenerateSigningKey();
  const SigningKey b = GenerateSigningKey();
  const std::string json = EncodeJwks({Public(a), Public(b)});
  EXPECT_NE(json.find(R"("kty":"OKP")"), std::string::npos);
  EXPECT_NE(json.find(R"("crv":"Ed25519")"), std::string::npos);
  EXPECT_NE(json.find(R"("alg":"EdDSA")"), std::string::npos);
  EXPECT_NE(json.find(R"("use":"sig")"), std::string::npos);
  const auto keys = DecodeJwks(json);
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].kid, a.kid);
  EXPECT_EQ((*keys)[0].key, a.public_key);
  EXPECT_EQ((*keys)[1].kid, b.kid);
  EXPECT_EQ((*keys)[1].key, b.public_key);
  const auto empty = DecodeJwks(EncodeJwks({}));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(Jwks, Rfc8037ExampleKey) {
  // RFC 8037 Appendix A.2.
  const auto key = PublicKeyFromJwk("OKP", "Ed25519", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "k");
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ(key->key[0], 0xd7);
  EXPECT_EQ(key->key[31], 0x1a);
}

TEST(Jwks, SkipsOtherKeyTypes) {
  const SigningKey a = GenerateSigningKey();
  const std::string x = Base64UrlEncode(
      std::string_view(reinterpret_cast<const char*>(a.public_key.data()), a.public_key.size()));
  const std::string json = R"({"keys":[
    {"kty":"RSA","kid":"rsa1","n":"0vx7agoebGcQSuuPiLJXZpt","e":"AQAB","alg":"RS256"},
    {"kty":"EC","crv":"P-256","kid":"ec1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x"},
    {"kty":"OKP","crv":"X25519","kid":"x1","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"},
    {"kty":"OKP","crv":"Ed25519","kid":"enc","use":"enc","x":")" + x + R"("},
    {"kty":"OKP","crv":"Ed25519","kid":")" + a.kid + R"(","x":")" + x + R"("}
  ]})";
  const auto keys = DecodeJwks(json);
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].kid, a.kid);
  EXPECT_EQ((*keys)[0].key, a.public_key);
}

TEST(Jwks, RejectsBadKeysAndDocuments) {
  const SigningKey a = GenerateSigningKey();
  const std::string x = Base64UrlEncode(
      std::string_view(reinterpret_cast<const char*>(a.public_key.data()), a.public_key.size()));
  const auto doc = [](const std::string& jwk) { return R"({"keys":[)" + jwk + "]}"; };
  const auto okp = [](const std::string& xv, const std::string& kid) {
    return R"({"kty":"OKP","crv":"Ed25519","x":")" + xv + R"(","kid":")" + kid + R"("})";
  };
  for (const std::string& bad : {
           std::string(""), std::string("{"), std::string("[]"), std::string("{}"),
           std::string(R"({"keys":{}})"), std::string(R"({"keys":[1]})"),
           doc(okp(x.substr(0, 42), "k")),           // 31 bytes
           doc(okp(x + "AAAA", "k")),                // 35 bytes
           doc(okp(x + "=", "k")),                   // padding
           doc(okp("not base64!", "k")),
           doc(okp(x, "")),                          // empty kid
           doc(R"({"kty":"OKP","crv":"Ed25519","kid":"k"})"),  // no x
           doc(R"({"crv":"Ed25519","x":")" + x + R"(","kid":"k"})"),  // no kty
           doc(okp(x, "k") + "," + okp(x, "k")),     // duplicate kid
           doc(okp(std::string(43, 'A'), "k")),      // small-order point
       }) {
    const auto r = DecodeJwks(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(PublicKeyFromJwk("RSA", "Ed25519", x, "k").ok());
  EXPECT_FALSE(PublicKeyFromJwk("OKP", "Ed448", x, "k").ok());
  EXPECT_FALSE(PublicKeyFromJwk("OKP", "Ed25519", x, "").ok());
  EXPECT_TRUE(PublicKeyFromJwk("OKP", "Ed25519", x, "k").ok());
}

TEST(Jwks, DecodedKeysVerifyTokens) {
  const SigningKey a = GenerateSigningKey();
  const auto decoded = DecodeJwks(EncodeJwks({Public(a)}));
  ASSERT_TRUE(decoded.ok());
  auto set = std::make_shared<KeySet>();
  set->Replace(*decoded);
  VerifierOptions o;
  o.issuer = "portico-users";
  o.audience = "portico";
  o.clock = [] { return kNow; };
  const Verifier v(set, o);
  EXPECT_TRUE(v.Verify(Sign(SampleClaims(), a)).ok());
}

}  // namespace
}  // namespace portico::auth

// The gateway's protection pieces that need no server: address parsing and
// CIDR matching, the X-Forwarded-For walk, the token buckets (with an
// explicit clock), the JSON nesting scan, Accept-Encoding and gzip, CORS
// origin lists.
#include "protection.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <string>

#include "client_address.h"
#include "compress.h"
#include "cors.h"

namespace portico::gateway {
namespace {

using namespace std::chrono_literals;

CidrSet Cidrs(std::string_view list) {
  auto set = CidrSet::Parse(list);
  EXPECT_TRUE(set.ok()) << (set.ok() ? "" : set.error().message);
  return set.ok() ? *set : CidrSet();
}

bool In(const CidrSet& set, std::string_view address) {
  auto a = IpAddress::Parse(address);
  EXPECT_TRUE(a.has_value()) << address;
  return a && set.Contains(*a);
}

TEST(IpAddress, ParsesBothFamiliesWithOrWithoutPorts) {
  EXPECT_EQ(IpAddress::Parse("203.0.113.7")->ToString(), "203.0.113.7");
  EXPECT_EQ(IpAddress::Parse(" 203.0.113.7:4711 ")->ToString(), "203.0.113.7");
  EXPECT_EQ(IpAddress::Parse("2001:DB8:0::1")->ToString(), "2001:db8::1");
  EXPECT_EQ(IpAddress::Parse("[2001:db8::1]:443")->ToString(), "2001:db8::1");
  EXPECT_EQ(IpAddress::Parse("[2001:db8::1]")->ToString(), "2001:db8::1");
  // An IPv4-mapped IPv6 address is the IPv4 address.
  EXPECT_EQ(IpAddress::Parse("::ffff:10.1.2.3")->ToString(), "10.1.2.3");
  EXPECT_TRUE(IpAddress::Parse("::ffff:10.1.2.3")->v4);
  for (std::string_view bad :
       {"", "unknown", "1.2.3", "1.2.3.4.5", "300.1.1.1", "1.2.3.4:", "1.2.3.4:99999x",
        "2001:db8::1:80x", "[2001:db8::1", "[1.2.3.4]", "[::1]x", "_hidden", "1.2.3.4, 5.6.7.8"}) {
    EXPECT_FALSE(IpAddress::Parse(bad).has_value()) << bad;
  }
}

TEST(CidrSet, MatchesPrefixesOfEitherFamily) {
  const CidrSet set = Cidrs("10.0.0.0/8, 192.168.1.0/25,2001:db8:abcd::/48, 127.0.0.1, ::1");
  EXPECT_TRUE(In(set, "10.255.0.1"));
  EXPECT_FALSE(In(set, "11.0.0.1"));
  EXPECT_TRUE(In(set, "192.168.1.127"));
  EXPECT_FALSE(In(set, "192.168.1.128"));  // /25: the upper half is out
  EXPECT_TRUE(In(set, "2001:db8:abcd:12::5"));
  EXPECT_FALSE(In(set, "2001:db8:abce::5"));
  EXPECT_TRUE(In(set, "127.0.0.1"));
  EXPECT_FALSE(In(set, "127.0.0.2"));
  EXPECT_TRUE(In(set, "::1"));
  EXPECT_TRUE(In(set, "::ffff:10.9.9.9"));      // mapped IPv4 matches IPv4 networks
  EXPECT_FALSE(In(Cidrs("::/0"), "10.0.0.1"));  // families never mix
  EXPECT_TRUE(In(Cidrs("0.0.0.0/0"), "8.8.8.8"));
  EXPECT_TRUE(Cidrs("").empty());
}

TEST(CidrSet, RejectsMalformedEntriesNamingThem) {
  for (std::string_view bad : {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "::/129", "example.com",
                               "10.0.0.1/8", "10.0.0.0/8,nope"}) {
    auto set = CidrSet::Parse(bad);
    ASSERT_FALSE(set.ok()) << bad;
    EXPECT_EQ(set.error().code, ErrorCode::kInvalidArgument);
  }
  auto stray = CidrSet::Parse("10.0.0.1/8");
  ASSERT_FALSE(stray.ok());
  EXPECT_NE(stray.error().message.find("10.0.0.0/8"), std::string::npos) << stray.error().message;
}

TEST(ResolveClientAddress, IgnoresForwardedForFromAnUntrustedPeer) {
  const CidrSet trusted = Cidrs("10.0.0.0/8");
  EXPECT_EQ(ResolveClientAddress("198.51.100.9", {"203.0.113.7"}, trusted), "198.51.100.9");
  EXPECT_EQ(ResolveClientAddress("10.0.0.2", {"203.0.113.7"}, CidrSet()), "10.0.0.2");
  EXPECT_EQ(ResolveClientAddress("10.0.0.2", {}, trusted), "10.0.0.2");
}

TEST(ResolveClientAddress, WalksFromTheRightSkippingTrustedHops) {
  const CidrSet trusted = Cidrs("10.0.0.0/8, 2001:db8::/32");
  // The leftmost entry is whatever the client claimed: never believed while
  // an untrusted hop stands to its right.
  EXPECT_EQ(ResolveClientAddress("10.0.0.2", {"6.6.6.6, 203.0.113.7, 10.1.1.1"}, trusted),
            "203.0.113.7");
  // Several header lines form one list, in order.
  EXPECT_EQ(ResolveClientAddress("10.0.0.2", {"6.6.6.6", "203.0.113.7", "10.1.1.1"}, trusted),
            "203.0.113.7");
  EXPECT_EQ(ResolveClientAddress("10.0.0.2", {"[2001:db9::7]:5000, 2001:db8::1"}, trusted),
            "2001:db9::7");
  // Every hop trusted: the leftmost is the client.
  EXPECT_EQ(ResolveClientAddress("10.0.0.2", {"10.3.3.3, 10.1.1.1"}, trusted), "10.3.3.3");
  // Garbage ends the walk at the trusted hop that wrote it.
  EXPECT_EQ(ResolveClientAddress("10.0.0.2", {"203.0.113.7, unknown, 10.1.1.1"}, trusted),
            "10.1.1.1");
  EXPECT_EQ(ResolveClientAddress("10.0.0.2", {"unknown"}, trusted), "10.0.0.2");
  EXPECT_EQ(ResolveClientAddress("::ffff:10.0.0.2", {"203.0.113.7"}, trusted), "203.0.113.7");
}

TEST(RateLimitKey, KeysIpv6ByItsSlash64) {
  EXPECT_EQ(RateLimitKey("203.0.113.7"), "203.0.113.7");
  EXPECT_EQ(RateLimitKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(RateLimitKey("2001:db8:1:2:bbbb::9"), RateLimitKey("2001:db8:1:2:aaaa::1"));
  EXPECT_NE(RateLimitKey("2001:db8:1:3::1"), RateLimitKey("2001:db8:1:2::1"));
}

TEST(TokenBuckets, AllowsTheBurstThenTheRateAndSaysWhenToRetry) {
  TokenBuckets buckets(/*rate=*/2, /*burst=*/3);
  const auto t0 = TokenBuckets::Clock::time_point() + 1h;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(buckets.Take("a", t0), 0) << i;
  EXPECT_EQ(buckets.Take("a", t0), 1);  // one token takes 0.5 s: retry in 1 s
  EXPECT_EQ(buckets.Take("b", t0), 0);  // another client has its own bucket
  EXPECT_EQ(buckets.Take("a", t0 + 400ms), 1);
  EXPECT_EQ(buckets.Take("a", t0 + 500ms), 0);  // refilled by one
  EXPECT_EQ(buckets.Take("a", t0 + 500ms), 1);
  EXPECT_EQ(buckets.Take("a", t0 + 10s), 0);  // full again, never above the burst
  EXPECT_EQ(buckets.Take("a", t0 + 10s), 0);
  EXPECT_EQ(buckets.Take("a", t0 + 10s), 0);
  EXPECT_EQ(buckets.Take("a", t0 + 10s), 1);
}

TEST(TokenBuckets, RetryAfterGrowsWithASlowRate) {
  TokenBuckets buckets(/*rate=*/0.1, /*burst=*/1);
  const auto t0 = TokenBuckets::Clock::time_point() + 1h;
  EXPECT_EQ(buckets.Take("a", t0), 0);
  EXPECT_EQ(buckets.Take("a", t0), 10);
  EXPECT_EQ(buckets.Take("a", t0 + 4s), 6);
}

TEST(TokenBuckets, ZeroRateIsOff) {
  TokenBuckets buckets(0, 1);
  const auto t0 = TokenBuckets::Clock::time_point() + 1h;
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(buckets.Take("a", t0), 0);
  EXPECT_EQ(buckets.size(), 0u);
}

TEST(TokenBuckets, IdleBucketsAreEvictedAndMemoryIsBounded) {
  TokenBuckets buckets(/*rate=*/10, /*burst=*/10, /*max_clients=*/100);
  const auto t0 = TokenBuckets::Clock::time_point() + 1h;
  for (int i = 0; i < 100; ++i) buckets.Take("c" + std::to_string(i), t0);
  EXPECT_EQ(buckets.size(), 100u);
  // A flood of new clients while all 100 are busy: they share one overflow
  // bucket (burst 10) instead of growing the map.
  int allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += buckets.Take("new" + std::to_string(i), t0) == 0;
  EXPECT_EQ(allowed, 10);
  EXPECT_LE(buckets.size(), 101u);
  // Two seconds later every bucket is full again: the next sweep drops them.
  EXPECT_EQ(buckets.Take("late", t0 + 2s), 0);
  EXPECT_EQ(buckets.size(), 1u);
}

TEST(JsonDeeperThan, CountsNestingOutsideStrings) {
  EXPECT_FALSE(JsonDeeperThan("{}", 1));
  EXPECT_TRUE(JsonDeeperThan("{\"a\":[]}", 1));
  EXPECT_FALSE(JsonDeeperThan("{\"a\":[1,{\"b\":2}]}", 3));
  EXPECT_TRUE(JsonDeeperThan("{\"a\":[1,{\"b\":2}]}", 2));
  // Siblings do not add up.
  EXPECT_FALSE(JsonDeeperThan("[[1],[2],[3],{\"x\":1}]", 2));
  // Brackets in strings, escaped quotes included, do not count.
  EXPECT_FALSE(JsonDeeperThan(R"({"a":"[[[[{{{{","b":"\"[[[[\\","c":[]})", 2));
  EXPECT_TRUE(JsonDeeperThan(R"({"a":"\\","b":[[]]})", 2));
  auto nested = [](int depth) {
    return std::string(static_cast<std::size_t>(depth), '[') +
           std::string(static_cast<std::size_t>(depth), ']');
  };
  EXPECT_FALSE(JsonDeeperThan(nested(32), 32));
  EXPECT_TRUE(JsonDeeperThan(nested(33), 32));
  // A body far too deep is rejected without reading it all.
  EXPECT_TRUE(JsonDeeperThan(std::string(1 << 20, '['), 32));
  EXPECT_FALSE(JsonDeeperThan("", 1));
}

std::string Gunzip(const std::string& in) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  std::string out(in.size() * 20 + 1024, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  inflateEnd(&z);
  return out;
}

TEST(Gzip, RoundTrips) {
  std::string text;
  for (int i = 0; i < 500; ++i) text += "{\"id\":" + std::to_string(i) + ",\"name\":\"item\"},";
  const std::string zipped = Gzip(text);
  EXPECT_LT(zipped.size(), text.size() / 4);
  ASSERT_GE(zipped.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(zipped[0]), 0x1f);  // gzip magic
  EXPECT_EQ(static_cast<unsigned char>(zipped[1]), 0x8b);
  EXPECT_EQ(Gunzip(zipped), text);
  EXPECT_EQ(Gunzip(Gzip("")), "");
}

TEST(AcceptsGzip, ReadsCodingsAndQValues) {
  EXPECT_TRUE(AcceptsGzip("gzip"));
  EXPECT_TRUE(AcceptsGzip("deflate, GZIP;q=0.5, br"));
  EXPECT_TRUE(AcceptsGzip("x-gzip"));
  EXPECT_TRUE(AcceptsGzip("*"));
  EXPECT_FALSE(AcceptsGzip(""));
  EXPECT_FALSE(AcceptsGzip("identity"));
  EXPECT_FALSE(AcceptsGzip("br, deflate"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip; q=0.000"));
  EXPECT_FALSE(AcceptsGzip("*, gzip;q=0"));  // an explicit refusal wins over *
  EXPECT_FALSE(AcceptsGzip("*;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=bogus"));
  EXPECT_FALSE(AcceptsGzip("gzipx"));
}

TEST(CorsPolicy, ParsesExactOriginsAndTheWildcard) {
  auto off = CorsPolicy::Parse("", 600s);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->enabled());
  EXPECT_FALSE(off->Allows("https://app.example.com"));

  auto exact = CorsPolicy::Parse("https://App.Example.com, http://localhost:3000", 600s);
  ASSERT_TRUE(exact.ok());
  EXPECT_TRUE(exact->enabled());
  EXPECT_TRUE(exact->Allows("https://app.example.com"));
  EXPECT_TRUE(exact->Allows("http://localhost:3000"));
  EXPECT_FALSE(exact->Allows("http://localhost:3001"));
  EXPECT_FALSE(exact->Allows("https://app.example.com.evil.test"));
  EXPECT_FALSE(exact->Allows("null"));
  EXPECT_FALSE(exact->Allows(""));
  HttpResponse r;
  exact->AddResponseHeaders("https://app.example.com", r);
  EXPECT_EQ(r.headers.at(0).second, "https://app.example.com");
  EXPECT_EQ(r.headers.at(1).first, "Access-Control-Allow-Credentials");

  auto any = CorsPolicy::Parse("*", 600s);
  ASSERT_TRUE(any.ok());
  EXPECT_TRUE(any->Allows("https://whoever.test"));
  HttpResponse w;
  any->AddResponseHeaders("https://whoever.test", w);
  EXPECT_EQ(w.headers.at(0).second, "*");  // and no credentials with *
  for (const auto& [k, v] : w.headers) EXPECT_NE(k, "Access-Control-Allow-Credentials");

  for (std::string_view bad : {"app.example.com", "https://app.example.com/", "ftp://x",
                               "https://app.example.com/path", "https://"}) {
    EXPECT_FALSE(CorsPolicy::Parse(bad, 600s).ok()) << bad;
  }
}

}  // namespace
}  // namespace portico::gateway

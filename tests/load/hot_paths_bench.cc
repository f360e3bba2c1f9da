// Google Benchmark of the per-request hot paths: token verification (cold
// and cached), route matching, and JSON <-> protobuf transcoding of a
// typical item. Results and the command that produced them: docs/performance.md.
#include <benchmark/benchmark.h>
#include <google/protobuf/message.h>

#include <chrono>
#include <string>

#include "portico/auth/jwt.h"
#include "portico/auth/secrets.h"
#include "portico/core/uuid.h"
#include "portico/transcode/route_table.h"
#include "portico/transcode/transcoder.h"

namespace {

using namespace portico;

std::int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Keys {
  auth::SigningKey key = auth::GenerateSigningKey();
  std::shared_ptr<auth::KeySet> set = std::make_shared<auth::KeySet>();
  Keys() { set->Replace({{key.kid, key.public_key}}); }
  std::string Token() const {
    return auth::Sign({.iss = "portico", .aud = "portico-api", .sub = NewUuidV7(),
                       .role = "USER", .iat = Now(), .exp = Now() + 900, .jti = NewUuidV7()},
                      key);
  }
};

void BM_JwtSign(benchmark::State& state) {
  Keys keys;
  for (auto _ : state) benchmark::DoNotOptimize(keys.Token());
}
BENCHMARK(BM_JwtSign);

// Every token different: the signature check runs each time.
void BM_JwtVerifyUncached(benchmark::State& state) {
  Keys keys;
  auth::Verifier verifier(keys.set, {.issuer = "portico", .audience = "portico-api",
                                     .cache_size = 1});
  std::vector<std::string> tokens;
  for (int i = 0; i < 256; ++i) tokens.push_back(keys.Token());
  std::size_t i = 0;
  for (auto _ : state) {
    auto claims = verifier.Verify(tokens[i++ % tokens.size()]);
    if (!claims.ok()) state.SkipWithError("verify failed");
  }
}
BENCHMARK(BM_JwtVerifyUncached);

// The same token again (a client's requests within 15 minutes): cache hit.
void BM_JwtVerifyCached(benchmark::State& state) {
  Keys keys;
  auth::Verifier verifier(keys.set, {.issuer = "portico", .audience = "portico-api"});
  const std::string token = keys.Token();
  for (auto _ : state) {
    auto claims = verifier.Verify(token);
    if (!claims.ok()) state.SkipWithError("verify failed");
  }
}
BENCHMARK(BM_JwtVerifyCached)->Threads(1)->Threads(2);

const transcode::RouteTable& Routes() {
  static const transcode::RouteTable table =
      *transcode::RouteTable::Build({"portico.users.v1.AuthService",
                                               "portico.users.v1.UserService",
                                               "portico.data.v1.DataService"});
  return table;
}

void BM_RouteMatch(benchmark::State& state) {
  const auto& routes = Routes();
  const std::string path = "/v1/collections/notes/items/" + NewUuidV7();
  for (auto _ : state) {
    auto m = routes.Match("GET", path);
    benchmark::DoNotOptimize(m.route);
  }
}
BENCHMARK(BM_RouteMatch);

constexpr std::string_view kItemBody =
    R"({"data":{"title":"Buy milk","done":false,"tags":["home","errand"],"priority":3,)"
    R"("notes":"two litres, the organic one","due":"2026-11-23T09:00:00Z"}})";

void BM_TranscodeCreateItemRequest(benchmark::State& state) {
  auto m = Routes().Match("POST", "/v1/collections/notes/items");
  for (auto _ : state) {
    auto req = transcode::BuildRequest(*m.route, m.vars, "", kItemBody);
    if (!req.ok()) state.SkipWithError("build failed");
    benchmark::DoNotOptimize(req);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kItemBody.size()));
}
BENCHMARK(BM_TranscodeCreateItemRequest);

void BM_RenderItemResponse(benchmark::State& state) {
  auto m = Routes().Match("POST", "/v1/collections/notes/items");
  auto req = transcode::BuildRequest(*m.route, m.vars, "", kItemBody);
  // An Item carrying the request's data, as the service returns it.
  auto resp = transcode::NewResponse(*m.route);
  const auto* desc = resp->GetDescriptor();
  const auto* refl = resp->GetReflection();
  refl->SetString(resp.get(), desc->FindFieldByName("id"), NewUuidV7());
  refl->SetString(resp.get(), desc->FindFieldByName("collection"), "notes");
  refl->SetString(resp.get(), desc->FindFieldByName("owner_id"), NewUuidV7());
  refl->SetInt64(resp.get(), desc->FindFieldByName("version"), 1);
  refl->MutableMessage(resp.get(), desc->FindFieldByName("data"))
      ->CopyFrom((*req)->GetReflection()->GetMessage(
          **req, (*req)->GetDescriptor()->FindFieldByName("data")));
  for (auto _ : state) {
    auto body = transcode::RenderResponse(*m.route, *resp);
    if (!body.ok()) state.SkipWithError("render failed");
    benchmark::DoNotOptimize(body);
  }
}
BENCHMARK(BM_RenderItemResponse);

// The cost a sign-in pays on the hash workers (defaults: m=19 MiB, t=2).
void BM_Argon2idDefault(benchmark::State& state) {
  auth::PasswordParams params;
  for (auto _ : state) benchmark::DoNotOptimize(auth::HashPassword("correct horse battery", params));
}
BENCHMARK(BM_Argon2idDefault)->Unit(benchmark::kMillisecond)->Iterations(10);

}  // namespace

BENCHMARK_MAIN();

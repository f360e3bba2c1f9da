// Ed25519 JWS signing and verification (RFC 7515, RFC 7519, RFC 8037).

#include "portico/auth/jwt.h"

#include <sodium.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <list>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "internal.h"
#include "portico/auth/secrets.h"

namespace portico::auth {
namespace {

namespace json = boost::json;

// Bigger tokens are rejected before any parsing; ours are a few hundred bytes.
constexpr std::size_t kMaxTokenSize = 8 * 1024;
// NumericDates outside [0, year 9999] are malformed; the bound also keeps
// the leeway arithmetic far from overflow.
constexpr std::int64_t kMaxNumericDate = 253402300799;

std::string_view View(const json::string& s) { return {s.data(), s.size()}; }

Error Reject(std::string reason) { return Error::Unauthenticated(std::move(reason)); }

std::int64_t SystemNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Parses `text` as one JSON object; nullopt on anything else.
std::optional<json::object> ParseObject(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

// A NumericDate (RFC 7519 §2): integer or fractional seconds, truncated.
std::optional<std::int64_t> NumericDate(const json::value& v) {
  std::int64_t n = 0;
  if (v.is_int64()) {
    n = v.get_int64();
  } else if (v.is_uint64()) {
    if (v.get_uint64() > static_cast<std::uint64_t>(kMaxNumericDate)) return std::nullopt;
    n = static_cast<std::int64_t>(v.get_uint64());
  } else if (v.is_double()) {
    const double d = v.get_double();
    if (!std::isfinite(d) || d < 0 || d > static_cast<double>(kMaxNumericDate)) return std::nullopt;
    n = static_cast<std::int64_t>(d);
  } else {
    return std::nullopt;
  }
  if (n < 0 || n > kMaxNumericDate) return std::nullopt;
  return n;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

const json::string* StringMember(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(json::string_view(key.data(), key.size()));
  return v ? v->if_string() : nullptr;
}

// Time checks shared by fresh verifications and cache hits.
Status CheckTimes(const Claims& c, std::int64_t now, std::int64_t leeway) {
  if (now >= c.exp + leeway) return Reject("expired");
  if (c.nbf != 0 && now + leeway < c.nbf) return Reject("not yet valid");
  if (c.iat > now + leeway) return Reject("issued in the future");
  return {};
}

// Reads the claims of a payload whose signature has already been checked.
Result<Claims> ParseClaims(const json::object& p, const VerifierOptions& options) {
  Claims c;
  const json::string* iss = StringMember(p, "iss");
  if (!iss) return Reject("malformed claims");
  if (View(*iss) != options.issuer) return Reject("wrong issuer");
  c.iss = View(*iss);

  const json::value* aud = p.if_contains("aud");
  if (!aud) return Reject("malformed claims");
  bool aud_ok = false;
  if (const json::string* s = aud->if_string()) {
    aud_ok = View(*s) == options.audience;
  } else if (const json::array* a = aud->if_array()) {
    for (const json::value& item : *a) {
      const json::string* entry = item.if_string();
      if (!entry) return Reject("malformed claims");
      aud_ok = aud_ok || View(*entry) == options.audience;
    }
  } else {
    return Reject("malformed claims");
  }
  if (!aud_ok) return Reject("wrong audience");
  c.aud = options.audience;

  const json::string* sub = StringMember(p, "sub");
  const json::string* role = StringMember(p, "role");
  if (!sub || sub->empty() || !role) return Reject("malformed claims");
  c.sub = View(*sub);
  c.role = View(*role);

  const json::value* exp = p.if_contains("exp");
  const json::value* iat = p.if_contains("iat");
  if (!exp || !iat) return Reject("malformed claims");
  const auto exp_n = NumericDate(*exp);
  const auto iat_n = NumericDate(*iat);
  if (!exp_n || !iat_n) return Reject("malformed claims");
  c.exp = *exp_n;
  c.iat = *iat_n;
  if (const json::value* nbf = p.if_contains("nbf")) {
    const auto nbf_n = NumericDate(*nbf);
    if (!nbf_n) return Reject("malformed claims");
    c.nbf = *nbf_n;
  }

  if (const json::value* jti = p.if_contains("jti")) {
    if (!jti->is_string()) return Reject("malformed claims");
    c.jti = View(jti->get_string());
  }
  if (const json::value* scope = p.if_contains("scope")) {
    if (!scope->is_string()) return Reject("malformed claims");
    const std::string_view s = View(scope->get_string());
    std::size_t pos = 0;
    while (pos < s.size()) {
      const std::size_t end = std::min(s.find(' ', pos), s.size());
      if (end > pos) c.scopes.emplace_back(s.substr(pos, end - pos));
      pos = end + 1;
    }
  }
  return c;
}

struct CacheEntry {
  Claims claims;
  std::string kid;
  PublicKeyBytes key{};
  std::list<std::string>::iterator lru_pos;
};

}  // namespace

SigningKey GenerateSigningKey() {
  internal::EnsureSodium();
  SigningKey key;
  crypto_sign_keypair(key.public_key.data(), key.secret_key.data());
  key.kid = RandomToken(12);
  return key;
}

std::string Sign(const Claims& claims, const SigningKey& key) {
  internal::EnsureSodium();
  json::object header;
  header["alg"] = "EdDSA";
  header["typ"] = "JWT";
  header["kid"] = key.kid;
  json::object payload;
  payload["iss"] = claims.iss;
  payload["aud"] = claims.aud;
  payload["sub"] = claims.sub;
  payload["role"] = claims.role;
  payload["iat"] = claims.iat;
  payload["exp"] = claims.exp;
  if (claims.nbf != 0) payload["nbf"] = claims.nbf;
  payload["jti"] = claims.jti;
  if (!claims.scopes.empty()) {
    std::string scope;
    for (const auto& s : claims.scopes) {
      if (!scope.empty()) scope.push_back(' ');
      scope += s;
    }
    payload["scope"] = scope;
  }
  std::string token = Base64UrlEncode(json::serialize(header));
  token.push_back('.');
  token += Base64UrlEncode(json::serialize(payload));
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(token.data()),
                       token.size(), key.secret_key.data());
  token.push_back('.');
  token += Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(sig), sizeof sig));
  return token;
}

void KeySet::Replace(std::vector<PublicKey> keys) {
  std::lock_guard lock(mu_);
  keys_ = std::move(keys);
}

std::optional<PublicKeyBytes> KeySet::Find(std::string_view kid) const {
  std::lock_guard lock(mu_);
  for (const auto& k : keys_) {
    if (k.kid == kid) return k.key;
  }
  return std::nullopt;
}

std::vector<PublicKey> KeySet::All() const {
  std::lock_guard lock(mu_);
  return keys_;
}

bool KeySet::empty() const {
  std::lock_guard lock(mu_);
  return keys_.empty();
}

struct Verifier::Impl {
  std::shared_ptr<KeySet> keys;
  VerifierOptions options;
  Refresh refresh;
  std::chrono::seconds refresh_interval;

  std::mutex refresh_mu;
  std::optional<std::chrono::steady_clock::time_point> last_refresh;  // guarded by refresh_mu

  std::mutex cache_mu;
  // Keyed by the SHA-256 of the token, so memory does not grow with token
  // size. `lru` holds the same keys, most recently used first.
  std::unordered_map<std::string, CacheEntry> cache;  // guarded by cache_mu
  std::list<std::string> lru;                          // guarded by cache_mu

  std::int64_t Now() const { return options.clock ? options.clock() : SystemNow(); }

  std::optional<PublicKeyBytes> FindKey(std::string_view kid);
  std::optional<Result<Claims>> FromCache(const std::string& digest, std::int64_t now);
  void Remember(const std::string& digest, const Claims& claims, std::string_view kid,
                const PublicKeyBytes& key);
  Result<Claims> VerifyUncached(std::string_view token, std::int64_t now, std::string* kid_out,
                                PublicKeyBytes* key_out);
};

std::optional<PublicKeyBytes> Verifier::Impl::FindKey(std::string_view kid) {
  if (auto key = keys->Find(kid)) return key;
  if (!refresh) return std::nullopt;
  {
    // Held during the call: concurrent misses wait for this refresh and
    // then look again instead of starting their own.
    std::lock_guard lock(refresh_mu);
    if (auto key = keys->Find(kid)) return key;  // another thread's refresh brought it
    const auto now = std::chrono::steady_clock::now();
    if (last_refresh && now - *last_refresh < refresh_interval) return std::nullopt;
    last_refresh = now;
    refresh();
  }
  return keys->Find(kid);
}

std::optional<Result<Claims>> Verifier::Impl::FromCache(const std::string& digest,
                                                        std::int64_t now) {
  if (options.cache_size == 0) return std::nullopt;
  std::string kid;
  PublicKeyBytes key;
  {
    std::lock_guard lock(cache_mu);
    auto it = cache.find(digest);
    if (it == cache.end()) return std::nullopt;
    Status times = CheckTimes(it->second.claims, now, options.leeway.count());
    if (!times.ok()) {
      lru.erase(it->second.lru_pos);
      cache.erase(it);
      return Result<Claims>(std::move(times).error());
    }
    lru.splice(lru.begin(), lru, it->second.lru_pos);
    kid = it->second.kid;
    key = it->second.key;
    // The key may have left the set (or changed) since the token was cached.
    // Lock order: cache_mu, then the KeySet's own mutex.
    auto current = keys->Find(kid);
    if (current && sodium_memcmp(current->data(), key.data(), key.size()) == 0) {
      return Result<Claims>(it->second.claims);
    }
    lru.erase(it->second.lru_pos);
    cache.erase(it);
  }
  return std::nullopt;  // full verification decides (unknown key, refresh, ...)
}

void Verifier::Impl::Remember(const std::string& digest, const Claims& claims,
                              std::string_view kid, const PublicKeyBytes& key) {
  if (options.cache_size == 0) return;
  std::lock_guard lock(cache_mu);
  if (cache.count(digest) != 0) return;  // another thread verified it too
  while (cache.size() >= options.cache_size) {
    cache.erase(lru.back());
    lru.pop_back();
  }
  lru.push_front(digest);
  cache.emplace(digest, CacheEntry{claims, std::string(kid), key, lru.begin()});
}

Result<Claims> Verifier::Impl::VerifyUncached(std::string_view token, std::int64_t now,
                                              std::string* kid_out, PublicKeyBytes* key_out) {
  const std::size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return Reject("malformed");
  const std::size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return Reject("malformed");
  }
  const std::string_view header_b64 = token.substr(0, dot1);
  const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view sig_b64 = token.substr(dot2 + 1);

  // Header: only what is needed to pick the key is read before the signature.
  const auto header_json = internal::Base64UrlDecodeStrict(header_b64);
  if (!header_json) return Reject("malformed");
  const auto header = ParseObject(*header_json);
  if (!header) return Reject("malformed");
  const json::string* alg = StringMember(*header, "alg");
  if (!alg || View(*alg) != "EdDSA") return Reject("unsupported alg");
  if (header->contains("crit")) return Reject("unsupported header");  // RFC 7515 §4.1.11
  if (const json::value* typ = header->if_contains("typ")) {
    const json::string* t = typ->if_string();
    if (!t || !EqualsIgnoreCase(View(*t), "JWT")) {
      return Reject("unsupported typ");
    }
  }
  const json::string* kid = StringMember(*header, "kid");
  if (!kid || kid->empty()) return Reject("missing kid");

  const auto sig = internal::Base64UrlDecodeStrict(sig_b64);
  if (!sig || sig->size() != crypto_sign_BYTES) return Reject("malformed");
  const auto key = FindKey(View(*kid));
  if (!key) return Reject("unknown key");
  const std::string_view signing_input = token.substr(0, dot2);
  if (crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(sig->data()),
                                  reinterpret_cast<const unsigned char*>(signing_input.data()),
                                  signing_input.size(), key->data()) != 0) {
    return Reject("bad signature");
  }

  // From here on the payload is the issuer's.
  const auto payload_json = internal::Base64UrlDecodeStrict(payload_b64);
  if (!payload_json) return Reject("malformed");
  const auto payload = ParseObject(*payload_json);
  if (!payload) return Reject("malformed claims");
  Result<Claims> claims = ParseClaims(*payload, options);
  if (!claims.ok()) return claims;
  Status times = CheckTimes(*claims, now, options.leeway.count());
  if (!times.ok()) return std::move(times).error();
  *kid_out = View(*kid);
  *key_out = *key;
  return claims;
}

Verifier::Verifier(std::shared_ptr<KeySet> keys, VerifierOptions options, Refresh refresh,
                   std::chrono::seconds refresh_interval)
    : impl_(std::make_unique<Impl>()) {
  if (!keys) throw std::invalid_argument("Verifier needs a KeySet");
  if (options.leeway.count() < 0 || options.leeway > std::chrono::hours(24)) {
    throw std::invalid_argument("Verifier leeway must be within [0, 24h]");
  }
  internal::EnsureSodium();
  impl_->keys = std::move(keys);
  impl_->options = std::move(options);
  impl_->refresh = std::move(refresh);
  impl_->refresh_interval = refresh_interval;
}

Verifier::~Verifier() = default;

Result<Claims> Verifier::Verify(std::string_view token) const {
  if (token.size() > kMaxTokenSize) return Reject("token too large");
  if (token.empty()) return Reject("malformed");
  const std::int64_t now = impl_->Now();
  const std::string digest = [&] {
    std::string d(crypto_hash_sha256_BYTES, '\0');
    crypto_hash_sha256(reinterpret_cast<unsigned char*>(d.data()),
                       reinterpret_cast<const unsigned char*>(token.data()), token.size());
    return d;
  }();
  if (auto cached = impl_->FromCache(digest, now)) return std::move(*cached);
  std::string kid;
  PublicKeyBytes key{};
  Result<Claims> claims = impl_->VerifyUncached(token, now, &kid, &key);
  if (claims.ok()) impl_->Remember(digest, *claims, kid, key);
  return claims;
}

}  // namespace portico::auth

// JSON Web Key Sets (RFC 7517) holding OKP/Ed25519 keys (RFC 8037).

#include <sodium.h>

#include <boost/json.hpp>
#include <set>

#include "internal.h"
#include "portico/auth/jwt.h"

namespace portico::auth {
namespace {

namespace json = boost::json;

constexpr std::size_t kMaxKidSize = 256;

std::string_view View(const json::string& s) { return {s.data(), s.size()}; }

// An optional string member: its value, "" if absent, nullopt if not a string.
std::optional<std::string_view> OptionalString(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(json::string_view(key.data(), key.size()));
  if (!v) return std::string_view();
  if (const json::string* s = v->if_string()) return View(*s);
  return std::nullopt;
}

}  // namespace

std::string EncodeJwks(const std::vector<PublicKey>& keys) {
  json::array out;
  for (const auto& k : keys) {
    json::object jwk;
    jwk["kty"] = "OKP";
    jwk["crv"] = "Ed25519";
    jwk["x"] = Base64UrlEncode(
        std::string_view(reinterpret_cast<const char*>(k.key.data()), k.key.size()));
    jwk["kid"] = k.kid;
    jwk["alg"] = "EdDSA";
    jwk["use"] = "sig";
    out.push_back(std::move(jwk));
  }
  json::object doc;
  doc["keys"] = std::move(out);
  return json::serialize(doc);
}

Result<PublicKey> PublicKeyFromJwk(std::string_view kty, std::string_view crv, std::string_view x,
                                   std::string_view kid) {
  if (kty != "OKP") return Error::InvalidArgument("jwk kty is not OKP");
  if (crv != "Ed25519") return Error::InvalidArgument("jwk crv is not Ed25519");
  if (kid.empty() || kid.size() > kMaxKidSize) return Error::InvalidArgument("jwk kid is invalid");
  const auto bytes = internal::Base64UrlDecodeStrict(x);
  PublicKey key;
  if (!bytes || bytes->size() != key.key.size()) {
    return Error::InvalidArgument("jwk x is not a 32-byte base64url value");
  }
  std::copy(bytes->begin(), bytes->end(), key.key.begin());
  internal::EnsureSodium();
  // Rejects small-order and non-canonical points, which no honest signer has.
  if (crypto_core_ed25519_is_valid_point(key.key.data()) != 1) {
    return Error::InvalidArgument("jwk x is not a valid Ed25519 public key");
  }
  key.kid = kid;
  return key;
}

Result<std::vector<PublicKey>> DecodeJwks(std::string_view text) {
  boost::system::error_code ec;
  const json::value doc = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec) return Error::InvalidArgument("jwks is not valid JSON");
  const json::object* root = doc.if_object();
  const json::value* keys_value = root ? root->if_contains("keys") : nullptr;
  const json::array* keys = keys_value ? keys_value->if_array() : nullptr;
  if (!keys) return Error::InvalidArgument("jwks has no \"keys\" array");
  std::vector<PublicKey> out;
  std::set<std::string, std::less<>> kids;
  for (const json::value& item : *keys) {
    const json::object* jwk = item.if_object();
    if (!jwk) return Error::InvalidArgument("jwks key is not an object");
    const auto kty = OptionalString(*jwk, "kty");
    const auto crv = OptionalString(*jwk, "crv");
    const auto alg = OptionalString(*jwk, "alg");
    const auto use = OptionalString(*jwk, "use");
    const auto x = OptionalString(*jwk, "x");
    const auto kid = OptionalString(*jwk, "kid");
    if (!kty || kty->empty()) return Error::InvalidArgument("jwks key has no kty");
    // Keys we cannot use for EdDSA signatures (RSA, EC, X25519, encryption
    // keys, ...) are skipped so that a mixed set still works.
    if (*kty != "OKP" || !crv || *crv != "Ed25519") continue;
    if (!alg || (!alg->empty() && *alg != "EdDSA")) continue;
    if (!use || (!use->empty() && *use != "sig")) continue;
    if (!x || !kid) return Error::InvalidArgument("jwks key has a non-string member");
    Result<PublicKey> key = PublicKeyFromJwk(*kty, *crv, *x, *kid);
    if (!key.ok()) return std::move(key).error();
    if (!kids.insert(key->kid).second) return Error::InvalidArgument("jwks has a duplicate kid");
    out.push_back(std::move(*key));
  }
  return out;
}

}  // namespace portico::auth

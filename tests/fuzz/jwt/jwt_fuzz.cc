// Feeds arbitrary bytes to the token verifier, the JWKS decoder and the
// base64url decoder, and checks their round-trip properties.
#include <sodium.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "portico/auth/jwt.h"

namespace {

using portico::auth::Base64UrlDecode;
using portico::auth::Base64UrlEncode;

// The key that signed corpus/valid_token: Ed25519 from the seed 0x01 * 32,
// kid "fuzz-key". The corpus token's claims are valid at kFuzzNow.
constexpr std::int64_t kFuzzNow = 1700000000;

portico::auth::SigningKey FuzzKey() {
  portico::auth::SigningKey key;
  key.kid = "fuzz-key";
  unsigned char seed[crypto_sign_SEEDBYTES];
  for (auto& b : seed) b = 1;
  if (sodium_init() < 0) std::abort();
  crypto_sign_seed_keypair(key.public_key.data(), key.secret_key.data(), seed);
  return key;
}

const portico::auth::Verifier& FuzzVerifier() {
  static const portico::auth::Verifier* verifier = [] {
    const auto key = FuzzKey();
    auto keys = std::make_shared<portico::auth::KeySet>();
    keys->Replace({{key.kid, key.public_key}});
    portico::auth::VerifierOptions options;
    options.issuer = "portico-users";
    options.audience = "portico";
    options.cache_size = 64;
    options.clock = [] { return kFuzzNow; };
    return new portico::auth::Verifier(keys, options, [] {}, std::chrono::seconds(0));
  }();
  return *verifier;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const auto claims = FuzzVerifier().Verify(input);
  if (claims.ok() && (claims->iss != "portico-users" || claims->aud != "portico")) std::abort();

  if (const auto decoded = Base64UrlDecode(input)) {
    // Every accepted spelling decodes to bytes whose canonical encoding
    // decodes back to the same bytes.
    const std::string encoded = Base64UrlEncode(*decoded);
    const auto again = Base64UrlDecode(encoded);
    if (!again || *again != *decoded) std::abort();
    if (input.find('=') == std::string_view::npos && encoded != input) std::abort();
  }

  if (const auto keys = portico::auth::DecodeJwks(input); keys.ok()) {
    const auto again = portico::auth::DecodeJwks(portico::auth::EncodeJwks(*keys));
    if (!again.ok() || again->size() != keys->size()) std::abort();
    for (std::size_t i = 0; i < keys->size(); ++i) {
      if ((*again)[i].kid != (*keys)[i].kid || (*again)[i].key != (*keys)[i].key) std::abort();
    }
  }
  return 0;
}

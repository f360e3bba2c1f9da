// Base64url (RFC 4648 §5) and the one-time libsodium initialization.

#include <sodium.h>

#include <array>
#include <cstdint>
#include <cstdlib>

#include "internal.h"
#include "portico/auth/jwt.h"

namespace portico::auth {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<std::int8_t, 256> MakeDecodeTable() {
  std::array<std::int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
  return table;
}
constexpr auto kDecode = MakeDecodeTable();

// Decodes `text`, which holds no padding. Rejects a length that cannot come
// from an encoder (1 mod 4) and non-zero unused bits in the last character,
// so every byte string has exactly one accepted encoding.
std::optional<std::string> DecodeUnpadded(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const int v = kDecode[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

}  // namespace

std::string Base64UrlEncode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  const auto byte = [&](std::size_t k) { return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t n = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(kAlphabet[(n >> 6) & 63]);
    out.push_back(kAlphabet[n & 63]);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t n = byte(i) << 16;
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
  } else if (rest == 2) {
    const std::uint32_t n = (byte(i) << 16) | (byte(i + 1) << 8);
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(kAlphabet[(n >> 6) & 63]);
  }
  return out;
}

std::optional<std::string> Base64UrlDecode(std::string_view text) {
  const auto first_pad = text.find('=');
  if (first_pad == std::string_view::npos) return DecodeUnpadded(text);
  // Padded form: the whole text is a multiple of 4, and the padding is
  // exactly what an encoder would have written.
  const std::string_view body = text.substr(0, first_pad);
  const std::string_view pad = text.substr(first_pad);
  if (text.size() % 4 != 0 || pad.find_first_not_of('=') != std::string_view::npos) return std::nullopt;
  const std::size_t expected_pad = body.size() % 4 == 2 ? 2 : body.size() % 4 == 3 ? 1 : 0;
  if (pad.size() != expected_pad) return std::nullopt;
  return DecodeUnpadded(body);
}

namespace internal {

void EnsureSodium() {
  static const bool ready = sodium_init() >= 0;
  if (!ready) std::abort();
}

std::optional<std::string> Base64UrlDecodeStrict(std::string_view text) { return DecodeUnpadded(text); }

}  // namespace internal
}  // namespace portico::auth

#include "key_ring.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <fstream>
#include <iterator>

#include <sodium.h>

#include "portico/auth/secrets.h"
#include "portico/log/log.h"
#include "portico/pg/pool.h"

namespace portico::users {
namespace {

// Arbitrary constant identifying "create the first signing key" among the
// database's advisory locks.
constexpr std::int64_t kKeyCreationLock = 0x706f727469636f01;  // "portico\x01"

template <std::size_t N>
bool DecodeInto(std::string_view text, std::array<std::uint8_t, N>* out) {
  auto bytes = auth::Base64UrlDecode(text);
  if (!bytes || bytes->size() != N) return false;
  std::memcpy(out->data(), bytes->data(), N);
  return true;
}

std::string_view AsChars(const auto& bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// Makes a new key and stores it in `tx`; returns its kid.
Result<std::string> InsertNewKey(pg::Transaction& tx) {
  auth::SigningKey key = auth::GenerateSigningKey();
  auto inserted = tx.Exec(
      "INSERT INTO signing_keys (kid, public_key, secret_key) VALUES ($1, $2, $3)",
      {key.kid, auth::Base64UrlEncode(AsChars(key.public_key)),
       auth::Base64UrlEncode(AsChars(key.secret_key))});
  if (!inserted.ok()) return std::move(inserted).error();
  return key.kid;
}

}  // namespace

KeyRing::KeyRing(pg::Pool& pool) : pool_(pool) {}

Status KeyRing::UseKeyFile(const std::string& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) return Error::InvalidArgument("cannot read the key file " + path);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  auto bytes = auth::Base64UrlDecode(text);
  if (!bytes || (bytes->size() != 64 && bytes->size() != 32)) {
    return Error::InvalidArgument("the key file " + path +
                                  " must hold a base64url Ed25519 key (32 or 64 bytes)");
  }
  auth::SigningKey key;
  std::array<unsigned char, 32> seed{};
  std::memcpy(seed.data(), bytes->data(), 32);
  if (crypto_sign_seed_keypair(key.public_key.data(), key.secret_key.data(), seed.data()) != 0) {
    return Error::InvalidArgument("the key file " + path + " holds no usable key");
  }
  sodium_memzero(seed.data(), seed.size());
  // A stable kid derived from the public key, so every replica agrees.
  key.kid = auth::Sha256Hex(AsChars(key.public_key)).substr(0, 16);
  {
    std::lock_guard lock(mu_);
    keys_ = {key};
    from_file_ = true;
  }
  keyset_->Replace({{key.kid, key.public_key}});
  return {};
}

Result<bool> KeyRing::RotateIfDue(std::chrono::seconds max_age, Deadline deadline) {
  {
    std::lock_guard lock(mu_);
    if (from_file_) return false;
  }
  auto rotated = pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Result<bool> {
    if (auto locked = tx.Exec("SELECT pg_advisory_xact_lock($1)", {kKeyCreationLock});
        !locked.ok()) {
      return std::move(locked).error();
    }
    auto due = tx.Exec(
        "SELECT coalesce(max(create_time) <= now() - make_interval(secs => $1), true) AS due "
        "FROM signing_keys",
        {static_cast<std::int64_t>(max_age.count())});
    if (!due.ok()) return std::move(due).error();
    if (!due->front().GetBool("due")) return false;
    auto kid = InsertNewKey(tx);
    if (!kid.ok()) return std::move(kid).error();
    log::Info("rotated the signing key", {{"event", "keys.rotated"}, {"kid", *kid}});
    return true;
  });
  if (!rotated.ok()) return std::move(rotated).error();
  if (auto st = Load(deadline); !st.ok()) return std::move(st).error();
  return *rotated;
}

Status KeyRing::Load(Deadline deadline) {
  {
    std::lock_guard lock(mu_);
    if (from_file_) return {};
  }
  auto loaded = pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Result<pg::Rows> {
    constexpr std::string_view kSelect =
        "SELECT kid, public_key, secret_key, "
        "extract(epoch FROM now() - create_time)::float8 AS age_s "
        "FROM signing_keys ORDER BY create_time DESC, kid LIMIT 2";
    auto rows = tx.Exec(kSelect);
    if (!rows.ok() || !rows->empty()) return rows;
    if (auto locked = tx.Exec("SELECT pg_advisory_xact_lock($1)", {kKeyCreationLock});
        !locked.ok()) {
      return std::move(locked).error();
    }
    rows = tx.Exec(kSelect);  // another replica may have made one meanwhile
    if (!rows.ok() || !rows->empty()) return rows;
    auto kid = InsertNewKey(tx);
    if (!kid.ok()) return std::move(kid).error();
    log::Info("created the first signing key", {{"kid", *kid}});
    return tx.Exec(kSelect);
  });
  if (!loaded.ok()) return std::move(loaded).error();

  std::vector<auth::SigningKey> keys;
  std::vector<std::chrono::steady_clock::time_point> active_from;
  const auto now = std::chrono::steady_clock::now();
  for (pg::Row row : *loaded) {
    // Ages come from the database's clock, so replicas' clocks need not agree.
    const auto age = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(row.GetDouble("age_s")));
    active_from.push_back(now - age + activation_delay_);
    auth::SigningKey key;
    key.kid = row.GetString("kid");
    if (!DecodeInto(row.GetView("public_key"), &key.public_key) ||
        !DecodeInto(row.GetView("secret_key"), &key.secret_key)) {
      return Error::Internal("signing key " + key.kid + " is corrupt");
    }
    keys.push_back(std::move(key));
  }
  std::vector<auth::PublicKey> published;
  for (const auto& k : keys) published.push_back({k.kid, k.public_key});
  {
    std::lock_guard lock(mu_);
    keys_ = std::move(keys);
    active_from_ = std::move(active_from);
  }
  keyset_->Replace(std::move(published));
  return {};
}

Result<std::string> KeyRing::Sign(auth::Claims claims, std::chrono::seconds ttl) const {
  auto key = Current();
  if (!key) return Error::Unavailable("signing keys are not loaded yet");
  claims.iat = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  claims.exp = claims.iat + ttl.count();
  return auth::Sign(claims, *key);
}

std::optional<auth::SigningKey> KeyRing::Current() const {
  std::lock_guard lock(mu_);
  if (keys_.empty()) return std::nullopt;
  const auto now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < keys_.size() && i < active_from_.size(); ++i) {
    if (active_from_[i] <= now) return keys_[i];
  }
  return keys_.back();
}

std::vector<auth::PublicKey> KeyRing::Published() const {
  std::lock_guard lock(mu_);
  std::vector<auth::PublicKey> out;
  for (const auto& k : keys_) out.push_back({k.kid, k.public_key});
  return out;
}

}  // namespace portico::users

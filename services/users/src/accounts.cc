#include "accounts.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cctype>
#include <chrono>

#include "key_ring.h"
#include "password_pool.h"
#include "portico/auth/jwt.h"
#include "portico/auth/secrets.h"
#include "portico/core/uuid.h"
#include "portico/log/log.h"
#include "portico/pg/pool.h"

namespace portico::users {
namespace {

using google::protobuf::util::TimeUtil;

constexpr std::string_view kUserColumns =
    "id, email, display_name, role, disabled, "
    "(extract(epoch FROM create_time) * 1000000)::int8 AS create_us, "
    "(extract(epoch FROM update_time) * 1000000)::int8 AS update_us";

v1::User UserFromRow(const pg::Row& row) {
  v1::User u;
  u.set_id(row.GetString("id"));
  u.set_email(row.GetString("email"));
  u.set_display_name(row.GetString("display_name"));
  u.set_role(row.GetView("role") == "ADMIN" ? v1::ADMIN : v1::USER);
  u.set_disabled(row.GetBool("disabled"));
  *u.mutable_create_time() = TimeUtil::MicrosecondsToTimestamp(row.GetInt64("create_us"));
  *u.mutable_update_time() = TimeUtil::MicrosecondsToTimestamp(row.GetInt64("update_us"));
  return u;
}

// Decodes one UTF-8 code point; false on malformed input.
bool NextCodePoint(std::string_view s, std::size_t* i, char32_t* cp) {
  const auto c = static_cast<unsigned char>(s[*i]);
  int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || *i + static_cast<std::size_t>(len) > s.size()) return false;
  char32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[*i + static_cast<std::size_t>(k)]);
    if ((cc >> 6) != 0x2) return false;
    v = (v << 6) | (cc & 0x3F);
  }
  static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < kMin[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return false;
  *i += static_cast<std::size_t>(len);
  *cp = v;
  return true;
}

// Code points in `s`, or -1 if it is not valid UTF-8.
long CountCodePoints(std::string_view s, bool allow_control) {
  long n = 0;
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp;
    if (!NextCodePoint(s, &i, &cp)) return -1;
    if (!allow_control && (cp < 0x20 || (cp >= 0x7F && cp < 0xA0))) return -2;
    ++n;
  }
  return n;
}

}  // namespace

Result<std::string> NormalizeEmail(std::string_view email) {
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!email.empty() && is_space(email.front())) email.remove_prefix(1);
  while (!email.empty() && is_space(email.back())) email.remove_suffix(1);
  auto invalid = [] {
    return Error::InvalidArgument("invalid e-mail address",
                                  {{"email", "must be an e-mail address like name@example.com"}});
  };
  if (email.empty() || email.size() > 254) return invalid();
  const auto at = email.find('@');
  if (at == std::string_view::npos || at == 0 || at > 64 || email.find('@', at + 1) != email.npos) {
    return invalid();
  }
  const std::string_view domain = email.substr(at + 1);
  if (domain.size() < 3 || domain.find('.') == domain.npos || domain.front() == '.' ||
      domain.back() == '.' || domain.find("..") != domain.npos) {
    return invalid();
  }
  std::string out;
  out.reserve(email.size());
  for (char c : email) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F || c == '"' || c == '(' || c == ')' || c == ',' || c == ':' ||
        c == ';' || c == '<' || c == '>' || c == '[' || c == ']' || c == '\\') {
      return invalid();
    }
    out.push_back(static_cast<char>(std::tolower(u)));
  }
  return out;
}

Status ValidatePassword(std::string_view password, int min_length, std::string_view field) {
  const long n = CountCodePoints(password, /*allow_control=*/true);
  if (n < 0) return Error::InvalidArgument("invalid password", {{std::string(field), "must be valid UTF-8"}});
  if (n < min_length || n > 128) {
    return Error::InvalidArgument(
        "invalid password",
        {{std::string(field),
          "must be " + std::to_string(min_length) + " to 128 characters long"}});
  }
  return {};
}

Status ValidateDisplayName(std::string_view name) {
  const long n = CountCodePoints(name, /*allow_control=*/false);
  if (n < 1 || n > 100) {
    return Error::InvalidArgument(
        "invalid display name",
        {{"displayName", n == -2 ? "must not contain control characters"
                                 : "must be 1 to 100 characters of valid UTF-8"}});
  }
  return {};
}

Accounts::Accounts(pg::Pool& pool, KeyRing& keys, PasswordPool& passwords,
                   const Settings& settings)
    : pool_(pool), keys_(keys), passwords_(passwords), settings_(settings) {
  auto dummy = auth::HashPassword(auth::RandomToken(16), passwords_.params());
  if (!dummy.ok()) throw std::runtime_error("cannot hash a password: " + dummy.error().message);
  dummy_hash_ = std::move(*dummy);
}

Result<v1::User> Accounts::Register(std::string_view email, std::string_view password,
                                    std::string_view display_name, Deadline deadline) {
  std::vector<FieldViolation> violations;
  auto normalized = NormalizeEmail(email);
  if (!normalized.ok()) violations.push_back(normalized.error().fields.front());
  if (auto st = ValidatePassword(password, settings_.password_min_length, "password"); !st.ok()) {
    violations.push_back(st.error().fields.front());
  }
  if (auto st = ValidateDisplayName(display_name); !st.ok()) {
    violations.push_back(st.error().fields.front());
  }
  if (!violations.empty()) return Error::InvalidArgument("invalid registration", violations);

  auto hash = passwords_.Hash(std::string(password), deadline);
  if (!hash.ok()) return std::move(hash).error();

  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec(
      "INSERT INTO users (id, email, display_name, password_hash) VALUES ($1, $2, $3, $4) "
      "RETURNING " + std::string(kUserColumns),
      {NewUuidV7(), *normalized, display_name, *hash});
  if (!rows.ok()) {
    if (rows.error().code == ErrorCode::kAlreadyExists) {
      return Error{ErrorCode::kAlreadyExists, "an account with this e-mail already exists",
                   {{"email", "is already registered"}}};
    }
    return std::move(rows).error();
  }
  v1::User user = UserFromRow(rows->front());
  log::Info("user registered", {{"event", "user.register"}, {"user_id", user.id()}});
  return user;
}

Result<v1::TokenPair> Accounts::Login(std::string_view email, std::string_view password,
                                      const ClientInfo& client, Deadline deadline) {
  const Error invalid = Error::Unauthenticated("invalid e-mail or password");
  auto normalized = NormalizeEmail(email);
  std::optional<pg::Rows> found;
  if (normalized.ok()) {
    auto lease = pool_.Acquire(deadline);
    if (!lease.ok()) return std::move(lease).error();
    auto rows = lease->Exec(
        "SELECT id, role, disabled, password_hash FROM users WHERE email = $1", {*normalized});
    if (!rows.ok()) return std::move(rows).error();
    if (!rows->empty()) found = std::move(*rows);
  }
  // Unknown e-mails check a dummy hash so that they cost what a wrong password costs.
  std::string hash = found ? found->front().GetString("password_hash") : dummy_hash_;
  auto matched = passwords_.Verify(std::move(hash), std::string(password), deadline);
  if (!matched.ok()) return std::move(matched).error();
  if (!found || !*matched) {
    log::Info("sign-in failed", {{"event", "auth.login_failed"}});
    return invalid;
  }
  const pg::Row row = found->front();
  const std::string user_id = row.GetString("id");
  if (row.GetBool("disabled")) {
    log::Info("sign-in refused: account disabled",
              {{"event", "auth.login_disabled"}, {"user_id", user_id}});
    return Error::PermissionDenied("this account is disabled");
  }
  const std::string role = row.GetString("role");

  auto access = IssueAccessToken(user_id, role);
  if (!access.ok()) return std::move(access).error();
  const std::string refresh = auth::RandomToken(32);
  const std::string session_id = NewUuidV7();
  auto stored = pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Status {
    auto s = tx.Exec(
        "INSERT INTO sessions (id, user_id, user_agent, client_address) VALUES ($1, $2, $3, $4)",
        {session_id, user_id, client.user_agent.substr(0, 512), client.address.substr(0, 128)});
    if (!s.ok()) return std::move(s).error();
    auto t = tx.Exec(
        "INSERT INTO refresh_tokens (token_hash, session_id, expire_time) "
        "VALUES ($1, $2, now() + make_interval(secs => $3))",
        {auth::Sha256Hex(refresh), session_id,
         static_cast<std::int64_t>(settings_.refresh_token_ttl.count())});
    if (!t.ok()) return std::move(t).error();
    return {};
  });
  if (!stored.ok()) return std::move(stored).error();

  v1::TokenPair pair;
  pair.set_access_token(std::move(*access));
  pair.set_refresh_token(refresh);
  pair.set_token_type("Bearer");
  pair.set_expires_in(static_cast<std::int32_t>(settings_.access_token_ttl.count()));
  log::Info("signed in", {{"event", "auth.login"}, {"user_id", user_id}});
  return pair;
}

Result<v1::User> Accounts::GetUser(std::string_view id, Deadline deadline) {
  if (!IsUuid(id)) return Error::NotFound("no such user");
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows =
      lease->Exec("SELECT " + std::string(kUserColumns) + " FROM users WHERE id = $1", {id});
  if (!rows.ok()) return std::move(rows).error();
  if (rows->empty()) return Error::NotFound("no such user");
  return UserFromRow(rows->front());
}

v1::Jwks Accounts::Jwks() const {
  v1::Jwks jwks;
  for (const auto& key : keys_.Published()) {
    auto* jwk = jwks.add_keys();
    jwk->set_kty("OKP");
    jwk->set_crv("Ed25519");
    jwk->set_x(auth::Base64UrlEncode(std::string_view(
        reinterpret_cast<const char*>(key.key.data()), key.key.size())));
    jwk->set_kid(key.kid);
    jwk->set_alg("EdDSA");
    jwk->set_use("sig");
  }
  return jwks;
}

Result<std::string> Accounts::IssueAccessToken(const std::string& user_id,
                                               const std::string& role) {
  auto key = keys_.Current();
  if (!key) return Error::Unavailable("signing keys are not loaded yet");
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  auth::Claims claims;
  claims.iss = settings_.jwt_issuer;
  claims.aud = settings_.jwt_audience;
  claims.sub = user_id;
  claims.role = role;
  claims.iat = now;
  claims.exp = now + settings_.access_token_ttl.count();
  claims.jti = NewUuidV7();
  return auth::Sign(claims, *key);
}

}  // namespace portico::users

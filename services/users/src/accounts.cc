#include "accounts.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cctype>
#include <chrono>

#include "audit.h"
#include "key_ring.h"
#include "password_pool.h"
#include "portico/auth/jwt.h"
#include "portico/auth/secrets.h"
#include "portico/core/uuid.h"
#include "portico/log/log.h"
#include "portico/pg/pool.h"
#include "portico/rpc/call.h"

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
  Audit("user.registered", "user registered", log::Field("user_id", user.id()));
  return user;
}

Result<v1::TokenPair> Accounts::Login(std::string_view email, std::string_view password,
                                      const ClientInfo& client, Deadline deadline) {
  const Error invalid = Error::Unauthenticated("invalid e-mail or password");
  auto throttled = [&](std::int64_t seconds) -> Error {
    seconds = std::max<std::int64_t>(seconds, 1);
    Audit("auth.login_throttled", "sign-in throttled", log::Field("client_address", client.address));
    return Error{ErrorCode::kResourceExhausted,
                 "too many failed sign-ins; try again in " + std::to_string(seconds) + " s",
                 {},
                 {},
                 static_cast<int>(seconds)};
  };
  if (const auto wait = AddressRetryAfter(client.address); wait > 0) return throttled(wait);
  auto normalized = NormalizeEmail(email);
  std::optional<pg::Rows> found;
  if (normalized.ok()) {
    // Reserved before the hash, for unknown e-mails too (throttling reveals
    // nothing), so concurrent guesses cannot all slip past the limit.
    auto wait = ReserveAttempt(*normalized, deadline);
    if (!wait.ok()) return std::move(wait).error();
    if (*wait > 0) return throttled(*wait);
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
    // The attempt was counted when it was reserved.
    NoteAddressFailure(client.address);
    Audit("auth.login_failed", "sign-in failed", log::Field("client_address", client.address));
    return invalid;
  }
  if (auto cleared = ClearAttempts(*normalized, deadline); !cleared.ok()) return cleared.error();
  const pg::Row row = found->front();
  const std::string user_id = row.GetString("id");
  if (row.GetBool("disabled")) {
    Audit("auth.login_disabled", "sign-in refused: account disabled",
          log::Field("user_id", user_id));
    return Error::PermissionDenied("this account is disabled");
  }
  const std::string role = row.GetString("role");

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
  Audit("auth.login", "signed in", log::Field("user_id", user_id),
        log::Field("session_id", session_id), log::Field("client_address", client.address));
  return MakePair(user_id, role, session_id, refresh);
}

Result<std::int64_t> Accounts::ReserveAttempt(const std::string& email, Deadline deadline) {
  // A counter starts afresh when its lock has expired or, unlocked, when its
  // last failure is older than the window. The attempt that reaches the limit
  // still runs but sets the lock, so every later one is refused at once; the
  // count is capped so a locked account's counter cannot overflow.
  static const std::string kFresh =
      "(f.locked_until <= now() OR (f.locked_until IS NULL AND "
      "f.last_failure < now() - make_interval(secs => $2::int8)))";
  static const std::string kNext =
      "(CASE WHEN " + kFresh + " THEN 1 ELSE least(f.failures + 1, $3::int4 + 1) END)";
  static const std::string kSql =
      "INSERT INTO login_failures AS f (email, failures, last_failure, locked_until) "
      "VALUES ($1, 1, now(), CASE WHEN 1 >= $3::int4 THEN now() + make_interval(secs => $4::int8) "
      "END) ON CONFLICT (email) DO UPDATE SET failures = " + kNext + ", "
      "locked_until = CASE WHEN f.locked_until > now() THEN f.locked_until WHEN " + kNext +
      " >= $3::int4 THEN now() + make_interval(secs => $4::int8) END, last_failure = now() "
      "RETURNING failures, "
      "coalesce(ceil(extract(epoch FROM locked_until - now())), 0)::int8 AS wait";
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec(
      kSql, {email, static_cast<std::int64_t>(settings_.login_failure_window.count()),
             static_cast<std::int64_t>(settings_.login_max_failures),
             static_cast<std::int64_t>(settings_.login_lockout.count())});
  if (!rows.ok()) return std::move(rows).error();
  const pg::Row row = rows->front();
  if (row.GetInt64("failures") <= settings_.login_max_failures) return std::int64_t{0};
  return std::max<std::int64_t>(row.GetInt64("wait"), 1);
}

Status Accounts::ClearAttempts(const std::string& email, Deadline deadline) {
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto d = lease->Exec("DELETE FROM login_failures WHERE email = $1", {email});
  if (!d.ok()) return std::move(d).error();
  return {};
}

Result<v1::TokenPair> Accounts::MakePair(const std::string& user_id, const std::string& role,
                                         const std::string& session_id, std::string refresh) {
  auto access = IssueAccessToken(user_id, role, session_id, settings_.access_token_ttl);
  if (!access.ok()) return std::move(access).error();
  v1::TokenPair pair;
  pair.set_access_token(std::move(*access));
  pair.set_refresh_token(std::move(refresh));
  pair.set_token_type("Bearer");
  pair.set_expires_in(static_cast<std::int32_t>(settings_.access_token_ttl.count()));
  return pair;
}

std::int64_t Accounts::AddressRetryAfter(const std::string& address) {
  if (address.empty()) return 0;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(address_mu_);
  auto it = address_failures_.find(address);
  if (it == address_failures_.end() || it->second.locked_until <= now) return 0;
  return std::chrono::ceil<std::chrono::seconds>(it->second.locked_until - now).count();
}

void Accounts::NoteAddressFailure(const std::string& address) {
  if (address.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(address_mu_);
  if (address_failures_.size() > 100000) {  // forget stale entries rather than grow forever
    std::erase_if(address_failures_, [&](const auto& kv) {
      return kv.second.locked_until <= now && now - kv.second.first > settings_.login_failure_window;
    });
  }
  AddressFailures& f = address_failures_[address];
  if (f.count == 0 || now - f.first > settings_.login_failure_window) {
    f.count = 0;
    f.first = now;
  }
  if (++f.count >= settings_.login_address_max_failures) {
    f.count = 0;
    f.locked_until = now + settings_.login_lockout;
  }
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
                                               const std::string& role,
                                               const std::string& session_id,
                                               std::chrono::seconds ttl,
                                               std::vector<std::string> scopes) {
  auth::Claims claims;
  claims.iss = settings_.jwt_issuer;
  claims.aud = settings_.jwt_audience;
  claims.sub = user_id;
  claims.role = role;
  claims.jti = session_id + "." + NewUuidV7();
  claims.scopes = std::move(scopes);
  return keys_.Sign(std::move(claims), ttl);
}

namespace {

constexpr std::int64_t kAdminLock = 0x706f727469636f02;  // "portico\x02": admin-count checks

// The successor of a rotated refresh token: derived, not stored, so the
// grace window can hand it out again.
std::string DeriveSuccessor(std::string_view token, std::string_view nonce) {
  const std::string hex = auth::Sha256Hex(std::string(token) + "." + std::string(nonce));
  std::string bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return auth::Base64UrlEncode(bytes);
}

Error FailedPrecondition(std::string msg) {
  return Error{ErrorCode::kFailedPrecondition, std::move(msg), {}};
}

// kFailedPrecondition if `id` is the only enabled admin. Takes the admin lock
// for the rest of the transaction so two admins cannot remove each other.
Status GuardLastAdmin(pg::Transaction& tx, std::string_view id) {
  if (auto l = tx.Exec("SELECT pg_advisory_xact_lock($1)", {kAdminLock}); !l.ok()) {
    return std::move(l).error();
  }
  auto rows = tx.Exec(
      "SELECT count(*) FILTER (WHERE id <> $1) AS others, "
      "count(*) FILTER (WHERE id = $1) AS self "
      "FROM users WHERE role = 'ADMIN' AND NOT disabled",
      {id});
  if (!rows.ok()) return std::move(rows).error();
  if (rows->front().GetInt64("self") > 0 && rows->front().GetInt64("others") == 0) {
    return FailedPrecondition("the last admin cannot be removed, demoted or disabled");
  }
  return {};
}

google::protobuf::Timestamp FromMicros(std::int64_t us) {
  return TimeUtil::MicrosecondsToTimestamp(us);
}

constexpr std::string_view kTokenColumns =
    "id, name, scopes, "
    "(extract(epoch FROM create_time) * 1000000)::int8 AS create_us, "
    "(extract(epoch FROM expire_time) * 1000000)::int8 AS expire_us";

v1::PersonalToken TokenFromRow(const pg::Row& row) {
  v1::PersonalToken t;
  t.set_id(row.GetString("id"));
  t.set_name(row.GetString("name"));
  std::string_view scopes = row.GetView("scopes");
  while (!scopes.empty()) {
    const auto sp = scopes.find(' ');
    t.add_scopes(std::string(scopes.substr(0, sp)));
    if (sp == scopes.npos) break;
    scopes.remove_prefix(sp + 1);
  }
  *t.mutable_create_time() = FromMicros(row.GetInt64("create_us"));
  if (auto e = row.GetOptionalInt64("expire_us")) *t.mutable_expire_time() = FromMicros(*e);
  return t;
}

Status ValidateName(std::string_view name, std::string_view field) {
  auto st = ValidateDisplayName(name);
  if (st.ok()) return st;
  return Error::InvalidArgument("invalid " + std::string(field),
                                {{std::string(field), st.error().fields.front().message}});
}

}  // namespace

std::string SessionIdFromJti(std::string_view jti) {
  const auto dot = jti.find('.');
  return dot == jti.npos ? std::string() : std::string(jti.substr(0, dot));
}

bool IsKnownScope(std::string_view scope) {
  return scope == "data:read" || scope == "data:write" || scope == "users:read" ||
         scope == "users:write";
}

Result<v1::TokenPair> Accounts::Refresh(std::string_view refresh_token, Deadline deadline) {
  if (refresh_token.empty()) {
    return Error::InvalidArgument("a refresh token is required",
                                  {{"refreshToken", "is required"}});
  }
  struct Outcome {
    bool reuse = false;
    std::string user_id, role, session_id, refresh;
  };
  const Error invalid = Error::Unauthenticated("invalid refresh token");
  auto out = pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Result<Outcome> {
    auto rows = tx.Exec(
        "SELECT t.session_id, t.rotation_nonce, t.expire_time <= now() AS expired, "
        "t.use_time < now() - make_interval(secs => $2) AS stale, "
        "s.revoke_time IS NOT NULL AS revoked, s.user_id, u.role, u.disabled "
        "FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id "
        "JOIN users u ON u.id = s.user_id WHERE t.token_hash = $1 FOR UPDATE OF t, s",
        {auth::Sha256Hex(refresh_token),
         static_cast<std::int64_t>(settings_.refresh_reuse_grace.count())});
    if (!rows.ok()) return std::move(rows).error();
    if (rows->empty()) return invalid;
    const pg::Row row = rows->front();
    Outcome o;
    o.session_id = row.GetString("session_id");
    o.user_id = row.GetString("user_id");
    o.role = row.GetString("role");
    if (row.GetBool("revoked") || row.GetBool("expired") || row.GetBool("disabled")) {
      return invalid;
    }
    if (auto nonce = row.GetOptionalString("rotation_nonce")) {
      if (row.GetOptionalString("stale").value_or("f") == "t") {
        auto r = tx.Exec("UPDATE sessions SET revoke_time = now() WHERE id = $1", {o.session_id});
        if (!r.ok()) return std::move(r).error();
        o.reuse = true;
        return o;
      }
      o.refresh = DeriveSuccessor(refresh_token, *nonce);  // concurrent refresh: same successor
      return o;
    }
    const std::string nonce = auth::RandomToken(16);
    o.refresh = DeriveSuccessor(refresh_token, nonce);
    auto u = tx.Exec(
        "UPDATE refresh_tokens SET use_time = now(), rotation_nonce = $2 WHERE token_hash = $1",
        {auth::Sha256Hex(refresh_token), nonce});
    if (!u.ok()) return std::move(u).error();
    auto n = tx.Exec(
        "INSERT INTO refresh_tokens (token_hash, session_id, expire_time) "
        "VALUES ($1, $2, now() + make_interval(secs => $3))",
        {auth::Sha256Hex(o.refresh), o.session_id,
         static_cast<std::int64_t>(settings_.refresh_token_ttl.count())});
    if (!n.ok()) return std::move(n).error();
    auto s = tx.Exec("UPDATE sessions SET last_use_time = now() WHERE id = $1", {o.session_id});
    if (!s.ok()) return std::move(s).error();
    return o;
  });
  if (!out.ok()) return std::move(out).error();
  if (out->reuse) {
    Audit("auth.refresh_reuse", "a rotated refresh token was reused; its session is revoked",
          log::Field("user_id", out->user_id), log::Field("session_id", out->session_id));
    return invalid;
  }
  return MakePair(out->user_id, out->role, out->session_id, std::move(out->refresh));
}

Status Accounts::Logout(std::string_view refresh_token, Deadline deadline) {
  if (refresh_token.empty()) {
    return Error::InvalidArgument("a refresh token is required",
                                  {{"refreshToken", "is required"}});
  }
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec(
      "UPDATE sessions SET revoke_time = now() WHERE revoke_time IS NULL AND id = "
      "(SELECT session_id FROM refresh_tokens WHERE token_hash = $1) RETURNING id, user_id",
      {auth::Sha256Hex(refresh_token)});
  if (!rows.ok()) return std::move(rows).error();
  if (!rows->empty()) {
    Audit("auth.logout", "signed out", log::Field("user_id", rows->front().GetString("user_id")),
          log::Field("session_id", rows->front().GetString("id")));
  }
  return {};
}

Result<v1::User> Accounts::UpdateMe(const Caller& caller, std::string_view display_name,
                                    Deadline deadline) {
  v1::UpdateUserRequest req;
  req.set_id(caller.user_id);
  req.set_display_name(std::string(display_name));
  return UpdateUser(caller, req, deadline);
}

Status Accounts::ChangePassword(const Caller& caller, std::string_view current_password,
                                std::string_view new_password, Deadline deadline) {
  if (auto st = ValidatePassword(new_password, settings_.password_min_length, "newPassword");
      !st.ok()) {
    return st;
  }
  std::string stored;
  std::string email;
  {
    auto lease = pool_.Acquire(deadline);
    if (!lease.ok()) return std::move(lease).error();
    auto rows = lease->Exec("SELECT email, password_hash FROM users WHERE id = $1",
                            {caller.user_id});
    if (!rows.ok()) return std::move(rows).error();
    if (rows->empty()) return Error::Unauthenticated("the account no longer exists");
    email = rows->front().GetString("email");
    stored = rows->front().GetString("password_hash");
  }
  // The same counter as sign-in: a stolen session must not become an
  // unlimited oracle for the password.
  auto wait = ReserveAttempt(email, deadline);
  if (!wait.ok()) return std::move(wait).error();
  if (*wait > 0) {
    Audit("user.password_change_throttled", "password change throttled",
          log::Field("user_id", caller.user_id));
    return Error{ErrorCode::kResourceExhausted,
                 "too many wrong passwords; try again in " + std::to_string(*wait) + " s",
                 {},
                 {},
                 static_cast<int>(*wait)};
  }
  auto matched = passwords_.Verify(std::move(stored), std::string(current_password), deadline);
  if (!matched.ok()) return std::move(matched).error();
  if (!*matched) {
    Audit("user.password_change_failed", "password change refused: wrong current password",
          log::Field("user_id", caller.user_id));
    return Error::InvalidArgument("the current password is not correct",
                                  {{"currentPassword", "is not correct"}});
  }
  if (auto cleared = ClearAttempts(email, deadline); !cleared.ok()) return cleared;
  auto hash = passwords_.Hash(std::string(new_password), deadline);
  if (!hash.ok()) return std::move(hash).error();
  auto done = pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Status {
    auto u = tx.Exec("UPDATE users SET password_hash = $2, update_time = now() WHERE id = $1",
                     {caller.user_id, *hash});
    if (!u.ok()) return std::move(u).error();
    auto r = tx.Exec(
        "UPDATE sessions SET revoke_time = now() "
        "WHERE user_id = $1 AND revoke_time IS NULL AND id::text <> $2",
        {caller.user_id, caller.session_id});
    if (!r.ok()) return std::move(r).error();
    return {};
  });
  if (!done.ok()) return done;
  Audit("user.password_changed", "password changed; other sessions revoked",
        log::Field("user_id", caller.user_id));
  return {};
}

Result<v1::ListSessionsResponse> Accounts::ListSessions(const Caller& caller,
                                                        Deadline deadline) {
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec(
      "SELECT id, user_agent, client_address, "
      "(extract(epoch FROM create_time) * 1000000)::int8 AS create_us, "
      "(extract(epoch FROM last_use_time) * 1000000)::int8 AS use_us "
      "FROM sessions s WHERE user_id = $1 AND revoke_time IS NULL AND EXISTS ("
      "SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id AND t.expire_time > now()) "
      "ORDER BY create_time DESC, id LIMIT 1000",
      {caller.user_id});
  if (!rows.ok()) return std::move(rows).error();
  v1::ListSessionsResponse resp;
  for (pg::Row row : *rows) {
    auto* s = resp.add_sessions();
    s->set_id(row.GetString("id"));
    s->set_user_agent(row.GetString("user_agent"));
    s->set_client_address(row.GetString("client_address"));
    *s->mutable_create_time() = FromMicros(row.GetInt64("create_us"));
    *s->mutable_last_use_time() = FromMicros(row.GetInt64("use_us"));
    s->set_current(s->id() == caller.session_id);
  }
  return resp;
}

Status Accounts::RevokeSession(const Caller& caller, std::string_view session_id,
                               Deadline deadline) {
  if (!IsUuid(session_id)) return Error::NotFound("no such session");
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec(
      "UPDATE sessions SET revoke_time = now() "
      "WHERE id = $1 AND user_id = $2 AND revoke_time IS NULL RETURNING id",
      {session_id, caller.user_id});
  if (!rows.ok()) return std::move(rows).error();
  if (rows->empty()) return Error::NotFound("no such session");
  Audit("user.session_revoked", "session revoked", log::Field("user_id", caller.user_id),
        log::Field("session_id", session_id));
  return {};
}

Status Accounts::DeleteUser(const Caller& actor, std::string_view id, Deadline deadline) {
  if (!IsUuid(id)) return Error::NotFound("no such user");
  auto done = pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Status {
    if (auto g = GuardLastAdmin(tx, id); !g.ok()) return g;
    auto d = tx.Exec("DELETE FROM users WHERE id = $1 RETURNING id", {id});
    if (!d.ok()) return std::move(d).error();
    if (d->empty()) return Error::NotFound("no such user");
    // The deleting request's trace travels with the row, so the purge that
    // the dispatcher delivers later continues it.
    auto o = tx.Exec(
        "INSERT INTO purge_outbox (owner_id, traceparent, request_id) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING",
        {id, rpc::CurrentTraceParent(), log::CurrentContext().request_id});
    if (!o.ok()) return std::move(o).error();
    return {};
  });
  if (!done.ok()) return done;
  Audit("user.deleted", "account deleted; its data will be purged", log::Field("user_id", id),
        log::Field("actor_id", actor.user_id));
  if (on_purge_queued_) on_purge_queued_();
  return {};
}

Result<v1::ListUsersResponse> Accounts::ListUsers(const v1::ListUsersRequest& request,
                                                  Deadline deadline) {
  if (request.page_size() < 0 || request.page_size() > 1000) {
    return Error::InvalidArgument("invalid page size", {{"pageSize", "must be 1 to 1000"}});
  }
  const int size = request.page_size() == 0 ? 50 : request.page_size();
  std::optional<std::string> after;
  if (!request.page_token().empty()) {
    auto decoded = auth::Base64UrlDecode(request.page_token());
    if (!decoded || !IsUuid(*decoded)) {
      return Error::InvalidArgument("invalid page token",
                                    {{"pageToken", "is not a token from a previous page"}});
    }
    after = *decoded;
  }
  std::optional<std::string> prefix;
  if (!request.email_prefix().empty()) {
    std::string p;
    for (char c : request.email_prefix()) {
      if (c == '\\' || c == '%' || c == '_') p.push_back('\\');
      p.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    prefix = p + "%";
  }
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec("SELECT " + std::string(kUserColumns) +
                              " FROM users WHERE ($1::uuid IS NULL OR id > $1::uuid) "
                              "AND ($2::text IS NULL OR email LIKE $2::text) "
                              "ORDER BY id LIMIT $3",
                          {after, prefix, size + 1});
  if (!rows.ok()) return std::move(rows).error();
  v1::ListUsersResponse resp;
  for (pg::Row row : *rows) {
    if (resp.users_size() == size) {
      resp.set_next_page_token(auth::Base64UrlEncode(resp.users(size - 1).id()));
      break;
    }
    *resp.add_users() = UserFromRow(row);
  }
  return resp;
}

Result<v1::User> Accounts::UpdateUser(const Caller& actor, const v1::UpdateUserRequest& request,
                                      Deadline deadline) {
  if (!IsUuid(request.id())) return Error::NotFound("no such user");
  std::vector<FieldViolation> violations;
  if (request.has_display_name()) {
    if (auto st = ValidateDisplayName(request.display_name()); !st.ok()) {
      violations.push_back(st.error().fields.front());
    }
  }
  if (request.has_role() && request.role() != v1::USER && request.role() != v1::ADMIN) {
    violations.push_back({"role", "must be USER or ADMIN"});
  }
  if (!violations.empty()) return Error::InvalidArgument("invalid update", violations);
  std::optional<std::string> role;
  if (request.has_role()) role = request.role() == v1::ADMIN ? "ADMIN" : "USER";
  std::optional<std::string> name;
  if (request.has_display_name()) name = request.display_name();
  std::optional<bool> disabled;
  if (request.has_disabled()) disabled = request.disabled();

  struct Outcome {
    v1::User user;
    std::string old_role;
    bool was_disabled = false;
  };
  auto out = pool_.InTransaction(deadline, [&](pg::Transaction& tx) -> Result<Outcome> {
    if ((role && *role != "ADMIN") || (disabled && *disabled)) {
      if (auto g = GuardLastAdmin(tx, request.id()); !g.ok()) return std::move(g).error();
    }
    auto old = tx.Exec("SELECT role, disabled FROM users WHERE id = $1 FOR UPDATE", {request.id()});
    if (!old.ok()) return std::move(old).error();
    if (old->empty()) return Error::NotFound("no such user");
    Outcome o;
    o.old_role = old->front().GetString("role");
    o.was_disabled = old->front().GetBool("disabled");
    auto rows = tx.Exec("UPDATE users SET display_name = coalesce($2, display_name), "
                        "role = coalesce($3, role), disabled = coalesce($4::bool, disabled), "
                        "update_time = now() WHERE id = $1 RETURNING " +
                            std::string(kUserColumns),
                        {request.id(), name, role, disabled});
    if (!rows.ok()) return std::move(rows).error();
    o.user = UserFromRow(rows->front());
    if (o.user.disabled()) {
      auto r = tx.Exec(
          "UPDATE sessions SET revoke_time = now() WHERE user_id = $1 AND revoke_time IS NULL",
          {request.id()});
      if (!r.ok()) return std::move(r).error();
    }
    return o;
  });
  if (!out.ok()) return std::move(out).error();
  const std::string new_role = out->user.role() == v1::ADMIN ? "ADMIN" : "USER";
  if (new_role != out->old_role) {
    Audit("user.role_changed", "role changed", log::Field("user_id", request.id()),
          log::Field("actor_id", actor.user_id), log::Field("old_role", out->old_role),
          log::Field("new_role", new_role));
  }
  if (out->user.disabled() != out->was_disabled) {
    Audit(out->user.disabled() ? "user.disabled" : "user.enabled",
          out->user.disabled() ? "account disabled; sessions revoked" : "account enabled",
          log::Field("user_id", request.id()), log::Field("actor_id", actor.user_id));
  }
  return std::move(out->user);
}

Result<AdminOutcome> Accounts::EnsureAdmin(std::string_view email, std::string_view password,
                                           AdminPolicy policy, Deadline deadline) {
  std::vector<FieldViolation> violations;
  auto normalized = NormalizeEmail(email);
  if (!normalized.ok()) violations.push_back(normalized.error().fields.front());
  if (auto st = ValidatePassword(password, settings_.password_min_length, "password"); !st.ok()) {
    violations.push_back(st.error().fields.front());
  }
  if (!violations.empty()) return Error::InvalidArgument("invalid admin account", violations);
  // What to do about an account that already has the e-mail; nullopt if none.
  auto existing = [&]() -> Result<std::optional<AdminOutcome>> {
    auto lease = pool_.Acquire(deadline);
    if (!lease.ok()) return std::move(lease).error();
    auto rows = lease->Exec("SELECT id, role FROM users WHERE email = $1", {*normalized});
    if (!rows.ok()) return std::move(rows).error();
    if (rows->empty()) return std::optional<AdminOutcome>();
    const std::string id = rows->front().GetString("id");
    if (rows->front().GetString("role") == "ADMIN") {
      return std::optional<AdminOutcome>(AdminOutcome::kAlreadyAdmin);
    }
    if (policy == AdminPolicy::kCreateOnly) {
      return std::optional<AdminOutcome>(AdminOutcome::kExistsNotAdmin);
    }
    auto promoted = lease->Exec(
        "UPDATE users SET role = 'ADMIN', update_time = now() WHERE id = $1 AND role <> 'ADMIN' "
        "RETURNING id",
        {id});
    if (!promoted.ok()) return std::move(promoted).error();
    if (promoted->empty()) return std::optional<AdminOutcome>(AdminOutcome::kAlreadyAdmin);
    Audit("user.role_changed", "create-admin: existing account promoted to admin",
          log::Field("user_id", id), log::Field("new_role", "ADMIN"));
    return std::optional<AdminOutcome>(AdminOutcome::kPromoted);
  };
  {
    auto found = existing();
    if (!found.ok()) return std::move(found).error();
    if (*found) return **found;
  }
  auto hash = passwords_.Hash(std::string(password), deadline);
  if (!hash.ok()) return std::move(hash).error();
  const std::string id = NewUuidV7();
  {
    auto lease = pool_.Acquire(deadline);
    if (!lease.ok()) return std::move(lease).error();
    auto rows = lease->Exec(
        "INSERT INTO users (id, email, display_name, password_hash, role) "
        "VALUES ($1, $2, 'Administrator', $3, 'ADMIN') ON CONFLICT (email) DO NOTHING "
        "RETURNING id",
        {id, *normalized, *hash});
    if (!rows.ok()) return std::move(rows).error();
    if (!rows->empty()) {
      Audit("user.admin_created", "admin account created", log::Field("user_id", id));
      return AdminOutcome::kCreated;
    }
  }
  // Made concurrently (another replica, or a registration): judge that account.
  auto found = existing();
  if (!found.ok()) return std::move(found).error();
  if (*found) return **found;
  return Error{ErrorCode::kInternal, "the admin account vanished while it was being created", {}};
}

Result<v1::PersonalToken> Accounts::CreateToken(const Caller& caller, std::string_view name,
                                                const std::vector<std::string>& scopes,
                                                std::int64_t ttl_seconds, Deadline deadline) {
  std::vector<FieldViolation> violations;
  if (auto st = ValidateName(name, "name"); !st.ok()) violations.push_back(st.error().fields.front());
  if (scopes.empty()) violations.push_back({"scopes", "at least one scope is required"});
  std::string joined;
  for (const auto& s : scopes) {
    if (!IsKnownScope(s)) {
      violations.push_back(
          {"scopes", "unknown scope \"" + s.substr(0, 40) +
                         "\" (use data:read, data:write, users:read, users:write)"});
      break;
    }
    if (joined.find(s) == std::string::npos) joined += (joined.empty() ? "" : " ") + s;
  }
  if (ttl_seconds < 0 || ttl_seconds > 366LL * 24 * 3600) {
    violations.push_back({"ttl", "must be 0 (no expiry) to 31622400 seconds"});
  }
  if (!violations.empty()) return Error::InvalidArgument("invalid token request", violations);
  const std::string secret = "pat_" + auth::RandomToken(32);
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  std::optional<std::int64_t> ttl;
  if (ttl_seconds > 0) ttl = ttl_seconds;
  auto rows = lease->Exec(
      "INSERT INTO personal_tokens (id, user_id, name, token_hash, scopes, expire_time) "
      "VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::int8)) RETURNING " +
          std::string(kTokenColumns),
      {NewUuidV7(), caller.user_id, name, auth::Sha256Hex(secret), joined, ttl});
  if (!rows.ok()) return std::move(rows).error();
  v1::PersonalToken t = TokenFromRow(rows->front());
  t.set_token(secret);
  Audit("user.token_created", "personal access token created",
        log::Field("user_id", caller.user_id), log::Field("token_id", t.id()),
        log::Field("scopes", joined));
  return t;
}

Result<v1::ListTokensResponse> Accounts::ListTokens(const Caller& caller, Deadline deadline) {
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec("SELECT " + std::string(kTokenColumns) +
                              " FROM personal_tokens WHERE user_id = $1 AND revoke_time IS NULL "
                              "ORDER BY create_time DESC, id LIMIT 1000",
                          {caller.user_id});
  if (!rows.ok()) return std::move(rows).error();
  v1::ListTokensResponse resp;
  for (pg::Row row : *rows) *resp.add_tokens() = TokenFromRow(row);
  return resp;
}

Status Accounts::RevokeToken(const Caller& caller, std::string_view id, Deadline deadline) {
  if (!IsUuid(id)) return Error::NotFound("no such token");
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec(
      "UPDATE personal_tokens SET revoke_time = now() "
      "WHERE id = $1 AND user_id = $2 AND revoke_time IS NULL RETURNING id",
      {id, caller.user_id});
  if (!rows.ok()) return std::move(rows).error();
  if (rows->empty()) return Error::NotFound("no such token");
  Audit("user.token_revoked", "personal access token revoked",
        log::Field("user_id", caller.user_id), log::Field("token_id", id));
  return {};
}

Result<v1::IntrospectResponse> Accounts::Introspect(std::string_view token, Deadline deadline) {
  v1::IntrospectResponse resp;
  if (!token.starts_with("pat_")) return resp;
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec(
      "SELECT p.id, p.user_id, p.scopes, u.role, u.disabled, "
      "ceil(extract(epoch FROM p.expire_time - now()))::int8 AS left_s, "
      "(extract(epoch FROM p.expire_time) * 1000000)::int8 AS expire_us "
      "FROM personal_tokens p JOIN users u ON u.id = p.user_id "
      "WHERE p.token_hash = $1 AND p.revoke_time IS NULL "
      "AND (p.expire_time IS NULL OR p.expire_time > now())",
      {auth::Sha256Hex(token)});
  if (!rows.ok()) return std::move(rows).error();
  if (rows->empty() || rows->front().GetBool("disabled")) return resp;
  const pg::Row row = rows->front();
  v1::PersonalToken t;
  std::vector<std::string> scopes;
  {
    std::string_view s = row.GetView("scopes");
    while (!s.empty()) {
      const auto sp = s.find(' ');
      scopes.emplace_back(s.substr(0, sp));
      if (sp == s.npos) break;
      s.remove_prefix(sp + 1);
    }
  }
  std::chrono::seconds ttl = settings_.pat_exchange_ttl;
  if (auto left = row.GetOptionalInt64("left_s")) {
    ttl = std::min(ttl, std::chrono::seconds(std::max<std::int64_t>(*left, 1)));
  }
  const std::string role = row.GetString("role");
  auto access = IssueAccessToken(row.GetString("user_id"), role, "pat-" + row.GetString("id"),
                                 ttl, scopes);
  if (!access.ok()) return std::move(access).error();
  resp.set_active(true);
  resp.set_subject(row.GetString("user_id"));
  resp.set_role(role == "ADMIN" ? v1::ADMIN : v1::USER);
  for (auto& s : scopes) resp.add_scopes(s);
  if (auto e = row.GetOptionalInt64("expire_us")) *resp.mutable_expire_time() = FromMicros(*e);
  resp.set_access_token(std::move(*access));
  resp.set_access_token_expires_in(static_cast<std::int32_t>(ttl.count()));
  return resp;
}

Result<std::int64_t> Accounts::Housekeeping(Deadline deadline) {
  auto lease = pool_.Acquire(deadline);
  if (!lease.ok()) return std::move(lease).error();
  std::int64_t deleted = 0;
  for (const char* sql : {
           "DELETE FROM refresh_tokens WHERE expire_time < now() - interval '1 day'",
           "DELETE FROM sessions s WHERE NOT EXISTS "
           "(SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id)",
           "DELETE FROM login_failures WHERE last_failure < now() - make_interval(secs => $1) "
           "AND (locked_until IS NULL OR locked_until < now())",
       }) {
    auto r = std::string_view(sql).find("$1") != std::string_view::npos
                 ? lease->Exec(sql, {static_cast<std::int64_t>(
                                        settings_.login_failure_window.count())})
                 : lease->Exec(sql);
    if (!r.ok()) return std::move(r).error();
    deleted += r->affected();
  }
  return deleted;
}

}  // namespace portico::users

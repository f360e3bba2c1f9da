#include "grpc_services.h"

#include <algorithm>

#include "accounts.h"
#include "portico/auth/jwt.h"
#include "portico/rpc/call.h"
#include "portico/rpc/executor.h"

namespace portico::users {

using rpc::Call;

namespace {

enum class Need { kUser, kAdmin };

// Verifies the caller's access token and its role. (Scoped tokens — those
// exchanged for a personal access token — are checked against the RPC's
// access annotation by rpc::Call itself.) Admin RPCs also check the account
// itself, so a demoted or disabled admin loses access at once rather than
// when the token expires.
Result<Caller> Authorize(Call& call, const auth::Verifier& verifier, Need need,
                         Accounts& accounts) {
  auto principal = need == Need::kAdmin ? call.Authorize(verifier, {"ADMIN"})
                                        : call.Authorize(verifier, {"USER", "ADMIN"});
  if (!principal.ok()) return std::move(principal).error();
  if (need == Need::kAdmin) {
    auto account = accounts.GetUser(principal->subject, call.deadline());
    if (!account.ok() && account.error().code != ErrorCode::kNotFound) {
      return std::move(account).error();
    }
    if (!account.ok() || account->role() != v1::ADMIN || account->disabled()) {
      return Error::PermissionDenied("this operation requires the ADMIN role");
    }
  }
  return Caller{principal->subject, SessionIdFromJti(principal->token_id), principal->IsAdmin()};
}

// The same, for RPCs on the caller's own account: an account deleted since
// the token was issued is kUnauthenticated, like a bad token.
Status NoLongerExists(const Error& e) {
  if (e.code == ErrorCode::kNotFound) return Error::Unauthenticated("the account no longer exists");
  return e;
}

}  // namespace

grpc::ServerUnaryReactor* AuthServiceImpl::Register(grpc::CallbackServerContext* ctx,
                                                    const v1::RegisterRequest* req,
                                                    v1::User* resp) {
  return rpc::Serve(ctx, "portico.users.v1.AuthService/Register", sign_in_,
                    [this, req, resp](Call& call) -> Status {
                      auto user = accounts_.Register(req->email(), req->password(),
                                                     req->display_name(), call.deadline());
                      if (!user.ok()) return std::move(user).error();
                      call.SetHeader("location", "/v1/users/" + user->id());
                      *resp = std::move(*user);
                      return {};
                    });
}

grpc::ServerUnaryReactor* AuthServiceImpl::Login(grpc::CallbackServerContext* ctx,
                                                 const v1::LoginRequest* req, v1::TokenPair* resp) {
  return rpc::Serve(
      ctx, "portico.users.v1.AuthService/Login", sign_in_, [this, req, resp](Call& call) -> Status {
        auto pair = accounts_.Login(req->email(), req->password(),
                                    {call.user_agent(), call.client_address()}, call.deadline());
        if (!pair.ok()) return std::move(pair).error();
        *resp = std::move(*pair);
        return {};
      });
}

grpc::ServerUnaryReactor* AuthServiceImpl::Refresh(grpc::CallbackServerContext* ctx,
                                                   const v1::RefreshRequest* req,
                                                   v1::TokenPair* resp) {
  return rpc::Serve(ctx, "portico.users.v1.AuthService/Refresh", executor_,
                    [this, req, resp](Call& call) -> Status {
                      auto pair = accounts_.Refresh(req->refresh_token(), call.deadline());
                      if (!pair.ok()) return std::move(pair).error();
                      *resp = std::move(*pair);
                      return {};
                    });
}

grpc::ServerUnaryReactor* AuthServiceImpl::Logout(grpc::CallbackServerContext* ctx,
                                                  const v1::LogoutRequest* req,
                                                  google::protobuf::Empty*) {
  return rpc::Serve(ctx, "portico.users.v1.AuthService/Logout", executor_,
                    [this, req](Call& call) -> Status {
                      return accounts_.Logout(req->refresh_token(), call.deadline());
                    });
}

grpc::ServerUnaryReactor* AuthServiceImpl::GetJwks(grpc::CallbackServerContext* ctx,
                                                   const v1::GetJwksRequest*, v1::Jwks* resp) {
  return rpc::Serve(ctx, "portico.users.v1.AuthService/GetJwks", executor_,
                    [this, resp](Call& call) -> Status {
                      *resp = accounts_.Jwks();
                      // Verifiers may cache the key set briefly; keys rotate far more slowly.
                      call.SetHeader("cache-control", "public, max-age=300");
                      return {};
                    });
}

grpc::ServerUnaryReactor* AuthServiceImpl::Introspect(grpc::CallbackServerContext* ctx,
                                                      const v1::IntrospectRequest* req,
                                                      v1::IntrospectResponse* resp) {
  return rpc::Serve(ctx, "portico.users.v1.AuthService/Introspect", executor_,
                    [this, req, resp](Call& call) -> Status {
                      auto r = accounts_.Introspect(req->token(), call.deadline());
                      if (!r.ok()) return std::move(r).error();
                      *resp = std::move(*r);
                      return {};
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::GetMe(grpc::CallbackServerContext* ctx,
                                                 const v1::GetMeRequest*, v1::User* resp) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/GetMe", executor_,
                    [this, resp](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kUser, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      auto user = accounts_.GetUser(caller->user_id, call.deadline());
                      if (!user.ok()) return NoLongerExists(user.error());
                      *resp = std::move(*user);
                      return {};
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::UpdateMe(grpc::CallbackServerContext* ctx,
                                                    const v1::UpdateMeRequest* req,
                                                    v1::User* resp) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/UpdateMe", executor_,
                    [this, req, resp](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kUser, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      auto user = accounts_.UpdateMe(*caller, req->display_name(), call.deadline());
                      if (!user.ok()) return NoLongerExists(user.error());
                      *resp = std::move(*user);
                      return {};
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::ChangePassword(grpc::CallbackServerContext* ctx,
                                                          const v1::ChangePasswordRequest* req,
                                                          google::protobuf::Empty*) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/ChangePassword", sign_in_,
                    [this, req](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kUser, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      return accounts_.ChangePassword(*caller, req->current_password(),
                                                      req->new_password(), call.deadline());
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::ListSessions(grpc::CallbackServerContext* ctx,
                                                        const v1::ListSessionsRequest*,
                                                        v1::ListSessionsResponse* resp) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/ListSessions", executor_,
                    [this, resp](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kUser, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      auto r = accounts_.ListSessions(*caller, call.deadline());
                      if (!r.ok()) return std::move(r).error();
                      *resp = std::move(*r);
                      return {};
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::RevokeSession(grpc::CallbackServerContext* ctx,
                                                         const v1::RevokeSessionRequest* req,
                                                         google::protobuf::Empty*) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/RevokeSession", executor_,
                    [this, req](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kUser, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      return accounts_.RevokeSession(*caller, req->id(), call.deadline());
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::CreateToken(grpc::CallbackServerContext* ctx,
                                                       const v1::CreateTokenRequest* req,
                                                       v1::PersonalToken* resp) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/CreateToken", executor_,
                    [this, req, resp](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kUser, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      std::vector<std::string> scopes(req->scopes().begin(), req->scopes().end());
                      auto t = accounts_.CreateToken(*caller, req->name(), scopes, req->ttl(),
                                                     call.deadline());
                      if (!t.ok()) return NoLongerExists(t.error());
                      call.SetHeader("location", "/v1/users/me/tokens/" + t->id());
                      *resp = std::move(*t);
                      return {};
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::ListTokens(grpc::CallbackServerContext* ctx,
                                                      const v1::ListTokensRequest*,
                                                      v1::ListTokensResponse* resp) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/ListTokens", executor_,
                    [this, resp](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kUser, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      auto r = accounts_.ListTokens(*caller, call.deadline());
                      if (!r.ok()) return std::move(r).error();
                      *resp = std::move(*r);
                      return {};
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::RevokeToken(grpc::CallbackServerContext* ctx,
                                                       const v1::RevokeTokenRequest* req,
                                                       google::protobuf::Empty*) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/RevokeToken", executor_,
                    [this, req](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kUser, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      return accounts_.RevokeToken(*caller, req->id(), call.deadline());
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::DeleteMe(grpc::CallbackServerContext* ctx,
                                                    const v1::DeleteMeRequest*,
                                                    google::protobuf::Empty*) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/DeleteMe", executor_,
                    [this](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kUser, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      auto st = accounts_.DeleteUser(*caller, caller->user_id, call.deadline());
                      if (!st.ok()) return NoLongerExists(st.error());
                      return {};
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::ListUsers(grpc::CallbackServerContext* ctx,
                                                     const v1::ListUsersRequest* req,
                                                     v1::ListUsersResponse* resp) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/ListUsers", executor_,
                    [this, req, resp](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kAdmin, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      auto r = accounts_.ListUsers(*req, call.deadline());
                      if (!r.ok()) return std::move(r).error();
                      *resp = std::move(*r);
                      return {};
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::GetUser(grpc::CallbackServerContext* ctx,
                                                   const v1::GetUserRequest* req, v1::User* resp) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/GetUser", executor_,
                    [this, req, resp](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kUser, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      // Another user's id is "not found", never "forbidden": existence is not
                      // revealed. Reading another account needs the ADMIN role the account has
                      // now, not the one its token was issued with.
                      if (caller->user_id != req->id()) {
                        if (!caller->admin) return Error::NotFound("no such user");
                        auto self = accounts_.GetUser(caller->user_id, call.deadline());
                        if (!self.ok() && self.error().code != ErrorCode::kNotFound)
                          return std::move(self).error();
                        if (!self.ok() || self->role() != v1::ADMIN || self->disabled()) {
                          return Error::NotFound("no such user");
                        }
                      }
                      auto user = accounts_.GetUser(req->id(), call.deadline());
                      if (!user.ok()) return std::move(user).error();
                      *resp = std::move(*user);
                      return {};
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::UpdateUser(grpc::CallbackServerContext* ctx,
                                                      const v1::UpdateUserRequest* req,
                                                      v1::User* resp) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/UpdateUser", executor_,
                    [this, req, resp](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kAdmin, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      auto user = accounts_.UpdateUser(*caller, *req, call.deadline());
                      if (!user.ok()) return std::move(user).error();
                      *resp = std::move(*user);
                      return {};
                    });
}

grpc::ServerUnaryReactor* UserServiceImpl::DeleteUser(grpc::CallbackServerContext* ctx,
                                                      const v1::DeleteUserRequest* req,
                                                      google::protobuf::Empty*) {
  return rpc::Serve(ctx, "portico.users.v1.UserService/DeleteUser", executor_,
                    [this, req](Call& call) -> Status {
                      auto caller = Authorize(call, verifier_, Need::kAdmin, accounts_);
                      if (!caller.ok()) return std::move(caller).error();
                      return accounts_.DeleteUser(*caller, req->id(), call.deadline());
                    });
}

}  // namespace portico::users

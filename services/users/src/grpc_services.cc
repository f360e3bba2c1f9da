#include "grpc_services.h"

#include "accounts.h"
#include "portico/rpc/call.h"

namespace portico::users {

using rpc::Call;

grpc::Status AuthServiceImpl::Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req,
                                       v1::User* resp) {
  return rpc::Handle(ctx, "portico.users.v1.AuthService/Register", [&](Call& call) -> Status {
    auto user =
        accounts_.Register(req->email(), req->password(), req->display_name(), call.deadline());
    if (!user.ok()) return std::move(user).error();
    call.SetHeader("location", "/v1/users/" + user->id());
    *resp = std::move(*user);
    return {};
  });
}

grpc::Status AuthServiceImpl::Login(grpc::ServerContext* ctx, const v1::LoginRequest* req,
                                    v1::TokenPair* resp) {
  return rpc::Handle(ctx, "portico.users.v1.AuthService/Login", [&](Call& call) -> Status {
    auto pair = accounts_.Login(req->email(), req->password(),
                                {call.user_agent(), call.client_address()}, call.deadline());
    if (!pair.ok()) return std::move(pair).error();
    *resp = std::move(*pair);
    return {};
  });
}

grpc::Status AuthServiceImpl::GetJwks(grpc::ServerContext* ctx, const v1::GetJwksRequest*,
                                      v1::Jwks* resp) {
  return rpc::Handle(ctx, "portico.users.v1.AuthService/GetJwks", [&](Call& call) -> Status {
    *resp = accounts_.Jwks();
    // Verifiers may cache the key set briefly; keys rotate far more slowly.
    call.SetHeader("cache-control", "public, max-age=300");
    return {};
  });
}

grpc::Status UserServiceImpl::GetMe(grpc::ServerContext* ctx, const v1::GetMeRequest*,
                                    v1::User* resp) {
  return rpc::Handle(ctx, "portico.users.v1.UserService/GetMe", [&](Call& call) -> Status {
    auto principal = call.Authorize(verifier_, {"USER", "ADMIN"});
    if (!principal.ok()) return std::move(principal).error();
    auto user = accounts_.GetUser(principal->subject, call.deadline());
    if (!user.ok()) {
      // A valid token for an account that no longer exists.
      if (user.error().code == ErrorCode::kNotFound) {
        return Error::Unauthenticated("the account no longer exists");
      }
      return std::move(user).error();
    }
    *resp = std::move(*user);
    return {};
  });
}

grpc::Status UserServiceImpl::GetUser(grpc::ServerContext* ctx, const v1::GetUserRequest* req,
                                      v1::User* resp) {
  return rpc::Handle(ctx, "portico.users.v1.UserService/GetUser", [&](Call& call) -> Status {
    auto principal = call.Authorize(verifier_, {"USER", "ADMIN"});
    if (!principal.ok()) return std::move(principal).error();
    // Another user's id is "not found", never "forbidden": existence is not revealed.
    if (!principal->IsAdmin() && principal->subject != req->id()) {
      return Error::NotFound("no such user");
    }
    auto user = accounts_.GetUser(req->id(), call.deadline());
    if (!user.ok()) return std::move(user).error();
    *resp = std::move(*user);
    return {};
  });
}

}  // namespace portico::users

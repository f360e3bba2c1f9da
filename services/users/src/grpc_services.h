#pragma once
// gRPC transport of the users service: decode the request, authenticate,
// call Accounts, encode the answer. RPCs not overridden here answer
// UNIMPLEMENTED (the generated base class does that).

#include "portico/users/v1/users.grpc.pb.h"

namespace portico::auth {
class Verifier;
}

namespace portico::users {

class Accounts;

class AuthServiceImpl final : public v1::AuthService::Service {
 public:
  explicit AuthServiceImpl(Accounts& accounts) : accounts_(accounts) {}

  grpc::Status Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req,
                        v1::User* resp) override;
  grpc::Status Login(grpc::ServerContext* ctx, const v1::LoginRequest* req,
                     v1::TokenPair* resp) override;
  grpc::Status GetJwks(grpc::ServerContext* ctx, const v1::GetJwksRequest* req,
                       v1::Jwks* resp) override;

 private:
  Accounts& accounts_;
};

class UserServiceImpl final : public v1::UserService::Service {
 public:
  UserServiceImpl(Accounts& accounts, const auth::Verifier& verifier)
      : accounts_(accounts), verifier_(verifier) {}

  grpc::Status GetMe(grpc::ServerContext* ctx, const v1::GetMeRequest* req,
                     v1::User* resp) override;
  grpc::Status GetUser(grpc::ServerContext* ctx, const v1::GetUserRequest* req,
                       v1::User* resp) override;

 private:
  Accounts& accounts_;
  const auth::Verifier& verifier_;
};

}  // namespace portico::users

#pragma once
// gRPC transport of the users service: decode the request, authenticate,
// call Accounts, encode the answer.

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
  grpc::Status Refresh(grpc::ServerContext* ctx, const v1::RefreshRequest* req,
                       v1::TokenPair* resp) override;
  grpc::Status Logout(grpc::ServerContext* ctx, const v1::LogoutRequest* req,
                      google::protobuf::Empty* resp) override;
  grpc::Status GetJwks(grpc::ServerContext* ctx, const v1::GetJwksRequest* req,
                       v1::Jwks* resp) override;
  /// Internal (the gRPC port is not public and the gateway never routes
  /// it). It needs no caller authentication: it only exchanges a personal
  /// access token for an access token with the same owner and scopes, so a
  /// caller learns nothing and gains nothing it did not already hold.
  grpc::Status Introspect(grpc::ServerContext* ctx, const v1::IntrospectRequest* req,
                          v1::IntrospectResponse* resp) override;

 private:
  Accounts& accounts_;
};

class UserServiceImpl final : public v1::UserService::Service {
 public:
  UserServiceImpl(Accounts& accounts, const auth::Verifier& verifier)
      : accounts_(accounts), verifier_(verifier) {}

  grpc::Status GetMe(grpc::ServerContext* ctx, const v1::GetMeRequest* req,
                     v1::User* resp) override;
  grpc::Status UpdateMe(grpc::ServerContext* ctx, const v1::UpdateMeRequest* req,
                        v1::User* resp) override;
  grpc::Status ChangePassword(grpc::ServerContext* ctx, const v1::ChangePasswordRequest* req,
                              google::protobuf::Empty* resp) override;
  grpc::Status ListSessions(grpc::ServerContext* ctx, const v1::ListSessionsRequest* req,
                            v1::ListSessionsResponse* resp) override;
  grpc::Status RevokeSession(grpc::ServerContext* ctx, const v1::RevokeSessionRequest* req,
                             google::protobuf::Empty* resp) override;
  grpc::Status CreateToken(grpc::ServerContext* ctx, const v1::CreateTokenRequest* req,
                           v1::PersonalToken* resp) override;
  grpc::Status ListTokens(grpc::ServerContext* ctx, const v1::ListTokensRequest* req,
                          v1::ListTokensResponse* resp) override;
  grpc::Status RevokeToken(grpc::ServerContext* ctx, const v1::RevokeTokenRequest* req,
                           google::protobuf::Empty* resp) override;
  grpc::Status DeleteMe(grpc::ServerContext* ctx, const v1::DeleteMeRequest* req,
                        google::protobuf::Empty* resp) override;
  grpc::Status ListUsers(grpc::ServerContext* ctx, const v1::ListUsersRequest* req,
                         v1::ListUsersResponse* resp) override;
  grpc::Status GetUser(grpc::ServerContext* ctx, const v1::GetUserRequest* req,
                       v1::User* resp) override;
  grpc::Status UpdateUser(grpc::ServerContext* ctx, const v1::UpdateUserRequest* req,
                          v1::User* resp) override;
  grpc::Status DeleteUser(grpc::ServerContext* ctx, const v1::DeleteUserRequest* req,
                          google::protobuf::Empty* resp) override;

 private:
  Accounts& accounts_;
  const auth::Verifier& verifier_;
};

}  // namespace portico::users

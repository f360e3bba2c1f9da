#pragma once
// gRPC transport of the users service (callback API): decode the request,
// then on a worker of an executor authenticate, call Accounts, encode the
// answer.

#include "portico/users/v1/users.grpc.pb.h"

namespace portico::auth {
class Verifier;
}
namespace portico::rpc {
class Executor;
}

namespace portico::users {

class Accounts;

class AuthServiceImpl final : public v1::AuthService::CallbackService {
 public:
  /// `executor` runs the calls; `sign_in` those that hash a password, so a
  /// flood of sign-ins waits (or is shed) apart from everything else.
  AuthServiceImpl(Accounts& accounts, rpc::Executor& executor, rpc::Executor& sign_in)
      : accounts_(accounts), executor_(executor), sign_in_(sign_in) {}

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx,
                                     const v1::RegisterRequest* req, v1::User* resp) override;
  grpc::ServerUnaryReactor* Login(grpc::CallbackServerContext* ctx, const v1::LoginRequest* req,
                                  v1::TokenPair* resp) override;
  grpc::ServerUnaryReactor* Refresh(grpc::CallbackServerContext* ctx, const v1::RefreshRequest* req,
                                    v1::TokenPair* resp) override;
  grpc::ServerUnaryReactor* Logout(grpc::CallbackServerContext* ctx, const v1::LogoutRequest* req,
                                   google::protobuf::Empty* resp) override;
  grpc::ServerUnaryReactor* GetJwks(grpc::CallbackServerContext* ctx, const v1::GetJwksRequest* req,
                                    v1::Jwks* resp) override;
  /// Internal (the gRPC port is not public and the gateway never routes
  /// it). It needs no caller authentication: it only exchanges a personal
  /// access token for an access token with the same owner and scopes, so a
  /// caller learns nothing and gains nothing it did not already hold.
  grpc::ServerUnaryReactor* Introspect(grpc::CallbackServerContext* ctx,
                                       const v1::IntrospectRequest* req,
                                       v1::IntrospectResponse* resp) override;

 private:
  Accounts& accounts_;
  rpc::Executor& executor_;
  rpc::Executor& sign_in_;
};

class UserServiceImpl final : public v1::UserService::CallbackService {
 public:
  UserServiceImpl(Accounts& accounts, const auth::Verifier& verifier, rpc::Executor& executor,
                  rpc::Executor& sign_in)
      : accounts_(accounts), verifier_(verifier), executor_(executor), sign_in_(sign_in) {}

  grpc::ServerUnaryReactor* GetMe(grpc::CallbackServerContext* ctx, const v1::GetMeRequest* req,
                                  v1::User* resp) override;
  grpc::ServerUnaryReactor* UpdateMe(grpc::CallbackServerContext* ctx,
                                     const v1::UpdateMeRequest* req, v1::User* resp) override;
  grpc::ServerUnaryReactor* ChangePassword(grpc::CallbackServerContext* ctx,
                                           const v1::ChangePasswordRequest* req,
                                           google::protobuf::Empty* resp) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* ctx,
                                         const v1::ListSessionsRequest* req,
                                         v1::ListSessionsResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeSession(grpc::CallbackServerContext* ctx,
                                          const v1::RevokeSessionRequest* req,
                                          google::protobuf::Empty* resp) override;
  grpc::ServerUnaryReactor* CreateToken(grpc::CallbackServerContext* ctx,
                                        const v1::CreateTokenRequest* req,
                                        v1::PersonalToken* resp) override;
  grpc::ServerUnaryReactor* ListTokens(grpc::CallbackServerContext* ctx,
                                       const v1::ListTokensRequest* req,
                                       v1::ListTokensResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeToken(grpc::CallbackServerContext* ctx,
                                        const v1::RevokeTokenRequest* req,
                                        google::protobuf::Empty* resp) override;
  grpc::ServerUnaryReactor* DeleteMe(grpc::CallbackServerContext* ctx,
                                     const v1::DeleteMeRequest* req,
                                     google::protobuf::Empty* resp) override;
  grpc::ServerUnaryReactor* ListUsers(grpc::CallbackServerContext* ctx,
                                      const v1::ListUsersRequest* req,
                                      v1::ListUsersResponse* resp) override;
  grpc::ServerUnaryReactor* GetUser(grpc::CallbackServerContext* ctx, const v1::GetUserRequest* req,
                                    v1::User* resp) override;
  grpc::ServerUnaryReactor* UpdateUser(grpc::CallbackServerContext* ctx,
                                       const v1::UpdateUserRequest* req, v1::User* resp) override;
  grpc::ServerUnaryReactor* DeleteUser(grpc::CallbackServerContext* ctx,
                                       const v1::DeleteUserRequest* req,
                                       google::protobuf::Empty* resp) override;

 private:
  Accounts& accounts_;
  const auth::Verifier& verifier_;
  rpc::Executor& executor_;
  rpc::Executor& sign_in_;
};

}  // namespace portico::users

#include "portico/rpc/key_fetcher.h"

#include <grpcpp/grpcpp.h>

#include "portico/log/log.h"
#include "portico/rpc/status.h"
#include "portico/users/v1/users.grpc.pb.h"

namespace portico::rpc {

KeyFetcher::KeyFetcher(std::shared_ptr<grpc::Channel> users_channel)
    : channel_(std::move(users_channel)) {}

KeyFetcher::~KeyFetcher() = default;

Status KeyFetcher::Refresh(Deadline deadline) {
  std::lock_guard lock(refresh_mu_);
  auto stub = users::v1::AuthService::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::duration_cast<std::chrono::system_clock::duration>(
                       TimeLeft(deadline)));
  users::v1::Jwks jwks;
  grpc::Status status = stub->GetJwks(&ctx, users::v1::GetJwksRequest(), &jwks);
  if (!status.ok()) {
    return Error::Unavailable("cannot fetch signing keys from users: " + status.error_message());
  }
  std::vector<auth::PublicKey> keys;
  for (const auto& jwk : jwks.keys()) {
    auto key = auth::PublicKeyFromJwk(jwk.kty(), jwk.crv(), jwk.x(), jwk.kid());
    if (key.ok()) keys.push_back(std::move(*key));
  }
  if (keys.empty()) return Error::Unavailable("the users service published no usable keys");
  keys_->Replace(std::move(keys));
  if (!loaded_.exchange(true)) log::Info("signing keys loaded", {{"keys", jwks.keys_size()}});
  return {};
}

auth::Verifier::Refresh KeyFetcher::RefreshCallback() {
  return [this] {
    if (auto st = Refresh(DeadlineIn(std::chrono::seconds(2))); !st.ok()) {
      log::Warn("key refresh failed", {{"error", st.error().message}});
    }
  };
}

std::jthread KeyFetcher::LoadInBackground() {
  return std::jthread([this](std::stop_token stop) {
    while (!stop.stop_requested() && !loaded()) {
      if (Refresh(DeadlineIn(std::chrono::seconds(2))).ok()) return;
      // Sleep 2 s in small steps so that shutdown is not held up.
      for (int i = 0; i < 20 && !stop.stop_requested(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  });
}

}  // namespace portico::rpc

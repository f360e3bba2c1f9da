#include "portico/rpc/key_fetcher.h"

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <mutex>

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

auth::Verifier::Refresh KeyFetcher::RefreshCallback(bool wait) {
  if (!wait) {
    return [this] {
      {
        std::lock_guard lock(wake_mu_);
        wake_ = true;
      }
      wake_cv_.notify_one();
    };
  }
  return [this] {
    if (auto st = Refresh(DeadlineIn(std::chrono::seconds(2))); !st.ok()) {
      log::Warn("key refresh failed", {{"error", st.error().message}});
    }
  };
}

std::jthread KeyFetcher::LoadInBackground(std::chrono::seconds period) {
  return std::jthread([this, period](std::stop_token stop) {
    while (!stop.stop_requested()) {
      auto st = Refresh(DeadlineIn(std::chrono::seconds(2)));
      if (!st.ok()) log::Warn("fetching signing keys failed", {{"error", st.error().message}});
      const auto wait = loaded() ? std::chrono::duration_cast<std::chrono::milliseconds>(period)
                                 : std::chrono::milliseconds(2000);
      std::unique_lock lock(wake_mu_);
      wake_cv_.wait_for(lock, stop, wait, [this] { return wake_; });
      wake_ = false;
    }
  });
}

}  // namespace portico::rpc

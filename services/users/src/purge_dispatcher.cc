#include "purge_dispatcher.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "key_ring.h"
#include "portico/auth/jwt.h"
#include "portico/core/uuid.h"
#include "portico/data/v1/data.grpc.pb.h"
#include "portico/log/log.h"
#include "portico/pg/pool.h"
#include "portico/rpc/status.h"
#include "settings.h"

namespace portico::users {

PurgeDispatcher::PurgeDispatcher(pg::Pool& pool, KeyRing& keys, const Settings& settings,
                                 std::shared_ptr<grpc::Channel> data_channel)
    : pool_(pool), keys_(keys), settings_(settings), channel_(std::move(data_channel)) {}

PurgeDispatcher::~PurgeDispatcher() {
  if (thread_.joinable()) {
    thread_.request_stop();
    cv_.notify_all();
    thread_.join();
  }
}

void PurgeDispatcher::Start() {
  thread_ = std::jthread([this](std::stop_token stop) { Loop(stop); });
}

void PurgeDispatcher::Wake() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

Status PurgeDispatcher::Purge(const std::string& owner_id) {
  auth::Claims claims;
  claims.iss = settings_.jwt_issuer;
  claims.aud = settings_.jwt_audience;
  claims.sub = "portico-users";
  claims.role = "SERVICE";
  claims.jti = NewUuidV7();
  auto token = keys_.Sign(std::move(claims), std::chrono::seconds(60));
  if (!token.ok()) return std::move(token).error();
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + *token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  data::v1::PurgeOwnerRequest req;
  req.set_owner_id(owner_id);
  google::protobuf::Empty resp;
  auto stub = data::v1::DataAdmin::NewStub(channel_);
  const grpc::Status status = stub->PurgeOwner(&ctx, req, &resp);
  if (!status.ok()) return rpc::FromGrpcStatus(status);
  return {};
}

Result<int> PurgeDispatcher::DeliverDue() {
  const Deadline deadline = DeadlineIn(std::chrono::seconds(10));
  std::vector<std::string> due;
  {
    auto lease = pool_.Acquire(deadline);
    if (!lease.ok()) return std::move(lease).error();
    auto rows = lease->Exec(
        "SELECT owner_id FROM purge_outbox WHERE next_attempt_time <= now() "
        "ORDER BY next_attempt_time LIMIT 100");
    if (!rows.ok()) return std::move(rows).error();
    for (pg::Row row : *rows) due.push_back(row.GetString("owner_id"));
  }
  int delivered = 0;
  for (const auto& owner : due) {
    const Status st = Purge(owner);
    auto lease = pool_.Acquire(deadline);
    if (!lease.ok()) return std::move(lease).error();
    if (st.ok()) {
      auto d = lease->Exec("DELETE FROM purge_outbox WHERE owner_id = $1", {owner});
      if (!d.ok()) return std::move(d).error();
      ++delivered;
      log::Info("purged a deleted owner's data", {{"event", "user.purged"}, {"user_id", owner}});
      continue;
    }
    // Exponential backoff from 1 s, capped.
    auto u = lease->Exec(
        "UPDATE purge_outbox SET attempts = attempts + 1, last_error = $2, "
        "next_attempt_time = now() + make_interval(secs => least($3::float8, "
        "power(2, least(attempts, 20))::float8)) WHERE owner_id = $1 RETURNING attempts",
        {owner, st.error().message.substr(0, 500),
         static_cast<std::int64_t>(settings_.purge_max_backoff.count())});
    if (!u.ok()) return std::move(u).error();
    log::Warn("cannot purge a deleted owner's data yet; will retry",
              {{"event", "user.purge_failed"},
               {"user_id", owner},
               {"error", st.error().message},
               {"attempts", u->empty() ? 0 : u->front().GetInt64("attempts")}});
  }
  return delivered;
}

void PurgeDispatcher::Loop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    auto delivered = DeliverDue();
    if (!delivered.ok()) {
      log::Warn("purge outbox pass failed", {{"error", delivered.error().message}});
    }
    // Poll at most every second (rows become due on their backoff schedule);
    // deletions wake the loop at once.
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, stop, std::chrono::seconds(1), [this] { return wake_; });
    wake_ = false;
  }
}

}  // namespace portico::users

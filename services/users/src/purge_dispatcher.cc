#include "purge_dispatcher.h"

#include <grpcpp/grpcpp.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <exception>

#include "key_ring.h"
#include "portico/admin/metrics.h"
#include "portico/auth/jwt.h"
#include "portico/core/uuid.h"
#include "portico/data/v1/data.grpc.pb.h"
#include "portico/log/log.h"
#include "portico/pg/pool.h"
#include "portico/rpc/call.h"
#include "portico/rpc/status.h"
#include "settings.h"

namespace portico::users {
namespace {

struct OutboxMetrics {
  prometheus::Gauge& pending;
  prometheus::Gauge& oldest_age;
  static OutboxMetrics& Get() {
    static OutboxMetrics m{
        prometheus::BuildGauge()
            .Name("portico_users_purge_outbox_pending")
            .Help("Deleted accounts whose data is not purged yet (rows in purge_outbox)")
            .Register(*admin::Registry())
            .Add({}),
        prometheus::BuildGauge()
            .Name("portico_users_purge_outbox_oldest_age_seconds")
            .Help("Age of the oldest row in purge_outbox (0 when empty)")
            .Register(*admin::Registry())
            .Add({})};
    return m;
  }
};

}  // namespace

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

Status PurgeDispatcher::Purge(const std::string& owner_id, const rpc::TraceParent& trace,
                              std::stop_token stop) {
  auth::Claims claims;
  claims.iss = settings_.jwt_issuer;
  claims.aud = settings_.jwt_audience;
  claims.sub = "portico-users";
  claims.role = "SERVICE";
  claims.jti = NewUuidV7();
  auto token = keys_.Sign(std::move(claims), kServiceTokenTtl);
  if (!token.ok()) return std::move(token).error();
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + *token);
  ctx.AddMetadata("traceparent", rpc::FormatTraceParent(trace));
  if (!log::CurrentContext().request_id.empty()) {
    ctx.AddMetadata("x-request-id", log::CurrentContext().request_id);
  }
  ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  // A stop request cancels the call in flight rather than waiting for it.
  std::stop_callback cancel(stop, [&ctx] { ctx.TryCancel(); });
  data::v1::PurgeOwnerRequest req;
  req.set_owner_id(owner_id);
  google::protobuf::Empty resp;
  auto stub = data::v1::DataAdmin::NewStub(channel_);
  const grpc::Status status = stub->PurgeOwner(&ctx, req, &resp);
  if (!status.ok()) return rpc::FromGrpcStatus(status);
  return {};
}

Result<int> PurgeDispatcher::DeliverDue(std::stop_token stop) {
  int delivered = 0;
  for (int i = 0; i < kMaxRowsPerPass && !stop.stop_requested(); ++i) {
    // Every row has its own deadline: a slow data service delays one row,
    // never the bookkeeping of the next.
    const Deadline deadline = DeadlineIn(kCallTimeout + std::chrono::seconds(10));
    std::string owner;
    std::string traceparent, request_id;
    {
      // Claim one due row: SKIP LOCKED and the lease (the row is not due
      // again until it runs out) keep other replicas off it while it is
      // being delivered; a replica that dies mid-call leaves it due again
      // once the lease ends.
      auto lease = pool_.Acquire(deadline);
      if (!lease.ok()) return std::move(lease).error();
      auto rows = lease->Exec(
          "UPDATE purge_outbox SET next_attempt_time = now() + make_interval(secs => $1::int8) "
          "WHERE owner_id = (SELECT owner_id FROM purge_outbox WHERE next_attempt_time <= now() "
          "ORDER BY next_attempt_time LIMIT 1 FOR UPDATE SKIP LOCKED) "
          "RETURNING owner_id, traceparent, request_id",
          {static_cast<std::int64_t>(kClaimLease.count())});
      if (!rows.ok()) return std::move(rows).error();
      if (rows->empty()) break;
      owner = rows->front().GetString("owner_id");
      traceparent = rows->front().GetString("traceparent");
      request_id = rows->front().GetString("request_id");
    }
    // The delivery continues the trace of the request that deleted the
    // account, as a new span (a row from before traces were stored starts
    // its own trace), so its log lines and data's share that trace id.
    rpc::TraceParent trace;
    if (auto parent = rpc::ParseTraceParent(traceparent)) {
      trace = std::move(*parent);
    } else {
      trace = {rpc::NewTraceId(), {}, "01"};
    }
    trace.span_id = rpc::NewSpanId();
    log::ScopedContext scope({request_id.empty() ? NewUuidV7() : request_id, trace.trace_id,
                              trace.span_id, trace.flags});
    const Status st = Purge(owner, trace, stop);
    auto lease = pool_.Acquire(deadline);
    if (!lease.ok()) return std::move(lease).error();
    if (st.ok()) {
      auto d = lease->Exec("DELETE FROM purge_outbox WHERE owner_id = $1", {owner});
      if (!d.ok()) return std::move(d).error();
      ++delivered;
      log::Info("purged a deleted owner's data", {{"event", "user.purged"}, {"user_id", owner}});
      continue;
    }
    if (stop.stop_requested()) {
      // Cancelled by shutdown, not refused: due again at once, not counted.
      auto r = lease->Exec("UPDATE purge_outbox SET next_attempt_time = now() WHERE owner_id = $1",
                           {owner});
      if (!r.ok()) return std::move(r).error();
      break;
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

Status PurgeDispatcher::RefreshBacklog() {
  auto lease = pool_.Acquire(DeadlineIn(std::chrono::seconds(2)));
  if (!lease.ok()) return std::move(lease).error();
  auto rows = lease->Exec(
      "SELECT count(*) AS pending, "
      "coalesce(extract(epoch FROM now() - min(create_time)), 0)::float8 AS oldest "
      "FROM purge_outbox");
  if (!rows.ok()) return std::move(rows).error();
  OutboxMetrics& m = OutboxMetrics::Get();
  m.pending.Set(static_cast<double>(rows->front().GetInt64("pending")));
  m.oldest_age.Set(rows->front().GetDouble("oldest"));
  return {};
}

void PurgeDispatcher::Loop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    try {
      auto delivered = DeliverDue(stop);
      if (!delivered.ok()) {
        log::Warn("purge outbox pass failed", {{"error", delivered.error().message}});
      }
      // Not logged: a database outage is already reported by the pass above
      // and by /readyz; the gauges keep their last value meanwhile.
      (void)RefreshBacklog();
    } catch (const std::exception& e) {
      // A bug; logged, and the next pass tries again rather than ending the process.
      log::Error("purge outbox pass threw", {{"error", e.what()}});
    } catch (...) {
      log::Error("purge outbox pass threw", {{"error", "unknown exception"}});
    }
    // Poll at most every second (rows become due on their backoff schedule);
    // deletions wake the loop at once.
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, stop, std::chrono::seconds(1), [this] { return wake_; });
    wake_ = false;
  }
}

}  // namespace portico::users

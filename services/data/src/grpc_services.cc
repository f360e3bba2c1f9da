#include "grpc_services.h"

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "items.h"
#include "portico/log/log.h"
#include "portico/rpc/call.h"
#include "portico/rpc/executor.h"
#include "portico/rpc/status.h"
#include "watches.h"

namespace portico::data {
namespace {

// Data belongs to people: an admin token reads nobody else's items here, and
// service tokens have no business on these routes.
Result<rpc::Principal> Owner(rpc::Call& call, const auth::Verifier& verifier) {
  return call.Authorize(verifier, {"USER", "ADMIN"});
}

Status RequireData(bool has_data) {
  if (has_data) return {};
  return Error::InvalidArgument("item data is required", {{"data", "must be a JSON object"}});
}

void SetItemHeaders(rpc::Call& call, const v1::Item& item) {
  call.SetHeader("etag", ETagOf(item.version()));
}

}  // namespace

grpc::ServerUnaryReactor* DataServiceImpl::CreateItem(grpc::CallbackServerContext* ctx,
                                                      const v1::CreateItemRequest* req,
                                                      v1::Item* resp) {
  return rpc::Serve(
      ctx, "portico.data.v1.DataService/CreateItem", executor_,
      [this, req, resp](rpc::Call& call) -> Status {
        auto owner = Owner(call, verifier_);
        if (!owner.ok()) return std::move(owner).error();
        if (auto st = RequireData(!req->data().empty()); !st.ok()) return st;
        auto created = items_.Create(owner->subject, req->collection(), req->data(),
                                     call.Metadata("idempotency-key"), call.deadline());
        if (!created.ok()) return std::move(created).error();
        const v1::Item& item = created->item;
        SetItemHeaders(call, item);
        call.SetHeader("location", "/v1/collections/" + item.collection() + "/items/" + item.id());
        *resp = std::move(created->item);
        return {};
      });
}

grpc::ServerUnaryReactor* DataServiceImpl::GetItem(grpc::CallbackServerContext* ctx,
                                                   const v1::GetItemRequest* req, v1::Item* resp) {
  return rpc::Serve(ctx, "portico.data.v1.DataService/GetItem", executor_,
                    [this, req, resp](rpc::Call& call) -> Status {
                      auto owner = Owner(call, verifier_);
                      if (!owner.ok()) return std::move(owner).error();
                      auto item =
                          items_.Get(owner->subject, req->collection(), req->id(), call.deadline());
                      if (!item.ok()) return std::move(item).error();
                      SetItemHeaders(call, *item);
                      // If-None-Match compares weakly (RFC 9110 13.1.2): W/"3" matches too.
                      const Precondition none_match =
                          ParseIfMatch(call.Metadata("if-none-match"), /*weak_comparison=*/true);
                      if (none_match.present && none_match.Matches(item->version())) {
                        call.SetHeader("x-http-status", "304");
                        return {};
                      }
                      *resp = std::move(*item);
                      return {};
                    });
}

grpc::ServerUnaryReactor* DataServiceImpl::ReplaceItem(grpc::CallbackServerContext* ctx,
                                                       const v1::ReplaceItemRequest* req,
                                                       v1::Item* resp) {
  return rpc::Serve(ctx, "portico.data.v1.DataService/ReplaceItem", executor_,
                    [this, req, resp](rpc::Call& call) -> Status {
                      auto owner = Owner(call, verifier_);
                      if (!owner.ok()) return std::move(owner).error();
                      if (auto st = RequireData(!req->data().empty()); !st.ok()) return st;
                      auto item =
                          items_.Replace(owner->subject, req->collection(), req->id(), req->data(),
                                         ParseIfMatch(call.Metadata("if-match")), call.deadline());
                      if (!item.ok()) return std::move(item).error();
                      SetItemHeaders(call, *item);
                      *resp = std::move(*item);
                      return {};
                    });
}

grpc::ServerUnaryReactor* DataServiceImpl::UpdateItem(grpc::CallbackServerContext* ctx,
                                                      const v1::UpdateItemRequest* req,
                                                      v1::Item* resp) {
  return rpc::Serve(ctx, "portico.data.v1.DataService/UpdateItem", executor_,
                    [this, req, resp](rpc::Call& call) -> Status {
                      auto owner = Owner(call, verifier_);
                      if (!owner.ok()) return std::move(owner).error();
                      if (auto st = RequireData(!req->data().empty()); !st.ok()) return st;
                      auto item =
                          items_.Update(owner->subject, req->collection(), req->id(), req->data(),
                                        ParseIfMatch(call.Metadata("if-match")), call.deadline());
                      if (!item.ok()) return std::move(item).error();
                      SetItemHeaders(call, *item);
                      *resp = std::move(*item);
                      return {};
                    });
}

grpc::ServerUnaryReactor* DataServiceImpl::DeleteItem(grpc::CallbackServerContext* ctx,
                                                      const v1::DeleteItemRequest* req,
                                                      google::protobuf::Empty*) {
  return rpc::Serve(ctx, "portico.data.v1.DataService/DeleteItem", executor_,
                    [this, req](rpc::Call& call) -> Status {
                      auto owner = Owner(call, verifier_);
                      if (!owner.ok()) return std::move(owner).error();
                      return items_.Delete(owner->subject, req->collection(), req->id(),
                                           ParseIfMatch(call.Metadata("if-match")),
                                           call.deadline());
                    });
}

grpc::ServerUnaryReactor* DataServiceImpl::ListItems(grpc::CallbackServerContext* ctx,
                                                     const v1::ListItemsRequest* req,
                                                     v1::ListItemsResponse* resp) {
  return rpc::Serve(ctx, "portico.data.v1.DataService/ListItems", executor_,
                    [this, req, resp](rpc::Call& call) -> Status {
                      auto owner = Owner(call, verifier_);
                      if (!owner.ok()) return std::move(owner).error();
                      auto page = items_.List(owner->subject, req->collection(),
                                              ListQuery{.page_size = req->page_size(),
                                                        .page_token = req->page_token(),
                                                        .order_by = req->order_by(),
                                                        .filter = req->filter()},
                                              call.deadline());
                      if (!page.ok()) return std::move(page).error();
                      *resp = std::move(*page);
                      return {};
                    });
}

grpc::ServerUnaryReactor* DataServiceImpl::ListCollections(grpc::CallbackServerContext* ctx,
                                                           const v1::ListCollectionsRequest*,
                                                           v1::ListCollectionsResponse* resp) {
  return rpc::Serve(ctx, "portico.data.v1.DataService/ListCollections", executor_,
                    [this, resp](rpc::Call& call) -> Status {
                      auto owner = Owner(call, verifier_);
                      if (!owner.ok()) return std::move(owner).error();
                      auto list = items_.ListCollections(owner->subject, call.deadline());
                      if (!list.ok()) return std::move(list).error();
                      *resp = std::move(*list);
                      return {};
                    });
}

grpc::ServerUnaryReactor* DataServiceImpl::ListChanges(grpc::CallbackServerContext* ctx,
                                                       const v1::ListChangesRequest* req,
                                                       v1::ListChangesResponse* resp) {
  return rpc::Serve(ctx, "portico.data.v1.DataService/ListChanges", executor_,
                    [this, req, resp](rpc::Call& call) -> Status {
                      auto owner = Owner(call, verifier_);
                      if (!owner.ok()) return std::move(owner).error();
                      auto changes =
                          items_.ListChanges(owner->subject, req->collection(), req->since(),
                                             req->page_size(), call.deadline());
                      if (!changes.ok()) return std::move(changes).error();
                      *resp = std::move(*changes);
                      return {};
                    });
}

namespace {

constexpr std::string_view kWatchMethod = "portico.data.v1.DataService/WatchChanges";

// One WatchChanges stream: the gRPC end of a Watch. It is opened on a worker
// (authentication may wait for keys), then fed by Watches. gRPC may run a
// reaction inline from the call that started an operation, so one
// recursive mutex serializes everything, and nothing waits while holding
// it. The reactor owns itself from the start until OnDone, and whoever is
// calling it holds a reference too, so it is never freed under a call.
class WatchReactor final : public grpc::ServerWriteReactor<v1::Change>, public WatchSink {
 public:
  WatchReactor(grpc::CallbackServerContext* ctx, Watches& watches)
      : ctx_(ctx), watches_(watches), start_(Clock::now()) {}

  static grpc::ServerWriteReactor<v1::Change>* Start(grpc::CallbackServerContext* ctx,
                                                     const v1::WatchChangesRequest* req,
                                                     Watches& watches,
                                                     const auth::Verifier& verifier,
                                                     rpc::Executor& executor) {
    auto self = std::make_shared<WatchReactor>(ctx, watches);
    self->self_ = self;
    const bool queued = executor.TrySubmit([self, req, &verifier] { self->Open(*req, verifier); });
    if (!queued) {
      self->FinishWith(rpc::ToGrpcStatus(rpc::ServiceBusy()));
    }
    return self.get();
  }

  void Opened() override {
    std::lock_guard lock(mu_);
    if (finishing_) return;
    // The request is valid: tell the caller (the gateway starts its HTTP
    // response on this) before the first change, which may be a long way
    // off.
    ctx_->AddInitialMetadata("x-stream-open", "1");
    StartSendInitialMetadata();
  }

  void Deliver(std::shared_ptr<Watch> watch, std::vector<v1::Change> changes) override {
    std::lock_guard lock(mu_);
    if (finishing_ || changes.empty()) return;
    delivering_ = std::move(watch);
    batch_ = std::move(changes);
    next_ = 0;
    writing_ = true;
    StartWrite(&batch_[0]);
  }

  void End(Error why) override { FinishWith(rpc::ToGrpcStatus(why)); }

  void OnWriteDone(bool ok) override {
    std::shared_ptr<Watch> delivered;
    {
      std::lock_guard lock(mu_);
      if (ok && !pending_ && ++next_ < batch_.size()) {
        StartWrite(&batch_[next_]);
        return;
      }
      writing_ = false;
      batch_.clear();
      delivered = std::move(delivering_);
      if (pending_) {
        FinishLocked(*pending_);
        return;
      }
      if (!ok) delivered.reset();
    }
    if (delivered) {
      watches_.Delivered(delivered);
    } else {
      // The write failed: the client is gone.
      CloseWatch();
      FinishWith(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the client went away"));
    }
  }

  void OnCancel() override {
    CloseWatch();
    FinishWith(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  }

  void OnDone() override {
    CloseWatch();
    std::shared_ptr<WatchReactor> self;
    {
      std::lock_guard lock(mu_);
      done_ = true;
      log::ScopedContext scope(log_context_);
      rpc::RecordCall(ctx_, kWatchMethod, start_, final_status_, user_id_);
      self = std::move(self_);  // freed when the last caller lets go
    }
  }

 private:
  void Open(const v1::WatchChangesRequest& req, const auth::Verifier& verifier) {
    rpc::Call call(ctx_, kWatchMethod);
    log::ScopedContext scope(
        {call.request_id(), call.trace_id(), call.span_id(), call.trace_flags()});
    {
      std::lock_guard lock(mu_);
      log_context_ = {call.request_id(), call.trace_id(), call.span_id(), call.trace_flags()};
      if (finishing_) return;  // cancelled while queued
    }
    auto owner = Owner(call, verifier);
    if (!owner.ok()) return FinishWith(rpc::ToGrpcStatus(owner.error()));
    {
      std::lock_guard lock(mu_);
      user_id_ = owner->subject;
    }
    // The stream lives until the caller's own deadline (the gateway sets
    // one), not call.deadline(), which caps unary work.
    Deadline end = Deadline::max();
    if (ctx_->deadline() != std::chrono::system_clock::time_point::max()) {
      end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                               ctx_->deadline() - std::chrono::system_clock::now());
    }
    auto watch = watches_.Open(owner->subject, req.collection(), req.since(), end, self_ref());
    if (!watch.ok()) return FinishWith(rpc::ToGrpcStatus(watch.error()));
    bool over = false;
    {
      std::lock_guard lock(mu_);
      watch_ = *watch;
      over = finishing_ || done_;
    }
    if (over) watches_.Close(*watch);
  }

  std::shared_ptr<WatchReactor> self_ref() {
    std::lock_guard lock(mu_);
    return self_;
  }

  void CloseWatch() {
    std::shared_ptr<Watch> watch;
    {
      std::lock_guard lock(mu_);
      watch = watch_;
    }
    if (watch) watches_.Close(watch);
  }

  void FinishWith(grpc::Status status) {
    std::lock_guard lock(mu_);
    if (finishing_) return;
    if (writing_) {
      if (!pending_) pending_ = std::move(status);
      return;
    }
    FinishLocked(std::move(status));
  }

  void FinishLocked(grpc::Status status) {
    if (finishing_) return;
    finishing_ = true;
    final_status_ = status;
    Finish(std::move(status));
  }

  grpc::CallbackServerContext* const ctx_;
  Watches& watches_;
  const Deadline start_;

  std::recursive_mutex mu_;
  std::shared_ptr<WatchReactor> self_;   // until OnDone; guarded by mu_
  std::shared_ptr<Watch> watch_;         // once open; guarded by mu_
  std::shared_ptr<Watch> delivering_;    // whose batch_ it is; guarded by mu_
  std::vector<v1::Change> batch_;        // being written; guarded by mu_
  std::size_t next_ = 0;                 // index in batch_; guarded by mu_
  bool writing_ = false;                 // a write is outstanding; guarded by mu_
  std::optional<grpc::Status> pending_;  // Finish once the write is done; guarded by mu_
  bool finishing_ = false;               // Finish was called; guarded by mu_
  bool done_ = false;                    // OnDone ran; guarded by mu_
  grpc::Status final_status_;            // guarded by mu_
  std::string user_id_;                  // guarded by mu_
  log::Context log_context_;             // guarded by mu_
};

}  // namespace

grpc::ServerWriteReactor<v1::Change>* DataServiceImpl::WatchChanges(
    grpc::CallbackServerContext* ctx, const v1::WatchChangesRequest* req) {
  if (watches_ == nullptr) {
    struct Unimplemented final : grpc::ServerWriteReactor<v1::Change> {
      void OnDone() override { delete this; }
    };
    auto* r = new Unimplemented;
    r->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "watching is not enabled"));
    return r;
  }
  return WatchReactor::Start(ctx, req, *watches_, verifier_, executor_);
}

grpc::ServerUnaryReactor* DataAdminImpl::PurgeOwner(grpc::CallbackServerContext* ctx,
                                                    const v1::PurgeOwnerRequest* req,
                                                    google::protobuf::Empty*) {
  return rpc::Serve(ctx, "portico.data.v1.DataAdmin/PurgeOwner", executor_,
                    [this, req](rpc::Call& call) -> Status {
                      auto caller = call.Authorize(verifier_, {"SERVICE"});
                      if (!caller.ok()) return std::move(caller).error();
                      return items_.PurgeOwner(req->owner_id(), call.deadline());
                    });
}

}  // namespace portico::data

#include "grpc_services.h"

#include "items.h"
#include "watches.h"
#include "portico/rpc/call.h"

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

grpc::Status DataServiceImpl::CreateItem(grpc::ServerContext* ctx,
                                         const v1::CreateItemRequest* req, v1::Item* resp) {
  return rpc::Handle(ctx, "portico.data.v1.DataService/CreateItem", [&](rpc::Call& call) -> Status {
    auto owner = Owner(call, verifier_);
    if (!owner.ok()) return std::move(owner).error();
    if (auto st = RequireData(req->has_data()); !st.ok()) return st;
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

grpc::Status DataServiceImpl::GetItem(grpc::ServerContext* ctx, const v1::GetItemRequest* req,
                                      v1::Item* resp) {
  return rpc::Handle(ctx, "portico.data.v1.DataService/GetItem", [&](rpc::Call& call) -> Status {
    auto owner = Owner(call, verifier_);
    if (!owner.ok()) return std::move(owner).error();
    auto item = items_.Get(owner->subject, req->collection(), req->id(), call.deadline());
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

grpc::Status DataServiceImpl::ReplaceItem(grpc::ServerContext* ctx,
                                          const v1::ReplaceItemRequest* req, v1::Item* resp) {
  return rpc::Handle(ctx, "portico.data.v1.DataService/ReplaceItem", [&](rpc::Call& call) -> Status {
    auto owner = Owner(call, verifier_);
    if (!owner.ok()) return std::move(owner).error();
    if (auto st = RequireData(req->has_data()); !st.ok()) return st;
    auto item = items_.Replace(owner->subject, req->collection(), req->id(), req->data(),
                               ParseIfMatch(call.Metadata("if-match")), call.deadline());
    if (!item.ok()) return std::move(item).error();
    SetItemHeaders(call, *item);
    *resp = std::move(*item);
    return {};
  });
}

grpc::Status DataServiceImpl::UpdateItem(grpc::ServerContext* ctx,
                                         const v1::UpdateItemRequest* req, v1::Item* resp) {
  return rpc::Handle(ctx, "portico.data.v1.DataService/UpdateItem", [&](rpc::Call& call) -> Status {
    auto owner = Owner(call, verifier_);
    if (!owner.ok()) return std::move(owner).error();
    if (auto st = RequireData(req->has_data()); !st.ok()) return st;
    auto item = items_.Update(owner->subject, req->collection(), req->id(), req->data(),
                              ParseIfMatch(call.Metadata("if-match")), call.deadline());
    if (!item.ok()) return std::move(item).error();
    SetItemHeaders(call, *item);
    *resp = std::move(*item);
    return {};
  });
}

grpc::Status DataServiceImpl::DeleteItem(grpc::ServerContext* ctx,
                                         const v1::DeleteItemRequest* req,
                                         google::protobuf::Empty*) {
  return rpc::Handle(ctx, "portico.data.v1.DataService/DeleteItem", [&](rpc::Call& call) -> Status {
    auto owner = Owner(call, verifier_);
    if (!owner.ok()) return std::move(owner).error();
    return items_.Delete(owner->subject, req->collection(), req->id(),
                         ParseIfMatch(call.Metadata("if-match")), call.deadline());
  });
}

grpc::Status DataServiceImpl::ListItems(grpc::ServerContext* ctx, const v1::ListItemsRequest* req,
                                        v1::ListItemsResponse* resp) {
  return rpc::Handle(ctx, "portico.data.v1.DataService/ListItems", [&](rpc::Call& call) -> Status {
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

grpc::Status DataServiceImpl::ListCollections(grpc::ServerContext* ctx,
                                              const v1::ListCollectionsRequest*,
                                              v1::ListCollectionsResponse* resp) {
  return rpc::Handle(ctx, "portico.data.v1.DataService/ListCollections",
                     [&](rpc::Call& call) -> Status {
                       auto owner = Owner(call, verifier_);
                       if (!owner.ok()) return std::move(owner).error();
                       auto list = items_.ListCollections(owner->subject, call.deadline());
                       if (!list.ok()) return std::move(list).error();
                       *resp = std::move(*list);
                       return {};
                     });
}

grpc::Status DataServiceImpl::ListChanges(grpc::ServerContext* ctx,
                                          const v1::ListChangesRequest* req,
                                          v1::ListChangesResponse* resp) {
  return rpc::Handle(ctx, "portico.data.v1.DataService/ListChanges", [&](rpc::Call& call) -> Status {
    auto owner = Owner(call, verifier_);
    if (!owner.ok()) return std::move(owner).error();
    auto changes = items_.ListChanges(owner->subject, req->collection(), req->since(),
                                      req->page_size(), call.deadline());
    if (!changes.ok()) return std::move(changes).error();
    *resp = std::move(*changes);
    return {};
  });
}

grpc::Status DataServiceImpl::WatchChanges(grpc::ServerContext* ctx,
                                           const v1::WatchChangesRequest* req,
                                           grpc::ServerWriter<v1::Change>* writer) {
  if (watches_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "watching is not enabled");
  }
  return rpc::Handle(ctx, "portico.data.v1.DataService/WatchChanges", [&](rpc::Call& call) -> Status {
    auto owner = Owner(call, verifier_);
    if (!owner.ok()) return std::move(owner).error();
    // The stream lives until the caller's own deadline (the gateway sets
    // one), not call.deadline(), which caps unary work.
    Deadline end = Deadline::max();
    if (ctx->deadline() != std::chrono::system_clock::time_point::max()) {
      end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                               ctx->deadline() - std::chrono::system_clock::now());
    }
    return watches_->Watch(
        owner->subject, req->collection(), req->since(), end,
        [writer](const v1::Change& change) { return writer->Write(change); },
        [ctx] { return ctx->IsCancelled(); },
        [ctx, writer] {
          // The request is valid: tell the caller (the gateway starts its
          // HTTP response on this) before the first change, which may be a
          // long way off.
          ctx->AddInitialMetadata("x-stream-open", "1");
          writer->SendInitialMetadata();
        });
  });
}

grpc::Status DataAdminImpl::PurgeOwner(grpc::ServerContext* ctx, const v1::PurgeOwnerRequest* req,
                                       google::protobuf::Empty*) {
  return rpc::Handle(ctx, "portico.data.v1.DataAdmin/PurgeOwner", [&](rpc::Call& call) -> Status {
    auto caller = call.Authorize(verifier_, {"SERVICE"});
    if (!caller.ok()) return std::move(caller).error();
    return items_.PurgeOwner(req->owner_id(), call.deadline());
  });
}

}  // namespace portico::data

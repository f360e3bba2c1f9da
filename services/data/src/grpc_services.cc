#include "grpc_services.h"

#include "items.h"
#include "portico/rpc/call.h"

namespace portico::data {
namespace {

std::string ETag(const v1::Item& item) { return "\"" + std::to_string(item.version()) + "\""; }

// Data belongs to people: an admin token reads nobody else's items here, and
// service tokens have no business on these routes.
Result<rpc::Principal> Owner(rpc::Call& call, const auth::Verifier& verifier) {
  return call.Authorize(verifier, {"USER", "ADMIN"});
}

}  // namespace

grpc::Status DataServiceImpl::CreateItem(grpc::ServerContext* ctx,
                                         const v1::CreateItemRequest* req, v1::Item* resp) {
  return rpc::Handle(ctx, "portico.data.v1.DataService/CreateItem", [&](rpc::Call& call) -> Status {
    auto owner = Owner(call, verifier_);
    if (!owner.ok()) return std::move(owner).error();
    if (!req->has_data()) {
      return Error::InvalidArgument("item data is required", {{"data", "must be a JSON object"}});
    }
    auto item = items_.Create(owner->subject, req->collection(), req->data(), call.deadline());
    if (!item.ok()) return std::move(item).error();
    call.SetHeader("etag", ETag(*item));
    call.SetHeader("location", "/v1/collections/" + item->collection() + "/items/" + item->id());
    *resp = std::move(*item);
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
    const std::string etag = ETag(*item);
    call.SetHeader("etag", etag);
    if (call.Metadata("if-none-match") == etag) {
      call.SetHeader("x-http-status", "304");
      return {};
    }
    *resp = std::move(*item);
    return {};
  });
}

grpc::Status DataServiceImpl::ListItems(grpc::ServerContext* ctx, const v1::ListItemsRequest* req,
                                        v1::ListItemsResponse* resp) {
  return rpc::Handle(ctx, "portico.data.v1.DataService/ListItems", [&](rpc::Call& call) -> Status {
    auto owner = Owner(call, verifier_);
    if (!owner.ok()) return std::move(owner).error();
    if (!req->order_by().empty() || !req->filter().empty()) {
      return Error{ErrorCode::kUnimplemented, "orderBy and filter are not supported yet", {}};
    }
    auto page = items_.List(owner->subject, req->collection(), req->page_size(),
                            req->page_token(), call.deadline());
    if (!page.ok()) return std::move(page).error();
    *resp = std::move(*page);
    return {};
  });
}

}  // namespace portico::data

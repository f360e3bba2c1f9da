#pragma once
// gRPC transport of the data service: authenticate, decode, call Items,
// encode, set ETag/Location/status headers. Error reasons (410, 422, 409
// refinements) come with the Errors Items returns.
// WatchChanges blocks its handler thread for the watch's life (Watches
// bounds how many); without a Watches it answers UNIMPLEMENTED.

#include "portico/data/v1/data.grpc.pb.h"

namespace portico::auth {
class Verifier;
}

namespace portico::data {

class Items;
class Watches;

class DataServiceImpl final : public v1::DataService::Service {
 public:
  DataServiceImpl(Items& items, const auth::Verifier& verifier, Watches* watches = nullptr)
      : items_(items), verifier_(verifier), watches_(watches) {}

  grpc::Status CreateItem(grpc::ServerContext* ctx, const v1::CreateItemRequest* req,
                          v1::Item* resp) override;
  grpc::Status GetItem(grpc::ServerContext* ctx, const v1::GetItemRequest* req,
                       v1::Item* resp) override;
  grpc::Status ReplaceItem(grpc::ServerContext* ctx, const v1::ReplaceItemRequest* req,
                           v1::Item* resp) override;
  grpc::Status UpdateItem(grpc::ServerContext* ctx, const v1::UpdateItemRequest* req,
                          v1::Item* resp) override;
  grpc::Status DeleteItem(grpc::ServerContext* ctx, const v1::DeleteItemRequest* req,
                          google::protobuf::Empty* resp) override;
  grpc::Status ListItems(grpc::ServerContext* ctx, const v1::ListItemsRequest* req,
                         v1::ListItemsResponse* resp) override;
  grpc::Status ListCollections(grpc::ServerContext* ctx, const v1::ListCollectionsRequest* req,
                               v1::ListCollectionsResponse* resp) override;
  grpc::Status ListChanges(grpc::ServerContext* ctx, const v1::ListChangesRequest* req,
                           v1::ListChangesResponse* resp) override;
  grpc::Status WatchChanges(grpc::ServerContext* ctx, const v1::WatchChangesRequest* req,
                            grpc::ServerWriter<v1::Change>* writer) override;

 private:
  Items& items_;
  const auth::Verifier& verifier_;
  Watches* watches_;  // may be null
};

/// Internal RPCs. Only callers whose (verified) token has role SERVICE are
/// let in: other tokens PERMISSION_DENIED, none or invalid UNAUTHENTICATED.
class DataAdminImpl final : public v1::DataAdmin::Service {
 public:
  DataAdminImpl(Items& items, const auth::Verifier& verifier)
      : items_(items), verifier_(verifier) {}

  grpc::Status PurgeOwner(grpc::ServerContext* ctx, const v1::PurgeOwnerRequest* req,
                          google::protobuf::Empty* resp) override;

 private:
  Items& items_;
  const auth::Verifier& verifier_;
};

}  // namespace portico::data

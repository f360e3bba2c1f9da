#pragma once
// gRPC transport of the data service (callback API): authenticate, decode,
// call Items on a worker of the executor, encode, set ETag/Location/status
// headers. Error reasons (410, 422, 409 refinements) come with the Errors
// Items returns. WatchChanges is a server stream fed by Watches and holds no
// thread; without a Watches it answers UNIMPLEMENTED.

#include "portico/data/v1/data.grpc.pb.h"

namespace portico::auth {
class Verifier;
}
namespace portico::rpc {
class Executor;
}

namespace portico::data {

class Items;
class Watches;

class DataServiceImpl final : public v1::DataService::CallbackService {
 public:
  DataServiceImpl(Items& items, const auth::Verifier& verifier, rpc::Executor& executor,
                  Watches* watches = nullptr)
      : items_(items), verifier_(verifier), executor_(executor), watches_(watches) {}

  grpc::ServerUnaryReactor* CreateItem(grpc::CallbackServerContext* ctx,
                                       const v1::CreateItemRequest* req, v1::Item* resp) override;
  grpc::ServerUnaryReactor* GetItem(grpc::CallbackServerContext* ctx, const v1::GetItemRequest* req,
                                    v1::Item* resp) override;
  grpc::ServerUnaryReactor* ReplaceItem(grpc::CallbackServerContext* ctx,
                                        const v1::ReplaceItemRequest* req, v1::Item* resp) override;
  grpc::ServerUnaryReactor* UpdateItem(grpc::CallbackServerContext* ctx,
                                       const v1::UpdateItemRequest* req, v1::Item* resp) override;
  grpc::ServerUnaryReactor* DeleteItem(grpc::CallbackServerContext* ctx,
                                       const v1::DeleteItemRequest* req,
                                       google::protobuf::Empty* resp) override;
  grpc::ServerUnaryReactor* ListItems(grpc::CallbackServerContext* ctx,
                                      const v1::ListItemsRequest* req,
                                      v1::ListItemsResponse* resp) override;
  grpc::ServerUnaryReactor* ListCollections(grpc::CallbackServerContext* ctx,
                                            const v1::ListCollectionsRequest* req,
                                            v1::ListCollectionsResponse* resp) override;
  grpc::ServerUnaryReactor* ListChanges(grpc::CallbackServerContext* ctx,
                                        const v1::ListChangesRequest* req,
                                        v1::ListChangesResponse* resp) override;
  grpc::ServerWriteReactor<v1::Change>* WatchChanges(grpc::CallbackServerContext* ctx,
                                                     const v1::WatchChangesRequest* req) override;

 private:
  Items& items_;
  const auth::Verifier& verifier_;
  rpc::Executor& executor_;
  Watches* watches_;  // may be null
};

/// Internal RPCs. Only callers whose (verified) token has role SERVICE are
/// let in: other tokens PERMISSION_DENIED, none or invalid UNAUTHENTICATED.
class DataAdminImpl final : public v1::DataAdmin::CallbackService {
 public:
  DataAdminImpl(Items& items, const auth::Verifier& verifier, rpc::Executor& executor)
      : items_(items), verifier_(verifier), executor_(executor) {}

  grpc::ServerUnaryReactor* PurgeOwner(grpc::CallbackServerContext* ctx,
                                       const v1::PurgeOwnerRequest* req,
                                       google::protobuf::Empty* resp) override;

 private:
  Items& items_;
  const auth::Verifier& verifier_;
  rpc::Executor& executor_;
};

}  // namespace portico::data

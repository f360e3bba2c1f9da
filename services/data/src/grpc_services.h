#pragma once
// gRPC transport of the data service: authenticate, decode, call Items,
// encode, set ETag/Location. RPCs not overridden answer UNIMPLEMENTED.

#include "portico/data/v1/data.grpc.pb.h"

namespace portico::auth {
class Verifier;
}

namespace portico::data {

class Items;

class DataServiceImpl final : public v1::DataService::Service {
 public:
  DataServiceImpl(Items& items, const auth::Verifier& verifier)
      : items_(items), verifier_(verifier) {}

  grpc::Status CreateItem(grpc::ServerContext* ctx, const v1::CreateItemRequest* req,
                          v1::Item* resp) override;
  grpc::Status GetItem(grpc::ServerContext* ctx, const v1::GetItemRequest* req,
                       v1::Item* resp) override;
  grpc::Status ListItems(grpc::ServerContext* ctx, const v1::ListItemsRequest* req,
                         v1::ListItemsResponse* resp) override;

 private:
  Items& items_;
  const auth::Verifier& verifier_;
};

}  // namespace portico::data

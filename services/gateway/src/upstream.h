#pragma once
// One gRPC channel per backend target, and the service -> target table.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "portico/admin/admin_server.h"
#include "portico/core/result.h"
#include "portico/gateway/gateway.h"

#include <grpcpp/channel.h>
#include <grpcpp/generic/generic_stub.h>

namespace portico::gateway {

class Upstreams {
 public:
  /// Channels for every target that one of `services` resolves to.
  /// kInvalidArgument if a service matches no upstream prefix.
  static Result<std::unique_ptr<Upstreams>> Create(const std::vector<Upstream>& upstreams,
                                                   const std::vector<std::string>& services);
  ~Upstreams();

  /// The stub for a routed service (never null for a service given to Create).
  grpc::GenericStub* StubFor(const std::string& service) const;
  /// Health of every distinct target. Blocks up to `timeout`.
  std::vector<admin::Check> Check(std::chrono::milliseconds timeout) const;

 private:
  struct Target {
    std::string name;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<grpc::GenericStub> stub;
  };
  Upstreams() = default;
  std::vector<std::unique_ptr<Target>> targets_;
  std::map<std::string, Target*> by_service_;
};

}  // namespace portico::gateway

#include "upstream.h"

#include <future>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>

namespace portico::gateway {

Result<std::unique_ptr<Upstreams>> Upstreams::Create(const std::vector<Upstream>& upstreams,
                                                     const std::vector<std::string>& services) {
  std::unique_ptr<Upstreams> out(new Upstreams());
  std::map<std::string, Target*> by_target;
  for (const auto& service : services) {
    const Upstream* best = nullptr;
    for (const auto& u : upstreams) {
      if (service.compare(0, u.prefix.size(), u.prefix) == 0 &&
          (best == nullptr || u.prefix.size() > best->prefix.size())) {
        best = &u;
      }
    }
    if (best == nullptr) {
      return Error::InvalidArgument("no upstream target for service " + service);
    }
    Target*& target = by_target[best->target];
    if (target == nullptr) {
      auto t = std::make_unique<Target>();
      t->name = best->target;
      // round_robin: with a dns:/// target that resolves to every replica
      // (a headless Service), calls spread over all of them; the default
      // pick_first would send everything to one.
      grpc::ChannelArguments args;
      args.SetLoadBalancingPolicyName("round_robin");
      t->channel =
          grpc::CreateCustomChannel(best->target, grpc::InsecureChannelCredentials(), args);
      t->stub = std::make_unique<grpc::GenericStub>(t->channel);
      target = t.get();
      out->targets_.push_back(std::move(t));
    }
    out->by_service_[service] = target;
  }
  return out;
}

Upstreams::~Upstreams() = default;

grpc::GenericStub* Upstreams::StubFor(const std::string& service) const {
  auto it = by_service_.find(service);
  return it == by_service_.end() ? nullptr : it->second->stub.get();
}

std::vector<admin::Check> Upstreams::Check(std::chrono::milliseconds timeout) const {
  // grpc.health.v1 messages are not in the generated pool: the request
  // HealthCheckRequest{service: ""} is empty on the wire, and the response
  // HealthCheckResponse{status = 1 (SERVING)} is the two bytes 08 01.
  struct Probe {
    grpc::ClientContext ctx;
    grpc::ByteBuffer request;
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
  };
  std::vector<std::unique_ptr<Probe>> probes;
  const auto deadline = std::chrono::system_clock::now() + timeout;
  for (const auto& t : targets_) {
    auto p = std::make_unique<Probe>();
    p->ctx.set_deadline(deadline);
    grpc::Slice empty("");
    p->request = grpc::ByteBuffer(&empty, 1);
    Probe* raw = p.get();
    t->stub->UnaryCall(&raw->ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                       &raw->request, &raw->response,
                       [raw](grpc::Status s) { raw->done.set_value(std::move(s)); });
    probes.push_back(std::move(p));
  }
  std::vector<admin::Check> checks;
  for (std::size_t i = 0; i < probes.size(); ++i) {
    // The deadline guarantees the callback runs; wait for it unconditionally
    // so the probe outlives the call.
    grpc::Status s = probes[i]->done.get_future().get();
    admin::Check c;
    c.name = "upstream " + targets_[i]->name;
    if (!s.ok()) {
      c.detail = s.error_message();
    } else {
      std::vector<grpc::Slice> slices;
      std::string bytes;
      if (probes[i]->response.Dump(&slices).ok()) {
        for (const auto& slice : slices) {
          bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
        }
      }
      c.ok = bytes == std::string("\x08\x01", 2);
      c.detail = c.ok ? "SERVING" : "NOT_SERVING";
    }
    checks.push_back(std::move(c));
  }
  return checks;
}

}  // namespace portico::gateway

#include "upstream.h"

#include <future>
#include <set>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/channel_arguments.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "portico/admin/metrics.h"
#include "portico/transcode/problem.h"
#include "portico/transcode/route_table.h"

namespace portico::gateway {
namespace {

// Registered once per process: every Upstreams (one per route reload)
// records into the same families.
struct UpstreamMetrics {
  prometheus::Family<prometheus::Counter>& calls;
  prometheus::Family<prometheus::Histogram>& duration;

  static UpstreamMetrics& Get() {
    static UpstreamMetrics m(*admin::Registry());
    return m;
  }

 private:
  explicit UpstreamMetrics(prometheus::Registry& r)
      : calls(prometheus::BuildCounter()
                  .Name("portico_upstream_requests_total")
                  .Help("Backend gRPC calls by target, service, method and status code.")
                  .Register(r)),
        duration(prometheus::BuildHistogram()
                     .Name("portico_upstream_request_duration_seconds")
                     .Help("Backend gRPC call latency (retries included) by target, service "
                           "and method.")
                     .Register(r)) {}
};

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const std::string& service_config) {
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(service_config);
  // Ours is the only service config: none comes from DNS TXT records.
  args.SetInt(GRPC_ARG_SERVICE_CONFIG_DISABLE_RESOLUTION, 1);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);  // the default in 1.51; said for the reader
  // Keepalive: a backend that vanished without closing its connections
  // (a killed node, a dropped NAT entry) is noticed within ~40 s even while
  // the gateway is idle, instead of at the next request's deadline.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(kKeepaliveTime.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(kKeepaliveTimeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

std::string ServiceConfigJson(const std::vector<std::string>& safe_methods) {
  boost::json::object config;
  config["loadBalancingConfig"] = boost::json::array{boost::json::object{{"round_robin", {}}}};
  // Client-side health checking: round_robin leaves out a replica whose
  // health service says NOT_SERVING (e.g. one draining for shutdown). A
  // server without the health service is taken as healthy.
  config["healthCheckConfig"] = boost::json::object{{"serviceName", ""}};
  if (!safe_methods.empty()) {
    boost::json::array names;
    for (const auto& m : safe_methods) {
      const auto slash = m.find('/');
      names.push_back(boost::json::object{{"service", m.substr(0, slash)},
                                          {"method", m.substr(slash + 1)}});
    }
    // Only UNAVAILABLE (no connection, a replica going away): the call did
    // not run, or ran a safe method whose repetition changes nothing.
    boost::json::object retry{{"maxAttempts", kRetryMaxAttempts},
                              {"initialBackoff", "0.05s"},
                              {"maxBackoff", "0.5s"},
                              {"backoffMultiplier", 2},
                              {"retryableStatusCodes", boost::json::array{"UNAVAILABLE"}}};
    config["methodConfig"] =
        boost::json::array{boost::json::object{{"name", std::move(names)},
                                               {"retryPolicy", std::move(retry)}}};
  }
  return boost::json::serialize(config);
}

Result<std::shared_ptr<const Upstreams>> Upstreams::Create(
    const std::vector<Upstream>& upstreams, const std::map<std::string, std::string>& exact,
    const std::vector<std::string>& services, const transcode::RouteTable& routes,
    const Upstreams* previous) {
  // service -> target.
  std::map<std::string, std::string> target_of;
  for (const auto& service : services) {
    if (auto it = exact.find(service); it != exact.end()) {
      target_of[service] = it->second;
      continue;
    }
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
    target_of[service] = best->target;
  }
  // target -> its safe methods, sorted, so an unchanged set gives the same
  // JSON and the channel is kept across a reload.
  std::map<std::string, std::set<std::string>> safe;
  for (const auto& [service, target] : target_of) safe[target];
  for (const auto& r : routes.routes()) {
    auto it = target_of.find(r->service);
    if (it == target_of.end() || r->method != transcode::HttpMethod::kGet) continue;
    safe[it->second].insert(r->rpc_path.substr(1));  // "pkg.Service/Method"
  }

  std::shared_ptr<Upstreams> out(new Upstreams());
  std::map<std::string, const Target*> by_target;
  for (const auto& [target, methods] : safe) {
    std::string config = ServiceConfigJson({methods.begin(), methods.end()});
    std::shared_ptr<const Target> reused;
    if (previous != nullptr) {
      for (const auto& t : previous->targets_) {
        if (t->name == target && t->service_config == config) reused = t;
      }
    }
    if (!reused) {
      auto t = std::make_shared<Target>();
      t->name = target;
      t->channel = MakeChannel(target, config);
      t->service_config = std::move(config);
      t->stub = std::make_unique<grpc::GenericStub>(t->channel);
      reused = std::move(t);
    }
    by_target[target] = reused.get();
    out->targets_.push_back(std::move(reused));
  }
  for (const auto& [service, target] : target_of) out->by_service_[service] = by_target[target];
  return std::shared_ptr<const Upstreams>(std::move(out));
}

Upstreams::~Upstreams() = default;

grpc::GenericStub* Upstreams::StubFor(const std::string& service) const {
  auto it = by_service_.find(service);
  return it == by_service_.end() ? nullptr : it->second->stub.get();
}

const std::string& Upstreams::TargetOf(const std::string& service) const {
  static const std::string kNone;
  auto it = by_service_.find(service);
  return it == by_service_.end() ? kNone : it->second->name;
}

void Upstreams::Observe(const std::string& service, std::string_view method,
                        grpc::StatusCode code, std::chrono::steady_clock::duration elapsed) const {
  auto& m = UpstreamMetrics::Get();
  const std::string& target = TargetOf(service);
  const std::string rpc(method);
  m.calls
      .Add({{"target", target},
            {"service", service},
            {"method", rpc},
            {"code", std::string(transcode::GrpcCodeName(code))}})
      .Increment();
  m.duration
      .Add({{"target", target}, {"service", service}, {"method", rpc}}, admin::LatencyBuckets())
      .Observe(std::chrono::duration<double>(elapsed).count());
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

#include "routing.h"

#include <map>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "portico/admin/metrics.h"
#include "portico/log/log.h"
#include "portico/transcode/descriptor_set.h"

namespace portico::gateway {
namespace {

struct ReloadMetrics {
  prometheus::Family<prometheus::Counter>& reloads;
  prometheus::Gauge& routes;
  prometheus::Gauge& generation;

  static ReloadMetrics& Get() {
    static ReloadMetrics m(*admin::Registry());
    return m;
  }

 private:
  explicit ReloadMetrics(prometheus::Registry& r)
      : reloads(prometheus::BuildCounter()
                    .Name("portico_route_reloads_total")
                    .Help("Route table reloads (SIGHUP) by result: success or failure.")
                    .Register(r)),
        routes(prometheus::BuildGauge()
                   .Name("portico_routes")
                   .Help("HTTP routes in the table in force.")
                   .Register(r)
                   .Add({})),
        generation(prometheus::BuildGauge()
                       .Name("portico_route_table_generation")
                       .Help("1 for the route table built at start, +1 per successful reload.")
                       .Register(r)
                       .Add({})) {
    // Both results are served from the start (at 0).
    reloads.Add({{"result", "success"}});
    reloads.Add({{"result", "failure"}});
  }
};

}  // namespace

Result<std::shared_ptr<const Routing>> BuildRouting(const GatewayOptions& options,
                                                    const Routing* previous) {
  std::vector<transcode::ServiceSource> sources{{options.services, nullptr}};
  std::map<std::string, std::string> exact;
  std::vector<std::string> services = options.services;
  if (!options.descriptor_set.empty()) {
    auto set = transcode::DescriptorSet::Load(options.descriptor_set);
    if (!set.ok()) return std::move(set).error();
    transcode::ServiceSource extra{{}, *set};
    for (const auto& s : options.extra_services) {
      extra.services.push_back(s.name);
      exact[s.name] = s.target;
      services.push_back(s.name);
    }
    // A service of the set with HTTP rules that nobody named would silently
    // stay unrouted: most likely a forgotten PORTICO_EXTRA_SERVICES entry.
    for (const auto& name : (*set)->services()) {
      if (exact.contains(name)) continue;
      auto probe = transcode::RouteTable::BuildFrom({{{name}, *set}});
      if (probe.ok() && !probe->routes().empty()) {
        return Error::InvalidArgument("service " + name + " in " + options.descriptor_set +
                                      " has HTTP rules but no target in PORTICO_EXTRA_SERVICES");
      }
    }
    sources.push_back(std::move(extra));
  } else if (!options.extra_services.empty()) {
    return Error::InvalidArgument("extra services need a descriptor set (PORTICO_DESCRIPTOR_SET)");
  }
  auto table = transcode::RouteTable::BuildFrom(sources);
  if (!table.ok()) return std::move(table).error();
  auto shared_table = std::make_shared<const transcode::RouteTable>(std::move(table).value());
  auto upstreams = Upstreams::Create(options.upstreams, exact, services, *shared_table,
                                     previous != nullptr ? previous->upstreams.get() : nullptr);
  if (!upstreams.ok()) return std::move(upstreams).error();
  auto routing = std::make_shared<Routing>();
  routing->table = std::move(shared_table);
  routing->upstreams = std::move(upstreams).value();
  routing->generation = previous != nullptr ? previous->generation + 1 : 1;
  return std::shared_ptr<const Routing>(std::move(routing));
}

Result<std::shared_ptr<RouteStore>> RouteStore::Create(GatewayOptions options) {
  std::shared_ptr<RouteStore> store(new RouteStore(std::move(options)));
  auto routing = BuildRouting(store->options_, nullptr);
  if (!routing.ok()) return std::move(routing).error();
  log::Info("routes built",
            {{"routes", static_cast<std::int64_t>((*routing)->table->routes().size())},
             {"services", static_cast<std::int64_t>((*routing)->table->Services().size())},
             {"descriptor_set", store->options_.descriptor_set}});
  store->Publish(std::move(routing).value());
  return store;
}

std::shared_ptr<const Routing> RouteStore::Get() const {
  std::lock_guard lock(mu_);
  return current_;
}

void RouteStore::Publish(std::shared_ptr<const Routing> routing) {
  auto& m = ReloadMetrics::Get();
  m.routes.Set(static_cast<double>(routing->table->routes().size()));
  m.generation.Set(static_cast<double>(routing->generation));
  std::lock_guard lock(mu_);
  if (current_) retired_.push_back(std::move(current_));
  current_ = std::move(routing);
}

void RouteStore::ReleaseRetired() {
  std::vector<std::shared_ptr<const Routing>> unused;
  {
    std::lock_guard lock(mu_);
    // A retired routing is never handed out again: once only this list
    // holds it, nobody can take it back, so use_count() == 1 is final.
    for (auto it = retired_.begin(); it != retired_.end();) {
      if (it->use_count() == 1) {
        unused.push_back(std::move(*it));
        it = retired_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Destroyed here, outside the lock.
}

Status RouteStore::Reload() {
  std::lock_guard reload(reload_mu_);
  const auto previous = Get();
  auto routing = BuildRouting(options_, previous.get());
  auto& m = ReloadMetrics::Get();
  if (!routing.ok()) {
    m.reloads.Add({{"result", "failure"}}).Increment();
    log::Error("route reload failed; the routes in force stay",
               {{"error", routing.error().message},
                {"descriptor_set", options_.descriptor_set},
                {"generation", static_cast<std::int64_t>(previous->generation)}});
    return std::move(routing).error();
  }
  const auto& next = *routing;
  log::Info("routes reloaded",
            {{"routes", static_cast<std::int64_t>(next->table->routes().size())},
             {"services", static_cast<std::int64_t>(next->table->Services().size())},
             {"descriptor_set", options_.descriptor_set},
             {"generation", static_cast<std::int64_t>(next->generation)}});
  m.reloads.Add({{"result", "success"}}).Increment();
  Publish(std::move(routing).value());
  ReleaseRetired();
  return {};
}

}  // namespace portico::gateway

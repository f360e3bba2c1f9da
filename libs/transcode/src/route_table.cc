#include "portico/transcode/route_table.h"

#include <algorithm>
#include <map>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/message.h>

#include "fields.h"
#include "portico/api/v1/annotations.pb.h"
#include "portico/transcode/descriptor_set.h"

namespace portico::transcode {
namespace {

namespace pb = google::protobuf;
using portico::api::v1::HttpRule;

Error BadRule(const pb::MethodDescriptor* m, std::string_view why) {
  return Error::InvalidArgument("HTTP rule of " + m->full_name() + ": " + std::string(why));
}

struct Binding {
  HttpMethod method;
  std::string pattern;
};

std::optional<Binding> BindingOf(const HttpRule& rule) {
  switch (rule.pattern_case()) {
    case HttpRule::kGet: return Binding{HttpMethod::kGet, rule.get()};
    case HttpRule::kPut: return Binding{HttpMethod::kPut, rule.put()};
    case HttpRule::kPost: return Binding{HttpMethod::kPost, rule.post()};
    case HttpRule::kDelete: return Binding{HttpMethod::kDelete, rule.delete_()};
    case HttpRule::kPatch: return Binding{HttpMethod::kPatch, rule.patch()};
    case HttpRule::PATTERN_NOT_SET: break;
  }
  return std::nullopt;
}

Result<std::unique_ptr<Route>> MakeRoute(const pb::MethodDescriptor* m, const HttpRule& rule,
                                         const portico::api::v1::AccessPolicy& policy) {
  const auto binding = BindingOf(rule);
  if (!binding) return BadRule(m, "no verb and path");
  auto path = PathTemplate::Parse(binding->pattern);
  if (!path.ok()) return BadRule(m, path.error().message);

  auto route = std::make_unique<Route>();
  route->method = binding->method;
  route->path = std::move(path).value();
  route->rpc = m;
  route->service = m->service()->full_name();
  route->rpc_path = "/" + m->service()->full_name() + "/" + m->name();
  route->body = rule.body();
  route->response_body = rule.response_body();
  route->success_status = rule.success_status();
  route->server_streaming = m->server_streaming();
  route->stream_event_id = rule.stream_event_id();
  route->stream_resume = rule.stream_resume();
  route->body_field_mask = rule.body_field_mask();
  switch (policy.access()) {
    case portico::api::v1::PUBLIC: route->access = Access::kPublic; break;
    case portico::api::v1::ADMIN: route->access = Access::kAdmin; break;
    default: route->access = Access::kUser; break;
  }
  route->scopes.assign(policy.scopes().begin(), policy.scopes().end());

  if (m->client_streaming()) return BadRule(m, "client-streaming RPCs cannot be routed");
  for (const auto& var : route->path.Variables()) {
    auto fp = internal::ResolveFieldPath(m->input_type(), var);
    if (!fp.ok()) return BadRule(m, "path variable " + fp.error().message);
    const auto* leaf = fp->back();
    if (leaf->is_repeated() || !internal::IsTextSettable(leaf)) {
      return BadRule(m, "path variable \"" + var + "\" must name a singular scalar field");
    }
  }
  if (!route->body.empty() && route->body != "*" &&
      internal::FindField(m->input_type(), route->body) == nullptr) {
    return BadRule(m, "body \"" + route->body + "\" is not a field of " +
                          m->input_type()->full_name());
  }
  if (!route->body_field_mask.empty()) {
    const auto* f = internal::FindField(m->input_type(), route->body_field_mask);
    if (f == nullptr || f->is_repeated() || f->message_type() == nullptr ||
        f->message_type()->full_name() != "google.protobuf.FieldMask") {
      return BadRule(m, "body_field_mask \"" + route->body_field_mask +
                            "\" must name a singular google.protobuf.FieldMask field of " +
                            m->input_type()->full_name());
    }
    if (route->body.empty()) return BadRule(m, "body_field_mask needs a body");
    if (route->body != "*") {
      const auto* b = internal::FindField(m->input_type(), route->body);
      if (b->is_repeated() || b->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        return BadRule(m, "body_field_mask needs body \"*\" or a singular message body field");
      }
    }
  }
  if (!route->response_body.empty() &&
      internal::FindField(m->output_type(), route->response_body) == nullptr) {
    return BadRule(m, "response_body \"" + route->response_body + "\" is not a field of " +
                          m->output_type()->full_name());
  }
  if ((!route->stream_event_id.empty() || !route->stream_resume.empty()) &&
      !route->server_streaming) {
    return BadRule(m, "stream_event_id and stream_resume need a server-streaming RPC");
  }
  for (const auto& [name, type] : {std::pair{route->stream_event_id, m->output_type()},
                                   std::pair{route->stream_resume, m->input_type()}}) {
    if (name.empty()) continue;
    const auto* f = internal::FindField(type, name);
    if (f == nullptr || f->is_repeated() || !internal::IsTextSettable(f)) {
      return BadRule(m, "\"" + name + "\" must name a singular scalar field of " +
                            type->full_name());
    }
  }
  if (route->success_status != 0 &&
      (route->success_status < 200 || route->success_status > 299)) {
    return BadRule(m, "success_status must be 2xx");
  }
  return route;
}

// Specificity of a matched template: lower sorts first (is more specific).
using Rank = std::vector<int>;

bool MatchRoute(const Route& route, const std::vector<std::string_view>& raw,
                const std::vector<std::string>& decoded, Rank* rank, PathVars* vars,
                bool* bad_path) {
  const auto& segs = route.path.segments();
  const std::string& verb = route.path.verb();
  std::string last_decoded;  // the last segment without its verb
  if (!verb.empty()) {
    const std::string_view last = raw.back();
    if (last.size() <= verb.size() || last[last.size() - verb.size() - 1] != ':' ||
        last.substr(last.size() - verb.size()) != verb) {
      return false;
    }
    if (!PercentDecode(last.substr(0, last.size() - verb.size() - 1), &last_decoded)) {
      *bad_path = true;
      return false;
    }
  }
  auto segment = [&](std::size_t i) -> const std::string& {
    return (!verb.empty() && i + 1 == raw.size()) ? last_decoded : decoded[i];
  };

  rank->clear();
  vars->clear();
  std::size_t i = 0;
  for (const auto& s : segs) {
    if (i >= raw.size()) return false;
    switch (s.kind) {
      case Segment::Kind::kLiteral:
        if (segment(i) != s.literal) return false;
        rank->push_back(0);
        ++i;
        break;
      case Segment::Kind::kSingle:
        if (segment(i).empty()) return false;
        if (!s.variable.empty()) vars->emplace_back(s.variable, segment(i));
        rank->push_back(1);
        ++i;
        break;
      case Segment::Kind::kMulti: {
        std::string value;
        for (; i < raw.size(); ++i) {
          if (segment(i).empty()) return false;
          if (!value.empty()) value += '/';
          value += segment(i);
        }
        if (!s.variable.empty()) vars->emplace_back(s.variable, std::move(value));
        rank->push_back(2);
        break;
      }
    }
  }
  if (i != raw.size()) return false;
  rank->push_back(verb.empty() ? 1 : 0);
  return true;
}

// The method's options with our extensions parsed. Options of a file built
// at run time are parsed by the generated MethodOptions class, which knows
// only the extensions registered in the process; should they arrive as
// unknown fields, reparsing the bytes through the generated pool (where our
// annotations.proto is compiled in) recovers them.
const pb::MethodOptions& OptionsOf(const pb::MethodDescriptor* m, pb::MethodOptions* scratch) {
  const pb::MethodOptions& options = m->options();
  if (options.GetReflection()->GetUnknownFields(options).empty()) return options;
  scratch->Clear();
  if (!scratch->ParseFromString(options.SerializeAsString())) return options;
  return *scratch;
}

}  // namespace

std::string_view HttpMethodName(HttpMethod m) {
  switch (m) {
    case HttpMethod::kGet: return "GET";
    case HttpMethod::kPut: return "PUT";
    case HttpMethod::kPost: return "POST";
    case HttpMethod::kDelete: return "DELETE";
    case HttpMethod::kPatch: return "PATCH";
  }
  return "GET";
}

std::optional<HttpMethod> ParseHttpMethod(std::string_view s) {
  if (s == "GET") return HttpMethod::kGet;
  if (s == "PUT") return HttpMethod::kPut;
  if (s == "POST") return HttpMethod::kPost;
  if (s == "DELETE") return HttpMethod::kDelete;
  if (s == "PATCH") return HttpMethod::kPatch;
  return std::nullopt;
}

Result<RouteTable> RouteTable::Build(const std::vector<std::string>& services,
                                     const pb::DescriptorPool* pool) {
  if (pool == nullptr || pool == pb::DescriptorPool::generated_pool()) {
    return BuildFrom({ServiceSource{services, nullptr}});
  }
  // A caller-owned pool without a factory: messages from the generated
  // factory, as before (the pool's types must be compiled in).
  RouteTable table;
  std::map<std::pair<HttpMethod, std::string>, std::string> owners;
  for (const auto& name : services) {
    if (Status st = table.AddService(name, pool, pb::MessageFactory::generated_factory(), &owners);
        !st.ok()) {
      return std::move(st).error();
    }
  }
  return table;
}

Result<RouteTable> RouteTable::BuildFrom(const std::vector<ServiceSource>& sources) {
  RouteTable table;
  // (method, shape) -> the RPC that owns it, to report conflicts.
  std::map<std::pair<HttpMethod, std::string>, std::string> owners;
  for (const auto& source : sources) {
    const pb::DescriptorPool* pool = source.descriptors ? source.descriptors->pool()
                                                        : pb::DescriptorPool::generated_pool();
    pb::MessageFactory* factory = source.descriptors ? source.descriptors->factory()
                                                     : pb::MessageFactory::generated_factory();
    if (source.descriptors) table.descriptors_.push_back(source.descriptors);
    for (const auto& name : source.services) {
      if (Status st = table.AddService(name, pool, factory, &owners); !st.ok()) {
        return std::move(st).error();
      }
    }
  }
  return table;
}

std::vector<std::string> RouteTable::Services() const {
  std::vector<std::string> out;
  for (const auto& r : routes_) {
    if (std::find(out.begin(), out.end(), r->service) == out.end()) out.push_back(r->service);
  }
  return out;
}

Status RouteTable::AddService(const std::string& name, const pb::DescriptorPool* pool,
                              pb::MessageFactory* factory,
                              std::map<std::pair<HttpMethod, std::string>, std::string>* owners) {
  {
    const pb::ServiceDescriptor* service = pool->FindServiceByName(name);
    if (service == nullptr) return Error::InvalidArgument("unknown service \"" + name + "\"");
    for (int i = 0; i < service->method_count(); ++i) {
      const pb::MethodDescriptor* m = service->method(i);
      pb::MethodOptions scratch;
      const pb::MethodOptions& options = OptionsOf(m, &scratch);
      if (!options.HasExtension(portico::api::v1::http)) continue;
      const HttpRule& rule = options.GetExtension(portico::api::v1::http);
      const auto& policy = options.GetExtension(portico::api::v1::access);
      std::vector<const HttpRule*> rules{&rule};
      for (const auto& extra : rule.additional_bindings()) rules.push_back(&extra);
      for (const HttpRule* r : rules) {
        auto route = MakeRoute(m, *r, policy);
        if (!route.ok()) return std::move(route).error();
        route.value()->timeout = std::chrono::milliseconds(rule.timeout_ms());
        route.value()->request_prototype = factory->GetPrototype(m->input_type());
        route.value()->response_prototype = factory->GetPrototype(m->output_type());
        if (route.value()->request_prototype == nullptr ||
            route.value()->response_prototype == nullptr) {
          return Error::InvalidArgument("no message class for the types of " + m->full_name());
        }
        const auto key = std::make_pair(route.value()->method, route.value()->path.Shape());
        const std::string owner = m->full_name() + " (" + route.value()->path.text() + ")";
        if (auto [it, inserted] = owners->emplace(key, owner); !inserted) {
          return Error::InvalidArgument("conflicting HTTP rules for " +
                                        std::string(HttpMethodName(key.first)) + " " +
                                        key.second + ": " + it->second + " and " + owner);
        }
        routes_.push_back(std::move(route).value());
      }
    }
  }
  return {};
}

MatchResult RouteTable::Match(std::string_view method, std::string_view path) const {
  MatchResult result;
  if (path.empty() || path[0] != '/') return result;

  std::vector<std::string_view> raw;
  for (std::size_t pos = 1;;) {
    const auto slash = path.find('/', pos);
    raw.push_back(path.substr(pos, slash == std::string_view::npos ? slash : slash - pos));
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  std::vector<std::string> decoded(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (!PercentDecode(raw[i], &decoded[i])) {
      result.kind = MatchResult::Kind::kBadPath;
      return result;
    }
  }

  const auto wanted = ParseHttpMethod(method);
  Rank rank, best_rank;
  PathVars vars;
  std::vector<std::string> allowed;
  bool bad_path = false;
  for (const auto& route : routes_) {
    if (!MatchRoute(*route, raw, decoded, &rank, &vars, &bad_path)) continue;
    allowed.emplace_back(HttpMethodName(route->method));
    if (!wanted || route->method != *wanted) continue;
    if (result.route == nullptr || rank < best_rank) {
      result.route = route.get();
      result.vars = std::move(vars);
      best_rank = rank;
      vars = PathVars();
    }
  }
  if (result.route != nullptr) {
    result.kind = MatchResult::Kind::kFound;
  } else if (!allowed.empty()) {
    std::sort(allowed.begin(), allowed.end());
    allowed.erase(std::unique(allowed.begin(), allowed.end()), allowed.end());
    result.kind = MatchResult::Kind::kMethodNotAllowed;
    result.allowed = std::move(allowed);
  } else if (bad_path) {
    result.kind = MatchResult::Kind::kBadPath;
  }
  return result;
}

}  // namespace portico::transcode

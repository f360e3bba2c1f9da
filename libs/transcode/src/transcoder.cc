#include "portico/transcode/transcoder.h"

#include <set>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include "fields.h"

namespace portico::transcode {
namespace {

namespace pb = google::protobuf;

bool IsBlank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

pb::util::JsonParseOptions ParseOptions() {
  pb::util::JsonParseOptions o;
  o.ignore_unknown_fields = false;
  o.case_insensitive_enum_parsing = true;
  return o;
}

Error BadBody(std::string_view why) {
  return Error::InvalidArgument("invalid JSON body: " + std::string(why));
}

// Fills `msg` from the body according to the route's body rule.
Status ApplyBody(const Route& route, pb::Message* msg, std::string_view body) {
  if (route.body.empty()) {
    if (!IsBlank(body)) return Error::InvalidArgument("this endpoint takes no request body");
    return {};
  }
  if (IsBlank(body)) return {};
  if (route.body == "*") {
    const auto st = pb::util::JsonStringToMessage(pb::StringPiece(body.data(), body.size()), msg,
                                                  ParseOptions());
    if (!st.ok()) return BadBody(st.message().as_string());
    return {};
  }
  const pb::FieldDescriptor* f = internal::FindField(msg->GetDescriptor(), route.body);
  if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
    pb::Message* sub = msg->GetReflection()->MutableMessage(msg, f);
    const auto st = pb::util::JsonStringToMessage(pb::StringPiece(body.data(), body.size()), sub,
                                                  ParseOptions());
    if (!st.ok()) return BadBody(st.message().as_string());
    return {};
  }
  // A scalar, repeated or map field: the body is that field's JSON value.
  // Check it is exactly one JSON value before wrapping it in an object, so
  // the body cannot smuggle in other fields.
  boost::system::error_code ec;
  boost::json::value parsed = boost::json::parse(boost::json::string_view(body.data(), body.size()), ec);
  if (ec) return BadBody(ec.message());
  boost::json::object wrapper;
  wrapper[f->json_name()] = std::move(parsed);
  std::unique_ptr<pb::Message> scratch(msg->New());
  const auto st = pb::util::JsonStringToMessage(boost::json::serialize(wrapper), scratch.get(),
                                                ParseOptions());
  if (!st.ok()) return BadBody(st.message().as_string());
  msg->GetReflection()->SwapFields(msg, scratch.get(), {f});
  return {};
}

// Fills the route's body_field_mask field with the paths the body names,
// unless the request set the mask itself. The body has been parsed into the
// message already, so it is an object of known keys.
void FillBodyMask(const Route& route, pb::Message* msg, std::string_view body) {
  const pb::Descriptor* desc = msg->GetDescriptor();
  const pb::FieldDescriptor* mask = internal::FindField(desc, route.body_field_mask);
  const pb::Reflection* r = msg->GetReflection();
  if (r->HasField(*msg, mask)) return;
  const pb::Descriptor* body_type =
      route.body == "*" ? desc : internal::FindField(desc, route.body)->message_type();
  pb::Message* out = r->MutableMessage(msg, mask);
  const pb::FieldDescriptor* paths = out->GetDescriptor()->FindFieldByName("paths");
  for (auto& path : internal::FieldMaskPaths(body_type, body)) {
    // With body "*" the mask field itself may be a key only if it was set
    // (handled above); an explicit null leaves it unset and is not a path.
    if (route.body == "*" && path == mask->name()) continue;
    out->GetReflection()->AddString(out, paths, std::move(path));
  }
}

bool StartsWithPath(const std::string& path, const std::string& prefix) {
  return path == prefix || (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 &&
                            path[prefix.size()] == '.');
}

Error UnknownParam(std::string_view name) {
  return Error::InvalidArgument("unknown query parameter \"" + std::string(name) + "\"",
                                {{std::string(name), "unknown query parameter"}});
}

}  // namespace

Result<std::vector<std::pair<std::string, std::string>>> ParseQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t pos = 0;
  while (pos <= query.size()) {
    auto amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view pair = query.substr(pos, amp - pos);
    pos = amp + 1;
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    std::string raw_key(pair.substr(0, eq));
    std::string raw_value(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    for (auto* s : {&raw_key, &raw_value}) {
      for (char& c : *s) {
        if (c == '+') c = ' ';
      }
    }
    std::string key, value;
    if (!PercentDecode(raw_key, &key) || !PercentDecode(raw_value, &value)) {
      return Error::InvalidArgument("malformed percent-encoding in the query string");
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

Result<std::unique_ptr<pb::Message>> BuildRequest(const Route& route, const PathVars& vars,
                                                  std::string_view query, std::string_view body) {
  const pb::Descriptor* desc = route.rpc->input_type();
  const pb::Message* prototype = route.request_prototype != nullptr
                                     ? route.request_prototype
                                     : pb::MessageFactory::generated_factory()->GetPrototype(desc);
  if (prototype == nullptr) return Error::Internal("no prototype for " + desc->full_name());
  std::unique_ptr<pb::Message> msg(prototype->New());

  if (Status st = ApplyBody(route, msg.get(), body); !st.ok()) return std::move(st).error();

  std::vector<std::string> bound;  // JSON paths of fields the path binds
  for (const auto& [var, value] : vars) {
    auto fp = internal::ResolveFieldPath(desc, var);
    if (!fp.ok()) return std::move(fp).error();
    if (Status st = internal::SetFromText(msg.get(), *fp, value); !st.ok()) {
      return std::move(st).error();
    }
    bound.push_back(internal::JsonPath(*fp));
  }

  auto params = ParseQuery(query);
  if (!params.ok()) return std::move(params).error();
  std::string body_field;
  if (!route.body.empty() && route.body != "*") {
    body_field = internal::FindField(desc, route.body)->json_name();
  }
  std::set<std::string> seen;
  for (const auto& [key, value] : *params) {
    // With body "*" every field comes from the body (or the path).
    if (route.body == "*") return UnknownParam(key);
    auto fp = internal::ResolveFieldPath(desc, key);
    if (!fp.ok()) return UnknownParam(key);
    const std::string json_path = internal::JsonPath(*fp);
    if (!body_field.empty() && StartsWithPath(json_path, body_field)) return UnknownParam(key);
    for (const auto& b : bound) {
      if (StartsWithPath(json_path, b) || StartsWithPath(b, json_path)) return UnknownParam(key);
    }
    if (!fp->back()->is_repeated() && !seen.insert(json_path).second) {
      return Error::InvalidArgument("query parameter \"" + key + "\" given more than once",
                                    {{json_path, "given more than once"}});
    }
    if (Status st = internal::SetFromText(msg.get(), *fp, value); !st.ok()) {
      return std::move(st).error();
    }
  }
  if (!route.body_field_mask.empty() && !IsBlank(body)) FillBodyMask(route, msg.get(), body);
  return msg;
}

std::unique_ptr<pb::Message> NewResponse(const Route& route) {
  const pb::Message* prototype =
      route.response_prototype != nullptr
          ? route.response_prototype
          : pb::MessageFactory::generated_factory()->GetPrototype(route.rpc->output_type());
  return std::unique_ptr<pb::Message>(prototype->New());
}

Result<HttpBody> RenderResponse(const Route& route, const pb::Message& response) {
  HttpBody out;
  const bool empty_type = route.rpc->output_type()->full_name() == "google.protobuf.Empty";
  out.status = route.success_status != 0 ? route.success_status : (empty_type ? 204 : 200);
  if (out.status == 204) return out;

  pb::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = false;

  if (route.response_body.empty()) {
    const auto st = pb::util::MessageToJsonString(response, &out.json, options);
    if (!st.ok()) return Error::Internal("response to JSON: " + st.message().as_string());
    return out;
  }
  const pb::FieldDescriptor* f = internal::FindField(response.GetDescriptor(), route.response_body);
  if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
    const auto st = pb::util::MessageToJsonString(
        response.GetReflection()->GetMessage(response, f), &out.json, options);
    if (!st.ok()) return Error::Internal("response to JSON: " + st.message().as_string());
    return out;
  }
  // A scalar, repeated or map field: print the message, pick the member.
  std::string whole;
  const auto st = pb::util::MessageToJsonString(response, &whole, options);
  if (!st.ok()) return Error::Internal("response to JSON: " + st.message().as_string());
  boost::system::error_code ec;
  boost::json::value parsed = boost::json::parse(whole, ec);
  if (ec || !parsed.is_object()) return Error::Internal("response to JSON: unparsable output");
  const auto* member = parsed.as_object().if_contains(f->json_name());
  out.json = member != nullptr ? boost::json::serialize(*member) : "null";
  return out;
}

}  // namespace portico::transcode

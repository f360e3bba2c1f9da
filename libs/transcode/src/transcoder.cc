#include "portico/transcode/transcoder.h"

#include <set>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include "fields.h"
#include "portico/transcode/json_object.h"

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

// Boost.JSON's own limit for the bodies it parses here; the gateway's depth
// screen (at most kMaxJsonDepth) answers deeper bodies before they arrive.
boost::json::parse_options DomOptions() {
  boost::json::parse_options o;
  o.max_depth = 80;
  return o;
}

Status ParseInto(std::string_view json, pb::Message* msg) {
  const auto st =
      pb::util::JsonStringToMessage(pb::StringPiece(json.data(), json.size()), msg, ParseOptions());
  if (!st.ok()) return BadBody(st.message().as_string());
  return {};
}

// JSON of a message of `type` as protobuf's parser must see it: the objects
// of json_object fields checked and turned into strings (json_object.h).
// `body` itself when the type has none. `encoded` owns the rewritten text.
Result<std::string_view> ForProtobuf(const pb::Descriptor* type, std::string_view body,
                                     std::string* encoded) {
  if (!HasJsonObjectFields(type)) return body;
  auto rewritten = EncodeJsonObjectFields(type, body);
  if (!rewritten.ok()) return std::move(rewritten).error();
  *encoded = std::move(*rewritten);
  return std::string_view(*encoded);
}

// Fills `msg` from the body according to the route's body rule. `seen` is
// the body as protobuf's parser read it (for body_field_mask).
Status ApplyBody(const Route& route, pb::Message* msg, std::string_view body, std::string* seen) {
  if (route.body.empty()) {
    if (!IsBlank(body)) return Error::InvalidArgument("this endpoint takes no request body");
    return {};
  }
  if (IsBlank(body)) return {};
  if (route.body == "*") {
    auto json = ForProtobuf(msg->GetDescriptor(), body, seen);
    if (!json.ok()) return std::move(json).error();
    if (json->data() == body.data()) seen->assign(body);
    return ParseInto(*json, msg);
  }
  const pb::FieldDescriptor* f = internal::FindField(msg->GetDescriptor(), route.body);
  if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
    auto json = ForProtobuf(f->message_type(), body, seen);
    if (!json.ok()) return std::move(json).error();
    if (json->data() == body.data()) seen->assign(body);
    return ParseInto(*json, msg->GetReflection()->MutableMessage(msg, f));
  }
  if (!f->is_repeated() && IsJsonObjectField(f)) {
    // The body is the object itself.
    if (Status st = ValidateJsonObject(body, f->json_name()); !st.ok()) return st;
    msg->GetReflection()->SetString(msg, f, std::string(body));
    return {};
  }
  // A scalar, repeated or map field: the body is that field's JSON value.
  // Check it is exactly one JSON value before wrapping it in an object, so
  // the body cannot smuggle in other fields.
  boost::system::error_code ec;
  boost::json::value parsed =
      boost::json::parse(boost::json::string_view(body.data(), body.size()), ec, {}, DomOptions());
  if (ec) return BadBody(ec.message());
  boost::json::object wrapper;
  wrapper[f->json_name()] = std::move(parsed);
  std::unique_ptr<pb::Message> scratch(msg->New());
  if (Status st = ParseInto(boost::json::serialize(wrapper), scratch.get()); !st.ok()) return st;
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

  std::string seen_body;
  if (Status st = ApplyBody(route, msg.get(), body, &seen_body); !st.ok()) {
    return std::move(st).error();
  }

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
  if (!route.body_field_mask.empty() && !IsBlank(body)) {
    FillBodyMask(route, msg.get(), seen_body);
  }
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
  // Protobuf's JSON of `m`, with json_object fields as the objects they hold.
  auto print = [&options](const pb::Message& m, std::string* json) -> Status {
    const auto st = pb::util::MessageToJsonString(m, json, options);
    if (!st.ok()) return Error::Internal("response to JSON: " + st.message().as_string());
    if (!HasJsonObjectFields(m.GetDescriptor())) return {};
    auto decoded = DecodeJsonObjectFields(m.GetDescriptor(), *json);
    if (!decoded.ok()) return std::move(decoded).error();
    *json = std::move(*decoded);
    return {};
  };

  if (route.response_body.empty()) {
    if (Status st = print(response, &out.json); !st.ok()) return std::move(st).error();
    return out;
  }
  const pb::FieldDescriptor* f = internal::FindField(response.GetDescriptor(), route.response_body);
  if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
    Status st = print(response.GetReflection()->GetMessage(response, f), &out.json);
    if (!st.ok()) return std::move(st).error();
    return out;
  }
  if (!f->is_repeated() && IsJsonObjectField(f)) {
    out.json = response.GetReflection()->GetString(response, f);
    if (!ValidateJsonObject(out.json, f->json_name()).ok()) {
      return Error::Internal("response field " + f->json_name() + " is not a JSON object");
    }
    return out;
  }
  // A scalar, repeated or map field: print the message (json_object fields
  // still strings, so a re-parse keeps their text), pick the member, then
  // splice json_object fields inside it through a one-member wrapper.
  std::string whole;
  const auto st = pb::util::MessageToJsonString(response, &whole, options);
  if (!st.ok()) return Error::Internal("response to JSON: " + st.message().as_string());
  boost::system::error_code ec;
  boost::json::value parsed = boost::json::parse(whole, ec, {}, DomOptions());
  if (ec || !parsed.is_object()) return Error::Internal("response to JSON: unparsable output");
  const auto* member = parsed.as_object().if_contains(f->json_name());
  out.json = member != nullptr ? boost::json::serialize(*member) : "null";
  if (member == nullptr || !HasJsonObjectFields(response.GetDescriptor())) return out;
  const std::string prefix = "{\"" + f->json_name() + "\":";
  auto decoded = DecodeJsonObjectFields(response.GetDescriptor(), prefix + out.json + "}");
  if (!decoded.ok()) return std::move(decoded).error();
  out.json = decoded->substr(prefix.size(), decoded->size() - prefix.size() - 1);
  return out;
}

}  // namespace portico::transcode

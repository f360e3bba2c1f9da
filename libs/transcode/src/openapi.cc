#include "portico/transcode/openapi.h"

#include "portico/core/strings.h"
#include "portico/transcode/json_object.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <map>
#include <set>
#include <vector>

#include "fields.h"
#include "portico/api/v1/annotations.pb.h"
#include "portico/transcode/problem.h"

namespace portico::transcode {

namespace pb = google::protobuf;
namespace json = boost::json;

// ---- comments ----

ProtoComments::ProtoComments() : pool_(std::make_unique<pb::DescriptorPool>()) {}
ProtoComments::~ProtoComments() = default;
ProtoComments::ProtoComments(ProtoComments&&) noexcept = default;
ProtoComments& ProtoComments::operator=(ProtoComments&&) noexcept = default;

Status ProtoComments::Add(std::string_view serialized) {
  pb::FileDescriptorSet set;
  if (!set.ParseFromArray(serialized.data(), static_cast<int>(serialized.size()))) {
    return Error::InvalidArgument("not a serialized FileDescriptorSet");
  }
  // protoc writes a set with --include_imports in dependency order.
  for (const auto& file : set.file()) {
    if (pool_->FindFileByName(file.name()) != nullptr) continue;
    if (pool_->BuildFile(file) == nullptr) {
      return Error::InvalidArgument("cannot build " + file.name() +
                                    " from the descriptor set (is an import missing?)");
    }
  }
  return {};
}

namespace {

// A comment as protoc records it: every line keeps the space after "//".
std::string CleanComment(const std::string& raw) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos <= raw.size()) {
    auto nl = raw.find('\n', pos);
    if (nl == std::string::npos) nl = raw.size();
    std::string line = raw.substr(pos, nl - pos);
    if (!line.empty() && line.front() == ' ') line.erase(0, 1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    lines.push_back(std::move(line));
    pos = nl + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  std::size_t first = 0;
  while (first < lines.size() && lines[first].empty()) ++first;
  std::string out;
  for (std::size_t i = first; i < lines.size(); ++i) {
    if (i > first) out += '\n';
    out += lines[i];
  }
  return out;
}

template <typename D>
std::string CommentOf(const D* d) {
  pb::SourceLocation loc;
  if (d == nullptr || !d->GetSourceLocation(&loc)) return {};
  if (!loc.leading_comments.empty()) return CleanComment(loc.leading_comments);
  return CleanComment(loc.trailing_comments);
}

}  // namespace

std::string ProtoComments::Of(const pb::Descriptor* d) const {
  if (auto c = CommentOf(d); !c.empty()) return c;
  return CommentOf(pool_->FindMessageTypeByName(d->full_name()));
}
std::string ProtoComments::Of(const pb::FieldDescriptor* d) const {
  if (auto c = CommentOf(d); !c.empty()) return c;
  return CommentOf(pool_->FindFieldByName(d->full_name()));
}
std::string ProtoComments::Of(const pb::EnumDescriptor* d) const {
  if (auto c = CommentOf(d); !c.empty()) return c;
  return CommentOf(pool_->FindEnumTypeByName(d->full_name()));
}
std::string ProtoComments::Of(const pb::EnumValueDescriptor* d) const {
  if (auto c = CommentOf(d); !c.empty()) return c;
  return CommentOf(pool_->FindEnumValueByName(d->full_name()));
}
std::string ProtoComments::Of(const pb::ServiceDescriptor* d) const {
  if (auto c = CommentOf(d); !c.empty()) return c;
  return CommentOf(pool_->FindServiceByName(d->full_name()));
}
std::string ProtoComments::Of(const pb::MethodDescriptor* d) const {
  if (auto c = CommentOf(d); !c.empty()) return c;
  return CommentOf(pool_->FindMethodByName(d->full_name()));
}

// ---- the document ----

namespace {

constexpr std::string_view kSchemas = "#/components/schemas/";
constexpr std::string_view kProblemJson = "application/problem+json";
constexpr std::string_view kBearer = "bearerAuth";

// The first sentence of a comment, for an operation's summary.
std::string FirstSentence(const std::string& text) {
  std::size_t end = text.size();
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    if (text[i] == '.' && (text[i + 1] == ' ' || text[i + 1] == '\n')) {
      end = i;
      break;
    }
  }
  if (const auto blank = text.find("\n\n"); blank < end) end = blank;
  std::string s = text.substr(0, end);
  if (!s.empty() && s.back() == '.') s.pop_back();
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

std::string ReadableName(std::string_view name) {
  // "ListItems" -> "List items", for operations that have no comment.
  std::string out;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (i > 0 && std::isupper(static_cast<unsigned char>(c))) {
      out += ' ';
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else {
      out += c;
    }
  }
  return out;
}

json::object Ref(const std::string& name) {
  return json::object{{"$ref", std::string(kSchemas) + name}};
}

// Known request and response headers, for rules that name them.
struct HeaderDoc {
  std::string_view name;  // canonical spelling
  std::string_view description;
};
constexpr HeaderDoc kHeaderDocs[] = {
    {"ETag", "The version of the returned resource as a strong entity tag, e.g. `\"3\"`."},
    {"Location", "The URL path of the created resource."},
    {"If-Match",
     "Entity tags (from `ETag`) the current version must match, or `*`; otherwise nothing "
     "changes and the answer is 412."},
    {"If-None-Match",
     "Entity tags (weak comparison); if the current version matches, the answer is 304 "
     "without a body."},
    {"Idempotency-Key",
     "A client-chosen key: a retry with the same key returns the first result instead of "
     "creating a second resource (the same key with another body is 422; a retry while the "
     "first is in flight is 409)."},
};

HeaderDoc DocOf(const std::string& header) {
  for (const auto& h : kHeaderDocs) {
    if (AsciiLower(h.name) == AsciiLower(header)) return h;
  }
  return {header, ""};
}

class Generator {
 public:
  explicit Generator(const OpenApiOptions& options) : options_(options) {}

  std::string Run(const RouteTable& table);

 private:
  std::string Comment(const auto* d) const {
    return options_.comments != nullptr ? options_.comments->Of(d) : CommentOf(d);
  }

  // Schemas.
  json::value MessageSchema(const pb::Descriptor* d);  // a $ref or an inline well-known schema
  json::value EnumSchema(const pb::EnumDescriptor* e);
  json::value SingularSchema(const pb::FieldDescriptor* f);
  json::value FieldSchema(const pb::FieldDescriptor* f, bool with_comment = true);
  void EmitPending();
  json::object MessageComponent(const pb::Descriptor* d);

  // Operations.
  json::object Operation(const Route& route, int binding);
  void QueryParameters(const pb::Descriptor* d, const std::string& prefix,
                       const std::vector<std::string>& bound, const std::string& body_field,
                       std::vector<const pb::Descriptor*>* stack, json::array* out);
  json::object ProblemResponse(int status, std::string_view when);
  json::value ResponseRef(int status, std::string_view when);

  const OpenApiOptions& options_;
  std::map<std::string, json::value> schemas_;     // emitted components, by name
  std::vector<const pb::Descriptor*> pending_;     // referenced, not yet emitted
  std::set<std::string> referenced_;               // every referenced message or enum
  std::map<std::string, json::object> responses_;  // shared problem responses, by name
  std::set<std::string> headers_used_;
};

json::value Generator::EnumSchema(const pb::EnumDescriptor* e) {
  if (e->full_name() == "google.protobuf.NullValue") return json::object{{"type", "null"}};
  if (referenced_.insert(e->full_name()).second) {
    json::array names;
    std::string values;
    for (int i = 0; i < e->value_count(); ++i) {
      const auto* v = e->value(i);
      names.emplace_back(v->name());
      if (auto c = Comment(v); !c.empty()) values += "\n- `" + v->name() + "`: " + c;
    }
    json::object schema{{"type", "string"}, {"enum", std::move(names)}};
    std::string description = Comment(e);
    if (!values.empty()) description += (description.empty() ? "" : "\n") + values;
    if (!description.empty()) schema["description"] = description;
    schemas_[e->full_name()] = std::move(schema);
  }
  return Ref(e->full_name());
}

json::value Generator::MessageSchema(const pb::Descriptor* d) {
  const std::string& n = d->full_name();
  if (n == "google.protobuf.Timestamp") {
    return json::object{{"type", "string"}, {"format", "date-time"}};
  }
  if (n == "google.protobuf.Duration") {
    return json::object{{"type", "string"},
                        {"pattern", "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
                        {"description", "A duration in seconds with an `s` suffix, e.g. `3.5s`."}};
  }
  if (n == "google.protobuf.Struct") {
    return json::object{{"type", "object"}, {"additionalProperties", true}};
  }
  if (n == "google.protobuf.Value") return json::object{};  // any JSON value
  if (n == "google.protobuf.ListValue") {
    return json::object{{"type", "array"}, {"items", json::object{}}};
  }
  if (n == "google.protobuf.Empty") {
    return json::object{{"type", "object"}, {"additionalProperties", false}};
  }
  if (n == "google.protobuf.FieldMask") {
    return json::object{{"type", "string"},
                        {"description", "Comma-separated lowerCamelCase field paths."}};
  }
  if (n == "google.protobuf.Any") {
    return json::object{{"type", "object"},
                        {"properties", json::object{{"@type", json::object{{"type", "string"}}}}},
                        {"required", json::array{"@type"}},
                        {"additionalProperties", true}};
  }
  // Wrappers: the scalar, or null when absent.
  struct Wrapper {
    std::string_view name, type, format;
  };
  static constexpr Wrapper kWrappers[] = {
      {"google.protobuf.DoubleValue", "number", "double"},
      {"google.protobuf.FloatValue", "number", "float"},
      {"google.protobuf.Int64Value", "string", "int64"},
      {"google.protobuf.UInt64Value", "string", "uint64"},
      {"google.protobuf.Int32Value", "integer", "int32"},
      {"google.protobuf.UInt32Value", "integer", "uint32"},
      {"google.protobuf.BoolValue", "boolean", ""},
      {"google.protobuf.StringValue", "string", ""},
      {"google.protobuf.BytesValue", "string", "byte"},
  };
  for (const auto& w : kWrappers) {
    if (n != w.name) continue;
    json::object s{{"type", json::array{json::string(w.type), "null"}}};
    if (!w.format.empty()) s["format"] = w.format;
    if (w.format == "byte") s["contentEncoding"] = "base64";
    return s;
  }
  if (referenced_.insert(n).second) pending_.push_back(d);
  return Ref(n);
}

json::value Generator::SingularSchema(const pb::FieldDescriptor* f) {
  using T = pb::FieldDescriptor;
  switch (f->type()) {
    case T::TYPE_INT32:
    case T::TYPE_SINT32:
    case T::TYPE_SFIXED32:
      return json::object{{"type", "integer"}, {"format", "int32"}};
    case T::TYPE_UINT32:
    case T::TYPE_FIXED32:
      return json::object{{"type", "integer"}, {"format", "uint32"}, {"minimum", 0}};
    // The proto3 JSON mapping writes 64-bit integers as strings (and reads
    // both forms).
    case T::TYPE_INT64:
    case T::TYPE_SINT64:
    case T::TYPE_SFIXED64:
      return json::object{{"type", "string"}, {"format", "int64"}, {"pattern", "^-?[0-9]+$"}};
    case T::TYPE_UINT64:
    case T::TYPE_FIXED64:
      return json::object{{"type", "string"}, {"format", "uint64"}, {"pattern", "^[0-9]+$"}};
    case T::TYPE_FLOAT:
      return json::object{{"type", "number"}, {"format", "float"}};
    case T::TYPE_DOUBLE:
      return json::object{{"type", "number"}, {"format", "double"}};
    case T::TYPE_BOOL:
      return json::object{{"type", "boolean"}};
    case T::TYPE_STRING:
      // A json_object field travels as the object its text holds.
      if (!f->is_repeated() && IsJsonObjectField(f)) {
        return json::object{{"type", "object"}, {"additionalProperties", true}};
      }
      return json::object{{"type", "string"}};
    case T::TYPE_BYTES:
      return json::object{{"type", "string"}, {"format", "byte"}, {"contentEncoding", "base64"}};
    case T::TYPE_ENUM:
      return EnumSchema(f->enum_type());
    case T::TYPE_MESSAGE:
    case T::TYPE_GROUP:
      return MessageSchema(f->message_type());
  }
  return json::object{};
}

json::value Generator::FieldSchema(const pb::FieldDescriptor* f, bool with_comment) {
  json::value schema;
  if (f->is_map()) {
    // JSON object keys are strings whatever the proto key type.
    schema = json::object{{"type", "object"},
                          {"additionalProperties", SingularSchema(f->message_type()->map_value())}};
  } else if (f->is_repeated()) {
    schema = json::object{{"type", "array"}, {"items", SingularSchema(f)}};
  } else {
    schema = SingularSchema(f);
  }
  if (with_comment) {
    if (auto c = Comment(f); !c.empty()) schema.as_object()["description"] = c;
  }
  return schema;
}

json::object Generator::MessageComponent(const pb::Descriptor* d) {
  json::object props;
  std::string description = Comment(d);
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    props[f->json_name()] = FieldSchema(f);
  }
  for (int i = 0; i < d->real_oneof_decl_count(); ++i) {
    const auto* o = d->oneof_decl(i);  // real oneofs come first
    std::string names;
    for (int j = 0; j < o->field_count(); ++j) {
      names += std::string(j == 0 ? "" : ", ") + "`" + o->field(j)->json_name() + "`";
    }
    description += std::string(description.empty() ? "" : "\n\n") + "At most one of " + names + ".";
  }
  json::object schema{{"type", "object"}};
  if (!description.empty()) schema["description"] = description;
  schema["properties"] = std::move(props);
  return schema;
}

void Generator::EmitPending() {
  while (!pending_.empty()) {
    const pb::Descriptor* d = pending_.back();
    pending_.pop_back();
    schemas_[d->full_name()] = MessageComponent(d);
  }
}

bool StartsWithPath(std::string_view path, std::string_view prefix) {
  return path == prefix ||
         (path.size() > prefix.size() && path.starts_with(prefix) && path[prefix.size()] == '.');
}

// Query parameters: every text-settable leaf the path and body leave, with
// the same rules BuildRequest applies (nested singular messages by dotted
// path; maps, repeated messages and JSON-only types cannot come from a query).
void Generator::QueryParameters(const pb::Descriptor* d, const std::string& prefix,
                                const std::vector<std::string>& bound,
                                const std::string& body_field,
                                std::vector<const pb::Descriptor*>* stack, json::array* out) {
  if (std::find(stack->begin(), stack->end(), d) != stack->end() || stack->size() > 8) return;
  stack->push_back(d);
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    const std::string path = prefix.empty() ? f->json_name() : prefix + "." + f->json_name();
    if (!body_field.empty() && StartsWithPath(path, body_field)) continue;
    bool clash = false;
    for (const auto& b : bound) clash = clash || StartsWithPath(path, b) || StartsWithPath(b, path);
    if (internal::IsTextSettable(f)) {
      if (clash) continue;
      json::object param{{"name", path}, {"in", "query"}, {"required", false}};
      if (auto c = Comment(f); !c.empty()) param["description"] = c;
      param["schema"] = FieldSchema(f, /*with_comment=*/false);
      if (f->is_repeated()) {
        param["style"] = "form";
        param["explode"] = true;
      }
      out->push_back(std::move(param));
    } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
      // A field bound as a whole leaves nothing of it to the query.
      bool whole = false;
      for (const auto& b : bound) whole = whole || StartsWithPath(path, b);
      if (!whole) QueryParameters(f->message_type(), path, bound, body_field, stack, out);
    }
  }
  stack->pop_back();
}

json::object Generator::ProblemResponse(int status, std::string_view when) {
  std::string description = std::string(ReasonPhrase(status));
  if (!when.empty()) description += ": " + std::string(when);
  json::object r{{"description", description}};
  json::object headers{
      {"X-Request-Id", json::object{{"$ref", "#/components/headers/X-Request-Id"}}}};
  if (status == 401) {
    headers["WWW-Authenticate"] = json::object{{"$ref", "#/components/headers/WWW-Authenticate"}};
    headers_used_.insert("WWW-Authenticate");
  }
  r["headers"] = std::move(headers);
  r["content"] = json::object{{kProblemJson, json::object{{"schema", Ref("Problem")}}}};
  return r;
}

// A shared problem response in components/responses.
json::value Generator::ResponseRef(int status, std::string_view when) {
  const std::string name = [&] {
    std::string out;
    for (char c : ReasonPhrase(status)) {
      if (std::isalnum(static_cast<unsigned char>(c))) out += c;
    }
    return out;
  }();
  if (!responses_.contains(name)) responses_[name] = ProblemResponse(status, when);
  return json::object{{"$ref", "#/components/responses/" + name}};
}

json::object Generator::Operation(const Route& route, int binding) {
  const pb::MethodDescriptor* m = route.rpc;
  const std::string comment = Comment(m);
  json::object op;
  op["tags"] = json::array{json::string(m->service()->name())};
  op["summary"] = comment.empty() ? ReadableName(m->name()) : FirstSentence(comment);

  std::string description = comment;
  auto add = [&](const std::string& s) { description += (description.empty() ? "" : "\n\n") + s; };
  switch (route.access) {
    case Access::kPublic:
      add("**Access:** public, no credentials.");
      break;
    case Access::kUser:
      add("**Access:** a signed-in user (bearer access token).");
      break;
    case Access::kAdmin:
      add("**Access:** administrators only: an access token whose role is `ADMIN`.");
      break;
  }
  if (route.access != Access::kPublic) {
    if (route.scopes.empty()) {
      add("Personal access tokens with scopes cannot call this operation.");
    } else {
      std::string list;
      for (const auto& s : route.scopes) list += (list.empty() ? "`" : "`, `") + s;
      add(route.scopes.size() == 1
              ? "Personal access tokens need the scope " + list + "`."
              : "Personal access tokens need one of the scopes " + list + "`.");
    }
  }
  if (route.server_streaming) {
    add("A live stream: Server-Sent Events with `Accept: text/event-stream`, else "
        "newline-delimited JSON (one JSON object per line).");
  }
  add("gRPC: `" + m->full_name() + "`.");
  op["description"] = description;
  op["operationId"] = m->service()->name() + "_" + m->name() +
                      (binding > 0 ? "_" + std::to_string(binding + 1) : "");

  const pb::MethodDescriptor* rpc = m;
  const auto& rule = rpc->options().GetExtension(portico::api::v1::http);

  // Parameters: path, then query, then request headers the rule names.
  json::array params;
  std::vector<std::string> bound;
  int anonymous = 0;
  for (const auto& seg : route.path.segments()) {
    if (seg.kind == Segment::Kind::kLiteral) continue;
    const std::string name =
        seg.variable.empty() ? "segment" + std::to_string(++anonymous) : seg.variable;
    json::object p{{"name", name}, {"in", "path"}, {"required", true}};
    json::value schema = json::object{{"type", "string"}};
    std::string pdesc;
    if (!seg.variable.empty()) {
      auto fp = internal::ResolveFieldPath(m->input_type(), seg.variable);
      if (fp.ok()) {
        bound.push_back(internal::JsonPath(*fp));
        pdesc = Comment(fp->back());
        schema = FieldSchema(fp->back(), /*with_comment=*/false);
      }
    }
    if (seg.kind == Segment::Kind::kMulti) {
      pdesc += std::string(pdesc.empty() ? "" : " ") +
               "Matches the rest of the path: one or more segments, slashes included.";
    }
    if (!pdesc.empty()) p["description"] = pdesc;
    p["schema"] = std::move(schema);
    params.push_back(std::move(p));
  }
  std::string body_field;
  if (!route.body.empty() && route.body != "*") {
    if (const auto* f = internal::FindField(m->input_type(), route.body))
      body_field = f->json_name();
  }
  if (route.body != "*") {
    std::vector<const pb::Descriptor*> stack;
    QueryParameters(m->input_type(), "", bound, body_field, &stack, &params);
  }
  std::set<std::string> request_headers;
  for (const auto& h : rule.request_headers()) {
    const HeaderDoc doc = DocOf(h);
    request_headers.insert(AsciiLower(doc.name));
    json::object p{{"name", std::string(doc.name)}, {"in", "header"}, {"required", false}};
    if (!doc.description.empty()) p["description"] = doc.description;
    p["schema"] = json::object{{"type", "string"}};
    params.push_back(std::move(p));
  }
  if (!params.empty()) op["parameters"] = std::move(params);

  // Request body.
  if (!route.body.empty()) {
    json::value schema;
    if (route.body == "*") {
      // Fields bound by the path are taken from the path, not the body.
      std::vector<std::string> top;
      for (const auto& b : bound) {
        if (b.find('.') == std::string::npos) top.push_back(b);
      }
      if (top.empty()) {
        schema = MessageSchema(m->input_type());
      } else {
        json::object inline_schema = MessageComponent(m->input_type());
        auto& props = inline_schema["properties"].as_object();
        for (const auto& t : top) props.erase(t);
        schema = std::move(inline_schema);
      }
    } else if (const auto* f = internal::FindField(m->input_type(), route.body)) {
      schema = FieldSchema(f);
    }
    json::object content{{"application/json", json::object{{"schema", std::move(schema)}}}};
    if (route.method == HttpMethod::kPatch) {
      // The gateway accepts any JSON media type; PATCH clients often send
      // application/merge-patch+json.
      content["application/merge-patch+json"] = content["application/json"];
    }
    op["requestBody"] = json::object{{"required", true}, {"content", std::move(content)}};
  }

  // Success response.
  const bool empty_type = m->output_type()->full_name() == "google.protobuf.Empty";
  const int status = route.success_status != 0 ? route.success_status : (empty_type ? 204 : 200);
  json::object success{{"description", std::string(ReasonPhrase(status))}};
  json::object headers{
      {"X-Request-Id", json::object{{"$ref", "#/components/headers/X-Request-Id"}}}};
  for (const auto& h : rule.response_headers()) {
    const HeaderDoc doc = DocOf(h);
    json::object hd{{"schema", json::object{{"type", "string"}}}};
    if (!doc.description.empty()) hd["description"] = doc.description;
    headers[doc.name] = std::move(hd);
  }
  success["headers"] = std::move(headers);
  if (status != 204) {
    json::value schema;
    if (!route.response_body.empty()) {
      if (const auto* f = internal::FindField(m->output_type(), route.response_body)) {
        schema = FieldSchema(f);
      }
    } else {
      schema = MessageSchema(m->output_type());
    }
    if (route.server_streaming) {
      json::object sse{
          {"schema", json::object{{"type", "string"},
                                  {"description",
                                   "Server-Sent Events; the `data` of each event is one JSON "
                                   "object of the schema given for application/x-ndjson."}}}};
      json::object ndjson{{"schema", std::move(schema)}};
      success["content"] = json::object{{"text/event-stream", std::move(sse)},
                                        {"application/x-ndjson", std::move(ndjson)}};
    } else {
      success["content"] =
          json::object{{"application/json", json::object{{"schema", std::move(schema)}}}};
    }
  }
  json::object responses;
  responses[std::to_string(status)] = std::move(success);
  if (request_headers.contains("if-none-match")) {
    responses["304"] = json::object{
        {"description", "Not Modified: the current version matches If-None-Match."},
        {"headers", json::object{{"X-Request-Id",
                                  json::object{{"$ref", "#/components/headers/X-Request-Id"}}}}}};
  }
  responses["400"] = ResponseRef(400, "the request is invalid (see `errors`)");
  if (route.access != Access::kPublic) {
    responses["401"] = ResponseRef(401, "no valid bearer token");
    responses["403"] = ResponseRef(403, "the token may not call this operation");
  }
  if (!bound.empty()) responses["404"] = ResponseRef(404, "no such resource (or not yours)");
  if (request_headers.contains("idempotency-key")) {
    responses["409"] = ResponseRef(409, "a conflict, e.g. a retry while the first is in flight");
    responses["422"] = ResponseRef(422, "the Idempotency-Key was used with a different request");
  }
  if (request_headers.contains("if-match")) {
    responses["412"] = ResponseRef(412, "the resource changed: If-Match does not match");
  }
  if (!route.body.empty()) {
    responses["413"] = ResponseRef(413, "the request body is too large");
    responses["415"] = ResponseRef(415, "the request body is not JSON");
  }
  responses["default"] = json::object{{"$ref", "#/components/responses/Error"}};
  op["responses"] = std::move(responses);

  if (route.access == Access::kPublic) {
    op["security"] = json::array{};
  } else {
    op["security"] = json::array{json::object{{kBearer, json::array{}}}};
  }
  op["x-portico-access"] = route.access == Access::kPublic  ? "PUBLIC"
                           : route.access == Access::kAdmin ? "ADMIN"
                                                            : "USER";
  if (!route.scopes.empty()) {
    json::array scopes;
    for (const auto& s : route.scopes) scopes.emplace_back(s);
    op["x-portico-scopes"] = std::move(scopes);
  }
  return op;
}

json::object ProblemSchema() {
  json::array codes;
  for (int c = 0; c <= 16; ++c) codes.emplace_back(GrpcCodeName(c));
  json::object field_error{
      {"type", "object"},
      {"properties",
       json::object{
           {"field", json::object{{"type", "string"},
                                  {"description", "lowerCamelCase JSON path of the field."}}},
           {"message", json::object{{"type", "string"}}}}},
      {"required", json::array{"field", "message"}}};
  return json::object{
      {"type", "object"},
      {"description", "An RFC 9457 problem: every error the API answers."},
      {"properties",
       json::object{
           {"type", json::object{{"type", "string"},
                                 {"format", "uri"},
                                 {"description", "One URI per HTTP status."}}},
           {"title", json::object{{"type", "string"}}},
           {"status", json::object{{"type", "integer"}, {"format", "int32"}}},
           {"detail", json::object{{"type", "string"}}},
           {"code", json::object{{"type", "string"},
                                 {"enum", std::move(codes)},
                                 {"description", "The gRPC status code name."}}},
           {"requestId",
            json::object{{"type", "string"}, {"description", "The X-Request-Id of the request."}}},
           {"errors", json::object{{"type", "array"}, {"items", std::move(field_error)}}}}},
      {"required", json::array{"type", "title", "status", "code", "requestId"}}};
}

std::string Generator::Run(const RouteTable& table) {
  json::object paths;
  std::map<const pb::MethodDescriptor*, int> bindings;
  std::vector<const pb::ServiceDescriptor*> services;
  for (const auto& route : table.routes()) {
    const pb::ServiceDescriptor* s = route->rpc->service();
    if (std::find(services.begin(), services.end(), s) == services.end()) services.push_back(s);
    // OpenAPI names anonymous wildcards too; the text keeps named ones.
    std::string path;
    int anonymous = 0;
    for (const auto& seg : route->path.segments()) {
      path += '/';
      if (seg.kind == Segment::Kind::kLiteral) {
        path += seg.literal;
      } else {
        path += "{" +
                (seg.variable.empty() ? "segment" + std::to_string(++anonymous) : seg.variable) +
                "}";
      }
    }
    if (path.empty()) path = "/";
    if (!route->path.verb().empty()) path += ":" + route->path.verb();
    auto& item = paths[path];
    if (!item.is_object()) item = json::object{};
    item.as_object()[AsciiLower(HttpMethodName(route->method))] =
        Operation(*route, bindings[route->rpc]++);
  }
  EmitPending();

  json::array tags;
  for (const auto* s : services) {
    json::object tag{{"name", s->name()}};
    std::string d = Comment(s);
    d += std::string(d.empty() ? "" : "\n\n") + "gRPC service `" + s->full_name() + "`.";
    tag["description"] = d;
    tags.push_back(std::move(tag));
  }

  json::object schemas;
  schemas["Problem"] = ProblemSchema();
  for (auto& [name, schema] : schemas_) schemas[name] = std::move(schema);

  json::object responses;
  for (auto& [name, r] : responses_) responses[name] = std::move(r);
  // Everything an operation does not list: 429, 500, 503, 504, ...
  json::object error = ProblemResponse(500, "");
  error["description"] =
      "Any other error (e.g. 429, 500, 503, 504) as a problem; `code` names the gRPC status.";
  error["headers"].as_object()["Retry-After"] =
      json::object{{"$ref", "#/components/headers/Retry-After"}};
  responses["Error"] = std::move(error);

  json::object headers{
      {"X-Request-Id",
       json::object{{"description",
                     "The request's id: the client's X-Request-Id if it sent a sane one, else a "
                     "new one. It appears in the gateway's and the services' logs."},
                    {"schema", json::object{{"type", "string"}}}}}};
  if (headers_used_.contains("WWW-Authenticate")) {
    headers["WWW-Authenticate"] = json::object{
        {"description", "`Bearer`, with `error=\"invalid_token\"` when a token was presented."},
        {"schema", json::object{{"type", "string"}}}};
  }
  headers["Retry-After"] =
      json::object{{"description", "Seconds to wait before retrying."},
                   {"schema", json::object{{"type", "integer"}, {"minimum", 0}}}};

  std::string description = options_.description;
  json::object doc;
  doc["openapi"] = "3.1.0";
  json::object info{{"title", options_.title}, {"version", options_.version}};
  if (!description.empty()) info["description"] = description;
  doc["info"] = std::move(info);
  doc["servers"] = json::array{json::object{{"url", "/"}, {"description", "this gateway"}}};
  doc["security"] = json::array{json::object{{kBearer, json::array{}}}};
  doc["tags"] = std::move(tags);
  doc["paths"] = std::move(paths);
  doc["components"] = json::object{
      {"schemas", std::move(schemas)},
      {"responses", std::move(responses)},
      {"headers", std::move(headers)},
      {"securitySchemes",
       json::object{
           {kBearer,
            json::object{
                {"type", "http"},
                {"scheme", "bearer"},
                {"bearerFormat", "JWT"},
                {"description",
                 "An access token from `POST /v1/auth/login` (an EdDSA-signed JWT valid for 15 "
                 "minutes; renew it with `POST /v1/auth/refresh`), or a personal access token "
                 "(`pat_…`, from `POST /v1/users/me/tokens`). A personal access token carries "
                 "scopes (`data:read`, `data:write`, `users:read`, `users:write`) and may call "
                 "only the operations that accept one of its scopes. Operations marked ADMIN "
                 "need an access token of a user whose role is `ADMIN`."}}}}}};
  return json::serialize(doc);
}

}  // namespace

std::string GenerateOpenApi(const RouteTable& table, const OpenApiOptions& options) {
  Generator g(options);
  return g.Run(table);
}

}  // namespace portico::transcode

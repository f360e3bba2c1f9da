#include "fields.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/time_util.h>
#include "portico/core/strings.h"

namespace portico::transcode::internal {
namespace {

namespace pb = google::protobuf;

template <typename T>
bool ParseInt(std::string_view s, T* out) {
  if (s.empty()) return false;
  const char* first = s.data();
  if (*first == '+') ++first;
  auto [ptr, ec] = std::from_chars(first, s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool ParseDouble(std::string_view s, double* out) {
  if (s == "NaN") {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  if (s == "Infinity") {
    *out = std::numeric_limits<double>::infinity();
    return true;
  }
  if (s == "-Infinity") {
    *out = -std::numeric_limits<double>::infinity();
    return true;
  }
  if (s.empty()) return false;
  // Only plain decimal numbers otherwise (from_chars also takes "inf"/"nan").
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '-' && c != '+' && c != '.' &&
        c != 'e' && c != 'E') {
      return false;
    }
  }
  const char* first = s.data();
  if (*first == '+') ++first;
  auto [ptr, ec] = std::from_chars(first, s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

// Standard or URL-safe alphabet, padded or not (the proto3 JSON mapping
// accepts both for bytes).
bool Base64Decode(std::string_view in, std::string* out) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  out->clear();
  unsigned buffer = 0;
  int bits = 0;
  for (char c : in) {
    const int v = Base64Value(c);
    if (v < 0) return false;
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return true;
}

Error BadValue(const FieldPath& path, std::string_view why) {
  const std::string name = JsonPath(path);
  return Error::InvalidArgument("invalid value for field \"" + name + "\": " + std::string(why),
                                {{name, std::string(why)}});
}

bool IsWrapper(const pb::Descriptor* d) {
  const std::string& n = d->full_name();
  return n == "google.protobuf.DoubleValue" || n == "google.protobuf.FloatValue" ||
         n == "google.protobuf.Int64Value" || n == "google.protobuf.UInt64Value" ||
         n == "google.protobuf.Int32Value" || n == "google.protobuf.UInt32Value" ||
         n == "google.protobuf.BoolValue" || n == "google.protobuf.StringValue" ||
         n == "google.protobuf.BytesValue";
}

void CollectMaskPaths(const pb::Descriptor* desc, const boost::json::object& obj,
                      const std::string& prefix, std::vector<std::string>* out) {
  for (const auto& [key, value] : obj) {
    const pb::FieldDescriptor* f = FindField(desc, std::string_view(key.data(), key.size()));
    if (f == nullptr) continue;
    const std::string path = prefix + f->name();
    // Well-known types (Struct, Timestamp, wrappers, ...) have their own JSON
    // forms and are replaced whole; so are maps and repeated fields.
    const bool recurse = !f->is_repeated() && f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
                         f->message_type()->file()->package() != "google.protobuf" &&
                         value.is_object() && !value.as_object().empty();
    if (recurse) {
      CollectMaskPaths(f->message_type(), value.as_object(), path + ".", out);
    } else {
      out->push_back(path);
    }
  }
}

bool IsTimeType(const pb::Descriptor* d) {
  return d->full_name() == "google.protobuf.Timestamp" ||
         d->full_name() == "google.protobuf.Duration";
}

bool IsFieldMask(const pb::Descriptor* d) {
  return d->full_name() == "google.protobuf.FieldMask";
}

// A FieldMask from its JSON text form: comma-separated dotted paths, each
// part lowerCamelCase or already a proto name ("displayName,profile.city").
Status SetFieldMask(pb::Message* sub, std::string_view text, const FieldPath& path) {
  const pb::FieldDescriptor* paths = sub->GetDescriptor()->FindFieldByName("paths");
  if (!IsValidUtf8(text)) return BadValue(path, "must be valid UTF-8");
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view part = text.substr(pos, comma - pos);
    pos = comma + 1;
    if (part.empty() || part.front() == '.' || part.back() == '.' ||
        part.find("..") != std::string_view::npos) {
      return BadValue(path, "must be comma-separated field paths");
    }
    std::string snake;
    for (char c : part) {
      if (c >= 'A' && c <= 'Z') {
        snake += '_';
        snake += static_cast<char>(c - 'A' + 'a');
      } else {
        snake += c;
      }
    }
    sub->GetReflection()->AddString(sub, paths, std::move(snake));
  }
  return {};
}

// Sets a scalar (non-message) field; `leaf` may be repeated.
Status SetScalar(pb::Message* msg, const pb::FieldDescriptor* leaf, std::string_view text,
                 const FieldPath& path) {
  const pb::Reflection* r = msg->GetReflection();
  const bool rep = leaf->is_repeated();
  switch (leaf->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      std::int32_t v;
      if (!ParseInt(text, &v)) return BadValue(path, "must be a 32-bit integer");
      rep ? r->AddInt32(msg, leaf, v) : r->SetInt32(msg, leaf, v);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      std::int64_t v;
      if (!ParseInt(text, &v)) return BadValue(path, "must be a 64-bit integer");
      rep ? r->AddInt64(msg, leaf, v) : r->SetInt64(msg, leaf, v);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      std::uint32_t v;
      if (!ParseInt(text, &v)) return BadValue(path, "must be an unsigned 32-bit integer");
      rep ? r->AddUInt32(msg, leaf, v) : r->SetUInt32(msg, leaf, v);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      std::uint64_t v;
      if (!ParseInt(text, &v)) return BadValue(path, "must be an unsigned 64-bit integer");
      rep ? r->AddUInt64(msg, leaf, v) : r->SetUInt64(msg, leaf, v);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!ParseDouble(text, &v)) return BadValue(path, "must be a number");
      rep ? r->AddDouble(msg, leaf, v) : r->SetDouble(msg, leaf, v);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      double v;
      if (!ParseDouble(text, &v)) return BadValue(path, "must be a number");
      if (std::isfinite(v) && std::fabs(v) > std::numeric_limits<float>::max()) {
        return BadValue(path, "out of range for a float");
      }
      const auto f = static_cast<float>(v);
      rep ? r->AddFloat(msg, leaf, f) : r->SetFloat(msg, leaf, f);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (EqualsIgnoreCase(text, "true") || text == "1") {
        v = true;
      } else if (EqualsIgnoreCase(text, "false") || text == "0") {
        v = false;
      } else {
        return BadValue(path, "must be true or false");
      }
      rep ? r->AddBool(msg, leaf, v) : r->SetBool(msg, leaf, v);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumDescriptor* e = leaf->enum_type();
      const pb::EnumValueDescriptor* value = nullptr;
      std::int32_t number;
      if (ParseInt(text, &number)) {
        value = e->FindValueByNumber(number);
      } else {
        for (int i = 0; i < e->value_count() && value == nullptr; ++i) {
          if (EqualsIgnoreCase(e->value(i)->name(), text)) value = e->value(i);
        }
      }
      if (value == nullptr) {
        std::string names;
        for (int i = 0; i < e->value_count(); ++i) {
          if (i > 0) names += ", ";
          names += e->value(i)->name();
        }
        return BadValue(path, "must be one of " + names);
      }
      rep ? r->AddEnum(msg, leaf, value) : r->SetEnum(msg, leaf, value);
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      std::string v;
      if (leaf->type() == pb::FieldDescriptor::TYPE_BYTES) {
        if (!Base64Decode(text, &v)) return BadValue(path, "must be base64");
      } else {
        if (!IsValidUtf8(text)) return BadValue(path, "must be valid UTF-8");
        v = std::string(text);
      }
      rep ? r->AddString(msg, leaf, std::move(v)) : r->SetString(msg, leaf, std::move(v));
      return {};
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return BadValue(path, "cannot be set from text");
}

// Fills a Timestamp, Duration, FieldMask or wrapper message from text.
Status SetWellKnown(pb::Message* sub, std::string_view text, const FieldPath& path) {
  const pb::Descriptor* d = sub->GetDescriptor();
  const pb::Reflection* r = sub->GetReflection();
  if (IsFieldMask(d)) return SetFieldMask(sub, text, path);
  if (IsWrapper(d)) {
    return SetScalar(sub, d->FindFieldByNumber(1), text, path);
  }
  std::int64_t seconds = 0;
  std::int32_t nanos = 0;
  if (d->full_name() == "google.protobuf.Timestamp") {
    pb::Timestamp ts;
    if (!pb::util::TimeUtil::FromString(std::string(text), &ts)) {
      return BadValue(path, "must be an RFC 3339 timestamp");
    }
    seconds = ts.seconds();
    nanos = ts.nanos();
  } else {
    pb::Duration du;
    if (!pb::util::TimeUtil::FromString(std::string(text), &du)) {
      return BadValue(path, "must be a duration in seconds, e.g. \"1.5s\"");
    }
    seconds = du.seconds();
    nanos = du.nanos();
  }
  r->SetInt64(sub, d->FindFieldByNumber(1), seconds);
  r->SetInt32(sub, d->FindFieldByNumber(2), nanos);
  return {};
}

}  // namespace

const pb::FieldDescriptor* FindField(const pb::Descriptor* desc, std::string_view name) {
  const std::string n(name);
  if (const auto* f = desc->FindFieldByName(n)) return f;
  for (int i = 0; i < desc->field_count(); ++i) {
    if (desc->field(i)->json_name() == n) return desc->field(i);
  }
  return nullptr;
}

Result<FieldPath> ResolveFieldPath(const pb::Descriptor* desc, std::string_view dotted) {
  FieldPath path;
  const pb::Descriptor* current = desc;
  std::size_t pos = 0;
  while (true) {
    const auto dot = dotted.find('.', pos);
    const std::string_view part =
        dotted.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
    if (current == nullptr) {
      return Error::InvalidArgument("\"" + std::string(dotted) + "\": \"" + JsonPath(path) +
                                    "\" is not a message");
    }
    const pb::FieldDescriptor* f = part.empty() ? nullptr : FindField(current, part);
    if (f == nullptr) {
      return Error::InvalidArgument("\"" + std::string(dotted) + "\": no field \"" +
                                    std::string(part) + "\" in " + current->full_name());
    }
    path.push_back(f);
    if (dot == std::string_view::npos) break;
    if (f->is_repeated() || f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      return Error::InvalidArgument("\"" + std::string(dotted) + "\": \"" + JsonPath(path) +
                                    "\" is not a singular message");
    }
    current = f->message_type();
    pos = dot + 1;
  }
  return path;
}

std::string JsonPath(const FieldPath& path) {
  std::string out;
  for (const auto* f : path) {
    if (!out.empty()) out += '.';
    out += f->json_name();
  }
  return out;
}

bool IsTextSettable(const pb::FieldDescriptor* leaf) {
  if (leaf->is_map()) return false;
  if (leaf->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) return true;
  const pb::Descriptor* d = leaf->message_type();
  return IsWrapper(d) || IsTimeType(d) || IsFieldMask(d);
}

Status SetFromText(pb::Message* msg, const FieldPath& path, std::string_view text) {
  pb::Message* current = msg;
  for (std::size_t i = 0; i + 1 < path.size(); ++i) {
    current = current->GetReflection()->MutableMessage(current, path[i]);
  }
  const pb::FieldDescriptor* leaf = path.back();
  if (!IsTextSettable(leaf)) return BadValue(path, "cannot be set from a path or query parameter");
  if (leaf->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
    return SetScalar(current, leaf, text, path);
  }
  const pb::Reflection* r = current->GetReflection();
  if (leaf->is_repeated()) {
    pb::Message* sub = r->AddMessage(current, leaf);
    Status st = SetWellKnown(sub, text, path);
    if (!st.ok()) r->RemoveLast(current, leaf);
    return st;
  }
  pb::Message* sub = r->MutableMessage(current, leaf);
  sub->Clear();
  return SetWellKnown(sub, text, path);
}

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0.
std::size_t Utf8SequenceLength(std::string_view s, std::size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  const unsigned char c = p[i];
  if (c < 0x80) return 1;
  std::size_t len;
  std::uint32_t cp;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > n) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((p[i + k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i + k] & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are invalid.
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return len;
}

}  // namespace

std::string ToValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = Utf8SequenceLength(s, i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

bool IsValidUtf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = Utf8SequenceLength(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::vector<std::string> FieldMaskPaths(const pb::Descriptor* desc, std::string_view json) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  boost::json::parse_options options;
  options.max_depth = 80;  // the gateway's depth screen bounds bodies first
  const boost::json::value parsed =
      boost::json::parse(boost::json::string_view(json.data(), json.size()), ec, {}, options);
  if (ec || !parsed.is_object()) return out;
  CollectMaskPaths(desc, parsed.as_object(), "", &out);
  return out;
}

}  // namespace portico::transcode::internal

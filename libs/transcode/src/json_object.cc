// Boost.JSON's parser drives a handler of our own here rather than building a
// boost::json::value: the value type turns numbers into doubles and keeps the
// last of two equal member names, and an item's data must keep every digit
// and must not have duplicate names. The handler sees each number's text and
// each name, and re-emits what it reads as compact JSON.
#include "portico/transcode/json_object.h"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/parse.hpp>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <map>
#include <optional>
#include <shared_mutex>
#include <unordered_set>
#include <vector>

#include "fields.h"
#include "portico/core/strings.h"
#include "portico/api/v1/annotations.pb.h"

namespace portico::transcode {
namespace {

namespace pb = google::protobuf;
namespace bj = boost::json;

// Compact JSON text from parser events; `enabled` false writes nothing.
class Writer {
 public:
  explicit Writer(bool enabled = true) : enabled_(enabled) {}
  void BeginObject() { Open('{'); }
  void EndObject() { Close('}'); }
  void BeginArray() { Open('['); }
  void EndArray() { Close(']'); }
  void Key(std::string_view key) {
    if (!enabled_) return;
    Separate();
    AppendJsonQuoted(out_, key);
    out_ += ':';
    after_key_ = true;
  }
  void String(std::string_view s) {
    if (!enabled_) return;
    Separate();
    AppendJsonQuoted(out_, s);
  }
  // A number's text, a literal, or a whole value's JSON text.
  void Raw(std::string_view json) {
    if (!enabled_) return;
    Separate();
    out_.append(json);
  }
  std::string& text() { return out_; }
  void Reset() {
    out_.clear();
    first_.clear();
    after_key_ = false;
  }

 private:
  void Separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (first_.empty()) return;
    if (!first_.back()) out_ += ',';
    first_.back() = false;
  }
  void Open(char c) {
    if (!enabled_) return;
    Separate();
    out_ += c;
    first_.push_back(true);
  }
  void Close(char c) {
    if (!enabled_) return;
    out_ += c;
    first_.pop_back();
  }

  bool enabled_;
  std::string out_;
  std::vector<char> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

enum class Mode {
  kValidate,  // the whole text is one json_object value
  kEncode,    // request JSON: json_object objects become strings
  kDecode,    // response JSON: json_object strings become objects
};

// A json_object value, or the description of what is wrong with it.
struct Failure {
  std::string path;     // JSON path of the field ("data", "writes[2].data"); "" = the body
  std::string message;  // in JSON's words
};

class Handler {
 public:
  static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);

  Handler(Mode mode, const pb::Descriptor* root, std::string root_path)
      : mode_(mode),
        root_(root),
        root_path_(std::move(root_path)),
        out_(mode != Mode::kValidate),
        raw_(mode == Mode::kEncode) {}

  bool on_document_begin(bj::error_code&) { return true; }
  bool on_document_end(bj::error_code&) { return true; }

  bool on_object_begin(bj::error_code& ec) {
    Dest dest;
    if (!Enter(Kind::kObject, &dest)) return Fail(ec);
    if (dest == Dest::kRaw) {
      if (!Deeper(ec)) return false;
      raw_keys_.emplace_back();
      raw_.BeginObject();
      return true;
    }
    out_.BeginObject();
    frames_.push_back({next_type_, nullptr, false, next_path_, -1});
    return true;
  }

  bool on_object_end(std::size_t, bj::error_code&) {
    if (in_raw_) {
      raw_.EndObject();
      raw_keys_.pop_back();
      if (--raw_depth_ == 0) LeaveRaw();
      return true;
    }
    out_.EndObject();
    frames_.pop_back();
    return true;
  }

  bool on_array_begin(bj::error_code& ec) {
    Dest dest;
    if (!Enter(Kind::kArray, &dest)) return Fail(ec);
    if (dest == Dest::kRaw) {
      if (!Deeper(ec)) return false;
      raw_.BeginArray();
      return true;
    }
    out_.BeginArray();
    frames_.push_back({nullptr, next_type_, true, next_path_, -1});
    return true;
  }

  bool on_array_end(std::size_t, bj::error_code&) {
    if (in_raw_) {
      raw_.EndArray();
      --raw_depth_;  // never the last level: a json_object value is an object
      return true;
    }
    out_.EndArray();
    frames_.pop_back();
    return true;
  }

  bool on_key_part(bj::string_view s, std::size_t, bj::error_code&) {
    text_.append(s.data(), s.size());
    return true;
  }
  bool on_key(bj::string_view s, std::size_t, bj::error_code& ec) {
    text_.append(s.data(), s.size());
    std::string key = std::move(text_);
    text_.clear();
    if (in_raw_) {
      if (key.find('\0') != std::string::npos) {
        return Fail(ec, raw_path_, "must not contain \\u0000 in a member name");
      }
      if (!raw_keys_.back().insert(key).second) {
        return Fail(ec, raw_path_, "has the member \"" + key + "\" twice in one object");
      }
      raw_.Key(key);
      return true;
    }
    Frame& frame = frames_.back();
    pending_ = frame.type != nullptr ? internal::FindField(frame.type, key) : nullptr;
    pending_path_ = frame.path.empty() ? (pending_ ? pending_->json_name() : key)
                                       : frame.path + "." + (pending_ ? pending_->json_name() : key);
    if (mode_ == Mode::kDecode && pending_ != nullptr && IsRawField(pending_)) {
      deferred_key_ = std::move(key);  // written with the value, unless that is empty
      return true;
    }
    out_.Key(key);
    return true;
  }

  bool on_string_part(bj::string_view s, std::size_t, bj::error_code&) {
    text_.append(s.data(), s.size());
    return true;
  }
  bool on_string(bj::string_view s, std::size_t, bj::error_code& ec) {
    text_.append(s.data(), s.size());
    std::string value = std::move(text_);
    text_.clear();
    Dest dest;
    if (!Enter(Kind::kString, &dest)) return Fail(ec);
    switch (dest) {
      case Dest::kRaw:
        if (value.find('\0') != std::string::npos) {
          return Fail(ec, raw_path_, "must not contain \\u0000 in a string");
        }
        raw_.String(value);
        return true;
      case Dest::kRawString: {
        // An unset field prints as "": leave the member out, as protobuf
        // leaves out an unset message.
        if (value.empty()) return true;
        if (!ValidateJsonObject(value, raw_path_).ok()) {
          return Fail(ec, raw_path_, "is not a JSON object");
        }
        out_.Key(deferred_key_);
        out_.Raw(value);
        return true;
      }
      case Dest::kOut: out_.String(value); return true;
    }
    return true;
  }

  bool on_number_part(bj::string_view s, bj::error_code&) {
    text_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t, bj::string_view s, bj::error_code& ec) { return Number(s, ec); }
  bool on_uint64(std::uint64_t, bj::string_view s, bj::error_code& ec) { return Number(s, ec); }
  bool on_double(double, bj::string_view s, bj::error_code& ec) { return Number(s, ec); }
  bool on_bool(bool b, bj::error_code& ec) { return Scalar(b ? "true" : "false", ec); }
  bool on_null(bj::error_code& ec) { return Scalar("null", ec); }
  bool on_comment_part(bj::string_view, bj::error_code&) { return true; }
  bool on_comment(bj::string_view, bj::error_code&) { return true; }

  std::string& output() { return out_.text(); }
  const std::optional<Failure>& failure() const { return failure_; }
  // Where a parse error that Boost reports belongs: the json_object value
  // being read, if any.
  std::string_view current_raw_path() const {
    return in_raw_ || dest_raw_string_ ? std::string_view(raw_path_) : std::string_view();
  }

 private:
  enum class Kind { kObject, kArray, kString, kScalar };
  enum class Dest { kOut, kRaw, kRawString };
  struct Frame {
    const pb::Descriptor* type;     // object of a message type; null: opaque
    const pb::Descriptor* element;  // array of messages of this type; null: opaque
    bool array;
    std::string path;
    int index;
  };

  static bool IsRawField(const pb::FieldDescriptor* f) {
    return !f->is_repeated() && IsJsonObjectField(f);
  }

  // Decides where the value that starts now goes, and what type and path a
  // container it opens gets. False (with failure_ set) if the value cannot
  // stand where it is.
  bool Enter(Kind kind, Dest* dest) {
    dest_raw_string_ = false;
    if (in_raw_) {
      *dest = Dest::kRaw;
      return true;
    }
    const pb::FieldDescriptor* field = nullptr;
    std::string path;
    bool raw = false;
    if (frames_.empty()) {
      raw = mode_ == Mode::kValidate;
      path = root_path_;
      next_type_ = root_;
    } else if (Frame& top = frames_.back(); top.array) {
      ++top.index;
      path = top.path + "[" + std::to_string(top.index) + "]";
      next_type_ = top.element;
    } else {
      field = pending_;
      pending_ = nullptr;
      path = std::move(pending_path_);
      raw = field != nullptr && IsRawField(field);
      next_type_ = nullptr;
      if (field != nullptr && !raw && field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
          !field->is_map()) {
        next_type_ = field->message_type();  // the message, or each element of the list
      }
    }
    next_path_ = path;
    if (!raw) {
      *dest = Dest::kOut;
      return true;
    }
    raw_path_ = std::move(path);
    if (mode_ == Mode::kDecode) {
      if (kind != Kind::kString) {
        failure_ = Failure{raw_path_, "is not a JSON object's text"};
        return false;
      }
      *dest = Dest::kRawString;
      dest_raw_string_ = true;
      return true;
    }
    if (kind != Kind::kObject) {
      failure_ = Failure{raw_path_, "must be a JSON object"};
      return false;
    }
    in_raw_ = true;
    raw_depth_ = 0;
    raw_keys_.clear();
    raw_.Reset();
    *dest = Dest::kRaw;
    return true;
  }

  void LeaveRaw() {
    in_raw_ = false;
    if (mode_ == Mode::kEncode) out_.String(raw_.text());
  }

  bool Number(bj::string_view last, bj::error_code& ec) {
    text_.append(last.data(), last.size());
    std::string number = std::move(text_);
    text_.clear();
    return Scalar(number, ec);
  }

  bool Scalar(std::string_view json, bj::error_code& ec) {
    Dest dest;
    if (!Enter(Kind::kScalar, &dest)) return Fail(ec);
    if (dest == Dest::kRaw) {
      raw_.Raw(json);
    } else {
      out_.Raw(json);
    }
    return true;
  }

  // One level deeper inside a json_object value; false past its limit.
  bool Deeper(bj::error_code& ec) {
    if (++raw_depth_ <= kMaxJsonObjectDepth) return true;
    return Fail(ec, raw_path_,
                "must not nest deeper than " + std::to_string(kMaxJsonObjectDepth) + " levels");
  }

  bool Fail(bj::error_code& ec) {
    ec = bj::error::syntax;  // stops the parser; failure_ says what it was
    return false;
  }
  bool Fail(bj::error_code& ec, std::string path, std::string message) {
    failure_ = Failure{std::move(path), std::move(message)};
    return Fail(ec);
  }

  const Mode mode_;
  const pb::Descriptor* const root_;
  const std::string root_path_;
  Writer out_;                   // the document
  std::vector<Frame> frames_;    // open containers outside a json_object value
  std::string text_;             // parts of the key, string or number being read
  const pb::FieldDescriptor* pending_ = nullptr;  // the field whose value comes next
  std::string pending_path_;
  std::string deferred_key_;     // kDecode: a json_object field's name
  const pb::Descriptor* next_type_ = nullptr;  // for the container Enter let in
  std::string next_path_;
  bool in_raw_ = false;          // inside a json_object value (kValidate, kEncode)
  bool dest_raw_string_ = false;
  int raw_depth_ = 0;
  std::string raw_path_;
  Writer raw_;                   // the json_object value, compact
  std::vector<std::unordered_set<std::string>> raw_keys_;  // names per open object
  std::optional<Failure> failure_;
};

// The parse's own errors, in JSON's words.
std::string Describe(const bj::error_code& ec) {
  if (ec == bj::error::illegal_leading_surrogate || ec == bj::error::illegal_trailing_surrogate) {
    return "has a lone surrogate (\\uD800-\\uDFFF) in a string";
  }
  if (ec == bj::error::too_deep) return "nests too deeply";
  if (ec == bj::error::incomplete) return "is not valid JSON: it ends too early";
  if (ec == bj::error::extra_data) return "is not valid JSON: there is more after the value";
  return "is not valid JSON";
}

struct Outcome {
  std::string json;
  std::optional<Failure> failure;
};

Outcome Run(Mode mode, const pb::Descriptor* root, std::string root_path, std::string_view text,
            int max_depth) {
  bj::parse_options options;
  options.max_depth = static_cast<std::size_t>(max_depth);
  bj::basic_parser<Handler> parser(options, mode, root, root_path);
  bj::error_code ec;
  const std::size_t used = parser.write_some(false, text.data(), text.size(), ec);
  Outcome out;
  if (!ec && used != text.size()) ec = bj::error::extra_data;
  if (ec) {
    if (parser.handler().failure()) {
      out.failure = parser.handler().failure();
    } else {
      out.failure = Failure{std::string(parser.handler().current_raw_path()), Describe(ec)};
    }
    return out;
  }
  out.json = std::move(parser.handler().output());
  return out;
}

Error InvalidField(const Failure& f) {
  return Error::InvalidArgument(f.path + " " + f.message, {{f.path, f.message}});
}

// Surrounding levels a request may add around an item's data (the body,
// a list of writes, one write).
constexpr int kEnvelopeDepth = 8;

}  // namespace

bool IsJsonObjectField(const pb::FieldDescriptor* field) {
  if (field->cpp_type() != pb::FieldDescriptor::CPPTYPE_STRING) return false;
  const pb::FieldOptions& options = field->options();
  if (options.HasExtension(api::v1::json_object)) {
    return options.GetExtension(api::v1::json_object);
  }
  // Options of a file built at run time may hold our extension as an
  // unknown field: reparse them through the generated pool, which knows it.
  if (options.GetReflection()->GetUnknownFields(options).empty()) return false;
  pb::FieldOptions parsed;
  return parsed.ParseFromString(options.SerializeAsString()) &&
         parsed.GetExtension(api::v1::json_object);
}

bool HasJsonObjectFields(const pb::Descriptor* type) {
  static std::shared_mutex mu;
  static std::map<const pb::Descriptor*, bool> cache;  // guarded by mu
  {
    std::shared_lock lock(mu);
    if (auto it = cache.find(type); it != cache.end()) return it->second;
  }
  // Depth-first over the message types reachable from `type`.
  std::vector<const pb::Descriptor*> stack = {type};
  std::unordered_set<const pb::Descriptor*> seen = {type};
  bool found = false;
  while (!stack.empty() && !found) {
    const pb::Descriptor* t = stack.back();
    stack.pop_back();
    for (int i = 0; i < t->field_count() && !found; ++i) {
      const pb::FieldDescriptor* f = t->field(i);
      if (!f->is_repeated() && IsJsonObjectField(f)) found = true;
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_map() &&
          seen.insert(f->message_type()).second) {
        stack.push_back(f->message_type());
      }
    }
  }
  std::unique_lock lock(mu);
  cache[type] = found;
  return found;
}

Status ValidateJsonObject(std::string_view text, std::string_view field, std::size_t max_bytes) {
  const std::string path(field);
  if (max_bytes > 0 && text.size() > max_bytes) {
    return InvalidField({path, "must be at most " + std::to_string(max_bytes) + " bytes of JSON"});
  }
  Outcome out = Run(Mode::kValidate, nullptr, path, text, kMaxJsonObjectDepth + 1);
  if (out.failure) {
    if (out.failure->path.empty()) out.failure->path = path;
    return InvalidField(*out.failure);
  }
  return {};
}

bool IsJsonValue(std::string_view text) {
  bj::parse_options options;
  options.max_depth = kMaxJsonObjectDepth + kEnvelopeDepth;
  bj::error_code ec;
  (void)bj::parse(bj::string_view(text.data(), text.size()), ec, {}, options);
  return !ec;
}

Result<std::string> EncodeJsonObjectFields(const pb::Descriptor* type, std::string_view body) {
  Outcome out = Run(Mode::kEncode, type, "", body, kMaxJsonObjectDepth + kEnvelopeDepth);
  if (!out.failure) return std::move(out.json);
  if (out.failure->path.empty()) {
    return Error::InvalidArgument("invalid JSON body: the body " + out.failure->message);
  }
  return InvalidField(*out.failure);
}

Result<std::string> DecodeJsonObjectFields(const pb::Descriptor* type, std::string_view json) {
  Outcome out = Run(Mode::kDecode, type, "", json, kMaxJsonObjectDepth + kEnvelopeDepth + 64);
  if (!out.failure) return std::move(out.json);
  return Error::Internal("response field " + out.failure->path + " " + out.failure->message);
}

}  // namespace portico::transcode

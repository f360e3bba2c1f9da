#include "portico/transcode/path_template.h"

#include <set>

namespace portico::transcode {
namespace {

// RFC 3986 pchar without ':' (reserved for the custom verb) and '%'
// (templates are written decoded).
bool IsLiteralChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-': case '.': case '_': case '~': case '!': case '$': case '&': case '\'':
    case '(': case ')': case '+': case ',': case ';': case '=': case '@':
      return true;
    default:
      return false;
  }
}

bool IsIdentStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsIdentChar(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9'); }

// A dotted field path: ident ('.' ident)*.
bool IsFieldPath(std::string_view s) {
  bool at_start = true;
  for (char c : s) {
    if (at_start) {
      if (!IsIdentStart(c)) return false;
      at_start = false;
    } else if (c == '.') {
      at_start = true;
    } else if (!IsIdentChar(c)) {
      return false;
    }
  }
  return !at_start;
}

Error Invalid(std::string_view text, std::string_view why) {
  return Error::InvalidArgument("path template \"" + std::string(text) + "\": " + std::string(why));
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool PercentDecode(std::string_view in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = HexValue(in[i + 1]);
    const int lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

Result<PathTemplate> PathTemplate::Parse(std::string_view text) {
  if (text.empty() || text[0] != '/') return Invalid(text, "must start with '/'");

  // The custom verb is the text after a ':' that follows the last '/',
  // outside braces.
  std::string_view path = text;
  std::string verb;
  {
    int depth = 0;
    std::size_t last_slash = 0, colon = std::string_view::npos;
    for (std::size_t i = 0; i < text.size(); ++i) {
      const char c = text[i];
      if (c == '{') ++depth;
      if (c == '}') --depth;
      if (depth == 0 && c == '/') {
        last_slash = i;
        colon = std::string_view::npos;
      }
      if (depth == 0 && c == ':' && colon == std::string_view::npos && i > last_slash) colon = i;
    }
    if (colon != std::string_view::npos) {
      verb = std::string(text.substr(colon + 1));
      path = text.substr(0, colon);
      if (verb.empty()) return Invalid(text, "empty custom verb after ':'");
      for (char c : verb) {
        if (!IsLiteralChar(c)) return Invalid(text, "invalid character in custom verb");
      }
    }
  }

  PathTemplate t;
  t.text_ = std::string(text);
  t.verb_ = std::move(verb);
  std::set<std::string, std::less<>> names;
  std::size_t pos = 1;  // after the leading '/'
  while (true) {
    // One segment: up to the next '/' outside braces.
    std::size_t end = pos;
    int depth = 0;
    while (end < path.size() && (depth > 0 || path[end] != '/')) {
      if (path[end] == '{') ++depth;
      if (path[end] == '}') --depth;
      if (depth < 0) return Invalid(text, "unbalanced '}'");
      ++end;
    }
    if (depth != 0) return Invalid(text, "unbalanced '{'");
    const std::string_view seg = path.substr(pos, end - pos);
    if (seg.empty()) {
      return Invalid(text, path.size() == 1 ? "no segments" : "empty segment");
    }
    if (!t.segments_.empty() && t.segments_.back().kind == Segment::Kind::kMulti) {
      return Invalid(text, "'**' must be the last segment");
    }
    Segment s;
    if (seg == "*") {
      s.kind = Segment::Kind::kSingle;
    } else if (seg == "**") {
      s.kind = Segment::Kind::kMulti;
    } else if (seg.front() == '{') {
      if (seg.back() != '}') return Invalid(text, "a variable must be a whole segment");
      std::string_view inner = seg.substr(1, seg.size() - 2);
      std::string_view name = inner, pattern = "*";
      if (const auto eq = inner.find('='); eq != std::string_view::npos) {
        name = inner.substr(0, eq);
        pattern = inner.substr(eq + 1);
      }
      if (!IsFieldPath(name)) {
        return Invalid(text, "bad variable name \"" + std::string(name) + "\"");
      }
      if (pattern == "*") {
        s.kind = Segment::Kind::kSingle;
      } else if (pattern == "**") {
        s.kind = Segment::Kind::kMulti;
      } else {
        return Invalid(text, "variable patterns other than '*' and '**' are not supported");
      }
      if (!names.insert(std::string(name)).second) {
        return Invalid(text, "variable \"" + std::string(name) + "\" appears twice");
      }
      s.variable = std::string(name);
    } else if (seg.find_first_of("{}") != std::string_view::npos) {
      return Invalid(text, "a variable must be a whole segment");
    } else {
      for (char c : seg) {
        if (!IsLiteralChar(c)) {
          return Invalid(text, std::string("invalid character '") + c + "' in a literal segment");
        }
      }
      s.literal = std::string(seg);
    }
    t.segments_.push_back(std::move(s));
    if (end >= path.size()) break;
    pos = end + 1;
  }
  return t;
}

std::vector<std::string> PathTemplate::Variables() const {
  std::vector<std::string> out;
  for (const auto& s : segments_) {
    if (!s.variable.empty()) out.push_back(s.variable);
  }
  return out;
}

std::string PathTemplate::Shape() const {
  std::string out;
  for (const auto& s : segments_) {
    out += '/';
    switch (s.kind) {
      case Segment::Kind::kLiteral: out += s.literal; break;
      case Segment::Kind::kSingle: out += '*'; break;
      case Segment::Kind::kMulti: out += "**"; break;
    }
  }
  if (!verb_.empty()) out += ':' + verb_;
  return out;
}

}  // namespace portico::transcode

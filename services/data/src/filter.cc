#include "filter.h"

#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/time_util.h>

#include <cctype>
#include <cstdint>
#include <optional>
#include "portico/core/strings.h"

// A hand-written recursive-descent parser: the grammar is a dozen lines, the
// output is SQL with our own parameter numbering, and every error must name
// a position; no parser library on the machine fits better than this.

namespace portico::data {
namespace {

enum class Tok { kEnd, kLParen, kRParen, kComma, kOp, kIdent, kString, kNumber, kTime };

struct Token {
  Tok kind = Tok::kEnd;
  std::string text;  // op spelling, identifier, decoded string, number or time text
  std::size_t pos = 0;  // 0-based byte offset
};

bool IsIdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsOpChar(char c) { return c == '=' || c == '<' || c == '>' || c == '!'; }

// An RFC 3339 time in the UTC form PostgreSQL's timestamptz reads, or
// nothing. TimeUtil::FromString accepts offsets that carry a time just
// outside 0001-01-01..9999-12-31 UTC (e.g. 0001-01-01T00:00:00+01:00) and
// then fails a fatal check (an exception, or an abort). So the offset is
// split off and applied here, with the range checked first: FromString only
// ever sees a "Z" time, whose range is that of its four-digit year.
std::optional<std::string> NormalizeTime(const std::string& text) {
  using google::protobuf::util::TimeUtil;
  std::string utc = text;
  std::int64_t offset = 0;  // seconds east of UTC
  const std::size_t n = text.size();
  if (n > 6 && (text[n - 6] == '+' || text[n - 6] == '-') && text[n - 3] == ':') {
    const char* hm = text.data() + n - 5;  // "HH:MM"
    if (!IsDigit(hm[0]) || !IsDigit(hm[1]) || !IsDigit(hm[3]) || !IsDigit(hm[4])) {
      return std::nullopt;
    }
    const int hours = (hm[0] - '0') * 10 + (hm[1] - '0');
    const int minutes = (hm[3] - '0') * 10 + (hm[4] - '0');
    if (hours > 23 || minutes > 59) return std::nullopt;
    offset = (hours * 60 + minutes) * 60 * (text[n - 6] == '+' ? 1 : -1);
    utc = text.substr(0, n - 6) + "Z";
  } else if (n == 0 || text.back() != 'Z') {
    return std::nullopt;
  }
  google::protobuf::Timestamp ts;
  if (!TimeUtil::FromString(utc, &ts)) return std::nullopt;
  const std::int64_t seconds = ts.seconds() - offset;
  if (seconds < TimeUtil::kTimestampMinSeconds || seconds > TimeUtil::kTimestampMaxSeconds) {
    return std::nullopt;
  }
  ts.set_seconds(seconds);
  return TimeUtil::ToString(ts);
}

void AppendUtf8(std::string* out, std::uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Length of the valid UTF-8 sequence at s[i], or 0.
std::size_t Utf8Length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (std::size_t k = 1; k < n; ++k) {
    const auto d = static_cast<unsigned char>(s[i + k]);
    if ((d >> 6) != 2) return 0;
    cp = (cp << 6) | (d & 0x3F);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

std::string JsonQuote(std::string_view s) {
  std::string out;
  AppendJsonQuoted(out, s);
  return out;
}

class Parser {
 public:
  Parser(std::string_view text, int first_param, const FilterLimits& limits)
      : text_(text), next_param_(first_param), limits_(limits) {}

  Result<SqlCondition> Compile() {
    if (text_.size() > limits_.max_bytes) {
      return Fail(limits_.max_bytes, "the filter is longer than " +
                                         std::to_string(limits_.max_bytes) + " bytes");
    }
    if (auto st = Next(); !st.ok()) return std::move(st).error();
    if (tok_.kind == Tok::kEnd) return SqlCondition{"TRUE", {}};
    auto sql = ParseOr(0);
    if (!sql.ok()) return std::move(sql).error();
    if (tok_.kind != Tok::kEnd) return Fail(tok_.pos, "expected AND, OR or the end of the filter");
    return SqlCondition{std::move(*sql), std::move(params_)};
  }

 private:
  Error Fail(std::size_t pos, const std::string& why) {
    const std::string where = "at position " + std::to_string(pos + 1) + ": " + why;
    return Error::InvalidArgument("invalid filter " + where, {{"filter", where}});
  }

  std::string Param(std::string value, std::string_view cast) {
    params_.push_back(std::move(value));
    return "$" + std::to_string(next_param_++) + "::" + std::string(cast);
  }

  Status Next() {
    std::size_t i = pos_;
    while (i < text_.size() && (text_[i] == ' ' || text_[i] == '\t' || text_[i] == '\n' ||
                                text_[i] == '\r')) {
      ++i;
    }
    tok_ = Token{};
    tok_.pos = i;
    if (i >= text_.size()) {
      pos_ = i;
      return {};
    }
    const char c = text_[i];
    if (c == '(' || c == ')' || c == ',') {
      tok_.kind = c == '(' ? Tok::kLParen : c == ')' ? Tok::kRParen : Tok::kComma;
      pos_ = i + 1;
      return {};
    }
    if (IsOpChar(c)) {
      // The whole run of operator characters is one token, and only the six
      // spellings of the grammar are operators: the compiled SQL uses the
      // spelling as is (but for != -> <>), so anything else (==, =>, <>,
      // ===, !) would reach PostgreSQL as an operator it does not have.
      std::size_t n = 1;
      while (i + n < text_.size() && IsOpChar(text_[i + n])) ++n;
      tok_.text = std::string(text_.substr(i, n));
      if (tok_.text != "=" && tok_.text != "!=" && tok_.text != "<" && tok_.text != "<=" &&
          tok_.text != ">" && tok_.text != ">=") {
        return Fail(i, "unknown operator '" + tok_.text + "'; use =, !=, <, <=, > or >=");
      }
      tok_.kind = Tok::kOp;
      pos_ = i + n;
      return {};
    }
    if (c == '"') return LexString(i);
    if (IsDigit(c) || c == '-') return LexNumberOrTime(i);
    if (IsIdentStart(c)) {
      std::size_t j = i;
      // Field paths are one token: letters, digits, '_' and '.'.
      while (j < text_.size() && (IsIdentChar(text_[j]) || text_[j] == '.')) ++j;
      tok_.kind = Tok::kIdent;
      tok_.text = std::string(text_.substr(i, j - i));
      pos_ = j;
      return {};
    }
    return Fail(i, "unexpected character");
  }

  Status LexString(std::size_t start) {
    std::string out;
    std::size_t i = start + 1;
    while (true) {
      if (i >= text_.size()) return Fail(start, "unterminated string");
      const char c = text_[i];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) return Fail(i, "control character in a string");
      if (c != '\\') {
        const std::size_t n = Utf8Length(text_, i);
        if (n == 0) return Fail(i, "invalid UTF-8 in a string");
        out.append(text_.substr(i, n));
        i += n;
        continue;
      }
      if (i + 1 >= text_.size()) return Fail(start, "unterminated string");
      const char e = text_[i + 1];
      i += 2;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          auto hex4 = [&](std::size_t at) -> std::optional<std::uint32_t> {
            if (at + 4 > text_.size()) return std::nullopt;
            std::uint32_t v = 0;
            for (std::size_t k = 0; k < 4; ++k) {
              const char h = text_[at + k];
              v <<= 4;
              if (IsDigit(h)) v |= h - '0';
              else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
              else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
              else return std::nullopt;
            }
            return v;
          };
          auto cp = hex4(i);
          if (!cp) return Fail(i - 2, "invalid \\u escape");
          i += 4;
          if (*cp >= 0xD800 && *cp <= 0xDBFF) {
            auto lo = i + 1 < text_.size() && text_[i] == '\\' && text_[i + 1] == 'u'
                          ? hex4(i + 2)
                          : std::nullopt;
            if (!lo || *lo < 0xDC00 || *lo > 0xDFFF) return Fail(i - 6, "unpaired surrogate");
            *cp = 0x10000 + ((*cp - 0xD800) << 10) + (*lo - 0xDC00);
            i += 6;
          } else if (*cp >= 0xDC00 && *cp <= 0xDFFF) {
            return Fail(i - 6, "unpaired surrogate");
          }
          // PostgreSQL's jsonb cannot hold U+0000.
          if (*cp == 0) return Fail(i - 6, "\\u0000 is not allowed");
          AppendUtf8(&out, *cp);
          break;
        }
        default: return Fail(i - 2, "invalid escape");
      }
    }
    tok_.kind = Tok::kString;
    tok_.text = std::move(out);
    pos_ = i + 1;
    return {};
  }

  Status LexNumberOrTime(std::size_t start) {
    std::size_t j = start;
    while (j < text_.size() && (IsDigit(text_[j]) || text_[j] == '-' || text_[j] == '+' ||
                                text_[j] == '.' || text_[j] == ':' || text_[j] == 'e' ||
                                text_[j] == 'E' || text_[j] == 'T' || text_[j] == 't' ||
                                text_[j] == 'Z' || text_[j] == 'z')) {
      ++j;
    }
    const std::string word(text_.substr(start, j - start));
    pos_ = j;
    if (word.size() > 64) return Fail(start, "literal too long");
    if (IsJsonNumber(word)) {
      tok_.kind = Tok::kNumber;
      tok_.text = word;
      return {};
    }
    if (auto time = NormalizeTime(word)) {
      tok_.kind = Tok::kTime;
      tok_.text = std::move(*time);
      return {};
    }
    return Fail(start, "invalid number or time");
  }

  // JSON's number grammar, with an exponent of at most 3 digits so that
  // PostgreSQL's numeric cannot overflow.
  static bool IsJsonNumber(std::string_view s) {
    std::size_t i = 0;
    if (i < s.size() && s[i] == '-') ++i;
    if (i >= s.size() || !IsDigit(s[i])) return false;
    if (s[i] == '0') {
      ++i;
    } else {
      while (i < s.size() && IsDigit(s[i])) ++i;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      if (i >= s.size() || !IsDigit(s[i])) return false;
      while (i < s.size() && IsDigit(s[i])) ++i;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      const std::size_t digits = i;
      while (i < s.size() && IsDigit(s[i])) ++i;
      if (i == digits || i - digits > 3) return false;
    }
    return i == s.size();
  }

  bool IsKeyword(std::string_view kw) const {
    return tok_.kind == Tok::kIdent && EqualsIgnoreCase(tok_.text, kw);
  }

  Result<std::string> ParseOr(int depth) {
    auto left = ParseAnd(depth);
    if (!left.ok()) return left;
    std::string sql = std::move(*left);
    bool any = false;
    while (IsKeyword("OR")) {
      if (auto st = Next(); !st.ok()) return std::move(st).error();
      auto right = ParseAnd(depth);
      if (!right.ok()) return right;
      sql += " OR " + *right;
      any = true;
    }
    return any ? "(" + sql + ")" : sql;
  }

  Result<std::string> ParseAnd(int depth) {
    auto left = ParseNot(depth);
    if (!left.ok()) return left;
    std::string sql = std::move(*left);
    bool any = false;
    while (IsKeyword("AND")) {
      if (auto st = Next(); !st.ok()) return std::move(st).error();
      auto right = ParseNot(depth);
      if (!right.ok()) return right;
      sql += " AND " + *right;
      any = true;
    }
    return any ? "(" + sql + ")" : sql;
  }

  Result<std::string> ParseNot(int depth) {
    if (depth >= limits_.max_depth) {
      return Fail(tok_.pos, "nested deeper than " + std::to_string(limits_.max_depth) + " levels");
    }
    if (IsKeyword("NOT")) {
      if (auto st = Next(); !st.ok()) return std::move(st).error();
      auto inner = ParseNot(depth + 1);
      if (!inner.ok()) return inner;
      return "NOT " + *inner;
    }
    if (tok_.kind == Tok::kLParen) {
      if (auto st = Next(); !st.ok()) return std::move(st).error();
      auto inner = ParseOr(depth + 1);
      if (!inner.ok()) return inner;
      if (tok_.kind != Tok::kRParen) return Fail(tok_.pos, "expected ')'");
      if (auto st = Next(); !st.ok()) return std::move(st).error();
      return "(" + *inner + ")";
    }
    return ParseComparison();
  }

  struct Field {
    enum Kind { kCreateTime, kUpdateTime, kData } kind;
    std::vector<std::string> path;
  };

  Result<Field> ParseField() {
    if (tok_.kind != Tok::kIdent) return Fail(tok_.pos, "expected a field");
    const std::string& t = tok_.text;
    if (t == "createTime" || t == "create_time") return Field{Field::kCreateTime, {}};
    if (t == "updateTime" || t == "update_time") return Field{Field::kUpdateTime, {}};
    if (!t.starts_with("data.")) {
      return Fail(tok_.pos, "unknown field; use createTime, updateTime or data.<path>");
    }
    Field f{Field::kData, {}};
    std::size_t start = 5;
    while (true) {
      const std::size_t dot = t.find('.', start);
      std::string seg = t.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (seg.empty() || !IsIdentStart(seg[0])) {
        return Fail(tok_.pos + start, "invalid name in the field path");
      }
      f.path.push_back(std::move(seg));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    if (f.path.size() > 32) return Fail(tok_.pos, "field path too deep");
    return f;
  }

  struct Literal {
    Tok kind;
    std::string text;
    std::size_t pos;
    // JSON text of the value.
    std::string Json() const {
      switch (kind) {
        case Tok::kString: return JsonQuote(text);
        case Tok::kTime: return JsonQuote(text);
        default: return text;  // number, true, false, null
      }
    }
  };

  Result<Literal> ParseLiteral() {
    Literal lit{tok_.kind, tok_.text, tok_.pos};
    if (tok_.kind == Tok::kIdent) {
      if (IsKeyword("true") || IsKeyword("false") || IsKeyword("null")) {
        for (auto& ch : lit.text) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      } else {
        return Fail(tok_.pos, "expected a literal (string, number, true, false, null or time)");
      }
    } else if (tok_.kind != Tok::kString && tok_.kind != Tok::kNumber && tok_.kind != Tok::kTime) {
      return Fail(tok_.pos, "expected a literal (string, number, true, false, null or time)");
    }
    if (++terms_ > limits_.max_terms) {
      return Fail(tok_.pos, "more than " + std::to_string(limits_.max_terms) + " values");
    }
    if (auto st = Next(); !st.ok()) return std::move(st).error();
    return lit;
  }

  // `{"a":{"b":<value>}}`
  static std::string Nest(const std::vector<std::string>& path, const std::string& value_json) {
    std::string out;
    for (const auto& seg : path) out += "{" + JsonQuote(seg) + ":";
    out += value_json;
    out.append(path.size(), '}');
    return out;
  }

  Result<std::string> Compare(const Field& f, const std::string& op, const Literal& lit) {
    if (f.kind != Field::kData) {
      const char* column = f.kind == Field::kCreateTime ? "create_time" : "update_time";
      std::string time = lit.text;
      if (lit.kind == Tok::kString) {
        auto normalized = NormalizeTime(lit.text);
        if (!normalized) return Fail(lit.pos, "expected an RFC 3339 time");
        time = std::move(*normalized);
      } else if (lit.kind != Tok::kTime) {
        return Fail(lit.pos, "expected an RFC 3339 time");
      }
      const std::string sql_op = op == "!=" ? "<>" : op;
      return "(" + std::string(column) + " " + sql_op + " " + Param(time, "timestamptz") + ")";
    }
    const std::string value = lit.Json();
    if (op == "=" || op == "!=") {
      // Containment of {"a":{"b":<scalar>}} is exact equality of data.a.b
      // (numerically for numbers): jsonb's "an array contains a scalar"
      // exception applies at the top level only, and our document is always
      // an object. A GIN index serves it, and PostgreSQL estimates its
      // selectivity from statistics, which keeps LIMIT queries on the
      // ordered index instead of sorting every match.
      const std::string eq = "data @> " + Param(Nest(f.path, value), "jsonb");
      return op == "=" ? eq : "(NOT " + eq + ")";
    }
    const std::string path = Param(PgTextArray(f.path), "text[]");
    const std::string v = Param(value, "jsonb");
    return "COALESCE(jsonb_typeof(data #> " + path + ") = jsonb_typeof(" + v + ") AND data #> " +
           path + " " + op + " " + v + ", FALSE)";
  }

  Result<std::string> ParseComparison() {
    auto field = ParseField();
    if (!field.ok()) return std::move(field).error();
    if (auto st = Next(); !st.ok()) return std::move(st).error();
    if (IsKeyword("IN")) {
      if (auto st = Next(); !st.ok()) return std::move(st).error();
      if (tok_.kind != Tok::kLParen) return Fail(tok_.pos, "expected '(' after IN");
      std::string sql;
      do {
        if (auto st = Next(); !st.ok()) return std::move(st).error();
        auto lit = ParseLiteral();
        if (!lit.ok()) return std::move(lit).error();
        auto eq = Compare(*field, "=", *lit);
        if (!eq.ok()) return eq;
        sql += (sql.empty() ? "" : " OR ") + *eq;
      } while (tok_.kind == Tok::kComma);
      if (tok_.kind != Tok::kRParen) return Fail(tok_.pos, "expected ',' or ')'");
      if (auto st = Next(); !st.ok()) return std::move(st).error();
      return "(" + sql + ")";
    }
    if (tok_.kind != Tok::kOp) return Fail(tok_.pos, "expected a comparison operator or IN");
    const std::string op = tok_.text;
    if (auto st = Next(); !st.ok()) return std::move(st).error();
    auto lit = ParseLiteral();
    if (!lit.ok()) return std::move(lit).error();
    return Compare(*field, op, *lit);
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  Token tok_;
  int next_param_;
  int terms_ = 0;
  FilterLimits limits_;
  std::vector<std::string> params_;
};

}  // namespace

Result<SqlCondition> CompileFilter(std::string_view filter, int first_param,
                                   const FilterLimits& limits) {
  return Parser(filter, first_param, limits).Compile();
}

std::string PgTextArray(const std::vector<std::string>& path) {
  // Segments are identifiers ([A-Za-z_][A-Za-z0-9_]*): quoting is enough.
  std::string out = "{";
  for (std::size_t i = 0; i < path.size(); ++i) out += (i ? ",\"" : "\"") + path[i] + "\"";
  return out + "}";
}

std::string OrderBy::Normalized() const {
  std::string field;
  switch (key) {
    case Key::kDefault: return "";
    case Key::kCreateTime: field = "createTime"; break;
    case Key::kUpdateTime: field = "updateTime"; break;
    case Key::kData:
      field = "data";
      for (const auto& s : path) field += "." + s;
      break;
  }
  return field + (descending ? " desc" : " asc");
}

Result<OrderBy> ParseOrderBy(std::string_view text) {
  auto bad = [] {
    return Error::InvalidArgument(
        "invalid orderBy",
        {{"orderBy", "must be createTime, updateTime or data.<path>, optionally followed by "
                     "asc or desc"}});
  };
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (c == ' ' || c == '\t') {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
    } else {
      word += c;
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  OrderBy o;
  if (words.empty()) return o;
  // The field path is bounded, not the text: its normalized form (with
  // " asc") must parse again, e.g. inside a page token.
  if (words.size() > 2 || words[0].size() > 512) return bad();
  o.descending = false;
  if (words.size() == 2) {
    if (EqualsIgnoreCase(words[1], "desc")) {
      o.descending = true;
    } else if (!EqualsIgnoreCase(words[1], "asc")) {
      return bad();
    }
  }
  const std::string& f = words[0];
  if (f == "createTime" || f == "create_time") {
    o.key = OrderBy::Key::kCreateTime;
  } else if (f == "updateTime" || f == "update_time") {
    o.key = OrderBy::Key::kUpdateTime;
  } else if (f.starts_with("data.")) {
    o.key = OrderBy::Key::kData;
    std::size_t start = 5;
    while (true) {
      const std::size_t dot = f.find('.', start);
      std::string seg = f.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (seg.empty() || !IsIdentStart(seg[0])) return bad();
      for (char c : seg) {
        if (!IsIdentChar(c)) return bad();
      }
      o.path.push_back(std::move(seg));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    if (o.path.size() > 32) return bad();
  } else {
    return bad();
  }
  return o;
}

}  // namespace portico::data

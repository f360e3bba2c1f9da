#pragma once
// HTTP path templates of the `portico.api.v1.http` annotation:
// "/v1/collections/{collection}/items/{id}", "{name=*}", "{path=**}" and a
// trailing custom verb ("/v1/collections/{collection}/changes:watch").

#include <string>
#include <string_view>
#include <vector>

#include "portico/core/result.h"

namespace portico::transcode {

/// One segment of a template. Variables name a (possibly dotted) field path
/// of the request message; anonymous wildcards ("*", "**") have no variable.
struct Segment {
  enum class Kind {
    kLiteral,  // matches exactly `literal`
    kSingle,   // "{var}", "{var=*}" or "*": exactly one non-empty segment
    kMulti,    // "{var=**}" or "**": one or more segments; only last
  };
  Kind kind = Kind::kLiteral;
  std::string literal;   // kLiteral only
  std::string variable;  // "" for anonymous wildcards
  friend bool operator==(const Segment&, const Segment&) = default;
};

class PathTemplate {
 public:
  /// Parses a template. kInvalidArgument with a message naming the problem
  /// (no leading '/', empty segment, unbalanced braces, "**" not last, a
  /// duplicate variable, a bad variable name, characters not allowed in a
  /// path).
  static Result<PathTemplate> Parse(std::string_view text);

  const std::string& text() const { return text_; }
  const std::vector<Segment>& segments() const { return segments_; }
  /// The custom verb after the last ':' ("watch"), or "".
  const std::string& verb() const { return verb_; }
  /// Variable names in order of appearance.
  std::vector<std::string> Variables() const;

  /// The template with variable names erased ("/v1/users/*", "/a/**:verb"):
  /// two templates with the same shape match exactly the same paths.
  std::string Shape() const;

 private:
  std::string text_;
  std::vector<Segment> segments_;
  std::string verb_;
};

/// Decodes %XX escapes (no '+' handling). False on a malformed escape.
bool PercentDecode(std::string_view in, std::string* out);

}  // namespace portico::transcode

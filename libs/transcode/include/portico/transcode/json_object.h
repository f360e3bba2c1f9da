#pragma once
// Fields marked `(portico.api.v1.json_object)`: a `string` field whose value
// is the text of a JSON object, carried as that object in HTTP. The gateway
// validates the object once and passes its text on byte for byte (numbers
// keep every digit), and splices the text back into responses; a service
// validates what reaches it directly over gRPC with the same rules.
//
// The rules of a stored JSON object (the same wherever one travels): one
// JSON object, well-formed UTF-8; no member name twice in one object; no
// \u0000 and no lone surrogate in a string or a name; nesting at most
// kMaxJsonObjectDepth levels (`{}` is 1); at most a size the service sets.

#include <cstddef>
#include <string>
#include <string_view>

#include "portico/core/result.h"

namespace google::protobuf {
class Descriptor;
class FieldDescriptor;
}  // namespace google::protobuf

namespace portico::transcode {

inline constexpr int kMaxJsonObjectDepth = 64;

/// True if `field` carries the json_object option (also when its options
/// came from a descriptor set built at run time).
bool IsJsonObjectField(const google::protobuf::FieldDescriptor* field);

/// True if `type` or a message type reachable through its fields has a
/// json_object field (the transcoder skips its rewriting otherwise).
/// Thread-safe; cached per type.
bool HasJsonObjectFields(const google::protobuf::Descriptor* type);

/// Checks `text` against the rules above. `max_bytes` 0 means no size limit.
/// kInvalidArgument "invalid <field>" with one FieldViolation naming `field`
/// whose message speaks JSON ("must be a JSON object", "has the member
/// \"a\" twice", ...). Pure; thread-safe.
Status ValidateJsonObject(std::string_view text, std::string_view field,
                          std::size_t max_bytes = 0);

/// True if `text` is one well-formed JSON value of any kind (numbers of any
/// size). Pure; thread-safe.
bool IsJsonValue(std::string_view text);

/// Request side: `body` is the JSON of a message of `type` (proto3 JSON
/// mapping). Returns the same JSON in which each json_object field's object
/// is replaced by a JSON string holding its compact text (what protobuf's
/// JSON parser then reads into the string field), after checking it with
/// the rules above; errors name the field's JSON path ("data",
/// "writes[2].data"). Other values are copied as they came, numbers with
/// the text they had. kInvalidArgument for JSON that does not parse.
Result<std::string> EncodeJsonObjectFields(const google::protobuf::Descriptor* type,
                                           std::string_view body);

/// Response side: `json` is protobuf's JSON output for a message of `type`.
/// Returns it with each json_object field's string replaced by the object
/// it holds. kInternal if such a string is not a JSON object (a service
/// broke the field's contract).
Result<std::string> DecodeJsonObjectFields(const google::protobuf::Descriptor* type,
                                           std::string_view json);

}  // namespace portico::transcode

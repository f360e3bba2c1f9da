#pragma once
// Field paths and text values: how path variables and query parameters land
// in request fields through reflection.

#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include "portico/core/result.h"

namespace portico::transcode::internal {

using FieldPath = std::vector<const google::protobuf::FieldDescriptor*>;

/// Finds a field by proto name or JSON name.
const google::protobuf::FieldDescriptor* FindField(const google::protobuf::Descriptor* desc,
                                                   std::string_view name);

/// Resolves "a.b.c" (proto or JSON names); every field but the last must be a
/// singular message. kInvalidArgument naming the first unknown part.
Result<FieldPath> ResolveFieldPath(const google::protobuf::Descriptor* desc,
                                   std::string_view dotted);

/// "a.b.c" in JSON names (lowerCamelCase), for error messages.
std::string JsonPath(const FieldPath& path);

/// True if a value for this leaf field can be written as text: scalars,
/// enums, and the well-known Timestamp, Duration, FieldMask (comma-separated
/// paths, camelCase or proto names) and wrapper messages.
bool IsTextSettable(const google::protobuf::FieldDescriptor* leaf);

/// Sets (singular: replaces; repeated: appends) the leaf of `path` in `msg`
/// from its text form. kInvalidArgument naming the field on a bad value.
Status SetFromText(google::protobuf::Message* msg, const FieldPath& path, std::string_view text);

/// The FieldMask paths (proto names, dotted) a JSON object names for
/// messages of type `desc`: each key (JSON or proto name), and for a key
/// whose field is a singular message other than a google.protobuf type and
/// whose value is a non-empty object, the paths under it instead. Keys that
/// name no field are skipped (the JSON parse has rejected them already).
/// Empty if `json` is not an object.
std::vector<std::string> FieldMaskPaths(const google::protobuf::Descriptor* desc,
                                        std::string_view json);

/// True if `s` is valid UTF-8.
bool IsValidUtf8(std::string_view s);

/// `s` with every byte that is not part of a valid UTF-8 sequence replaced
/// by U+FFFD.
std::string ToValidUtf8(std::string_view s);

}  // namespace portico::transcode::internal

#pragma once
// The Portico contracts as a serialized google.protobuf.FileDescriptorSet
// with imports and source info (comments), made by protoc at build time and
// linked into the binary. For documentation (transcode::ProtoComments).

#include <string_view>

namespace portico::proto {

/// The bytes of the set; static storage, valid for the life of the process.
std::string_view PorticoDescriptorSet();

}  // namespace portico::proto

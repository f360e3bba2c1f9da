#include "portico/proto/descriptor_set.h"

// Defined by the assembler (portico_embed in cmake/Portico.cmake).
extern "C" const char portico_api_descriptor_set[];
extern "C" const char portico_api_descriptor_set_end[];

namespace portico::proto {

std::string_view PorticoDescriptorSet() {
  return {portico_api_descriptor_set,
          static_cast<std::size_t>(portico_api_descriptor_set_end - portico_api_descriptor_set)};
}

}  // namespace portico::proto

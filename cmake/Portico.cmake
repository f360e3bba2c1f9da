# Shared build conventions for Portico's own targets.

# Warnings for code we write; generated protobuf code does not get them.
add_library(portico_warnings INTERFACE)
target_compile_options(portico_warnings INTERFACE
  -Wall -Wextra -Wpedantic $<$<CXX_COMPILER_ID:GNU>:-Wshadow=local> -Wnon-virtual-dtor -Wno-missing-field-initializers
  # GCC 12 at -O3 reports `"literal" + std::string(...)` as an overlapping
  # memcpy (a false -Wrestrict, GCC bug 105651, fixed in GCC 13).
  $<$<AND:$<CXX_COMPILER_ID:GNU>,$<VERSION_LESS:$<CXX_COMPILER_VERSION>,13>>:-Wno-restrict>
  $<$<BOOL:${PORTICO_WERROR}>:-Werror>)

# Linking feature that keeps a shared library even when nothing references it
# (gRPC reflection registers itself from a static initializer).
set(CMAKE_LINK_LIBRARY_USING_NO_AS_NEEDED
  "LINKER:--push-state,--no-as-needed" "<LINK_ITEM>" "LINKER:--pop-state")
set(CMAKE_LINK_LIBRARY_USING_NO_AS_NEEDED_SUPPORTED TRUE)

# portico_library(<name> [SOURCES ...] [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# Defines portico_<name> with alias portico::<name>, public headers in include/.
function(portico_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  if(ARG_SOURCES)
    add_library(portico_${name} STATIC ${ARG_SOURCES})
    target_include_directories(portico_${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
    target_link_libraries(portico_${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS} portico_warnings)
  else()
    add_library(portico_${name} INTERFACE)
    target_include_directories(portico_${name} INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/include)
    target_link_libraries(portico_${name} INTERFACE ${ARG_PUBLIC_DEPS})
  endif()
  add_library(portico::${name} ALIAS portico_${name})
endfunction()

# portico_test(<name> SOURCES ... DEPS ... [LABELS ...])
function(portico_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main portico_warnings)
  add_test(NAME ${name} COMMAND ${name})
  if(ARG_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()

# portico_fuzz_target(<name> SOURCES ... DEPS ... [CORPUS dir])
# A libFuzzer target (LLVMFuzzerTestOneInput). With PORTICO_BUILD_FUZZERS=ON
# (clang) it links -fsanitize=fuzzer for real fuzzing; otherwise it links a
# small driver that replays the seed corpus plus a fixed number of
# deterministic random mutations, and runs as a CTest test (label `fuzz`).
function(portico_fuzz_target name)
  cmake_parse_arguments(ARG "" "CORPUS" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} portico_warnings)
  if(PORTICO_BUILD_FUZZERS)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined
                           -fno-sanitize-recover=all)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  else()
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cc)
    set(corpus_arg "")
    if(ARG_CORPUS)
      set(corpus_arg ${ARG_CORPUS})
    endif()
    add_test(NAME ${name} COMMAND ${name} ${corpus_arg})
    set_tests_properties(${name} PROPERTIES LABELS fuzz)
  endif()
endfunction()

# portico_embed(<target> <symbol> <file>)
# Links the bytes of <file> (which may be made at build time, in the same
# directory) into <target>, readable from C++ as
#   extern "C" const char <symbol>[];      // first byte
#   extern "C" const char <symbol>_end[];  // one past the last
# The assembler's .incbin includes the file as it is: no multi-megabyte
# generated source to compile, and no compiler cache that could miss a change
# (ccache wraps only the C++ compiler; OBJECT_DEPENDS reassembles on change).
function(portico_embed target symbol file)
  set(asm ${CMAKE_CURRENT_BINARY_DIR}/embed_${symbol}.S)
  file(CONFIGURE OUTPUT ${asm} CONTENT [[
  .section .rodata.@symbol@,"a"
  .global @symbol@
  .global @symbol@_end
  .balign 16
@symbol@:
  .incbin "@file@"
@symbol@_end:
  .byte 0
  .section .note.GNU-stack,"",@progbits
]] @ONLY)
  target_sources(${target} PRIVATE ${asm})
  set_source_files_properties(${asm} PROPERTIES OBJECT_DEPENDS ${file})
endfunction()

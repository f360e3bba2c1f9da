# portico_embed_migrations(<target> DIR <dir> NAMESPACE <c++ namespace>)
#
# Compiles the SQL migrations in <dir> into <target>, so the binary (and any
# container image of it) carries its schema. Every file in <dir> must be
# named NNNN_description.sql (NNNN: the version, description: [A-Za-z0-9_]).
# The generated source defines
#
#   std::span<const portico::pg::Migration> <namespace>::Migrations();
#
# in version order, with each file's bytes embedded exactly (a hex array, so
# the checksum does not depend on line endings or quoting). Declare that
# function in the service's own code and pass it to portico::pg::Migrate.
# <target> must link portico::pg. Adding, removing or editing a file
# regenerates the source at the next build.

set(PORTICO_EMBED_MIGRATIONS_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/EmbedMigrations.cmake
    CACHE INTERNAL "Script that writes the embedded-migrations source")

function(portico_embed_migrations target)
  cmake_parse_arguments(ARG "" "DIR;NAMESPACE" "" ${ARGN})
  if(NOT ARG_DIR OR NOT ARG_NAMESPACE)
    message(FATAL_ERROR "portico_embed_migrations(${target}): DIR and NAMESPACE are required")
  endif()
  get_filename_component(dir "${ARG_DIR}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT IS_DIRECTORY "${dir}")
    message(FATAL_ERROR "portico_embed_migrations(${target}): no directory ${dir}")
  endif()
  # CONFIGURE_DEPENDS re-checks the listing at every build; a new or removed
  # file re-runs CMake, which changes the command below and so re-runs it.
  file(GLOB files CONFIGURE_DEPENDS "${dir}/*.sql")
  list(SORT files)
  string(MAKE_C_IDENTIFIER "${target}" id)
  set(out "${CMAKE_CURRENT_BINARY_DIR}/${id}_migrations.cc")
  string(REPLACE ";" "|" file_arg "${files}")
  add_custom_command(
    OUTPUT "${out}"
    COMMAND ${CMAKE_COMMAND}
      "-DOUTPUT=${out}" "-DNAMESPACE=${ARG_NAMESPACE}" "-DFILES=${file_arg}" "-DSOURCE_DIR=${dir}"
      -P "${PORTICO_EMBED_MIGRATIONS_SCRIPT}"
    DEPENDS ${files} "${PORTICO_EMBED_MIGRATIONS_SCRIPT}"
    COMMENT "Embedding SQL migrations from ${dir}"
    VERBATIM)
  target_sources(${target} PRIVATE "${out}")
endfunction()

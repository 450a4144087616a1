# spoke_add_plugin(<name> <sources...>): builds plugins/<name> as
# ${CMAKE_BINARY_DIR}/plugins/<name>.so. Plugins see only host/include,
# export only spoke_plugin_entry (hidden visibility) and never link against
# host symbols (--no-undefined proves it, except under sanitizers whose
# runtime lives in the executable).
function(spoke_plugin_target name outdir)
  add_library(${name} MODULE ${ARGN})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${name}
    LIBRARY_OUTPUT_DIRECTORY ${outdir}
    C_VISIBILITY_PRESET hidden)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/host/include)
  target_link_libraries(${name} PRIVATE PkgConfig::JANSSON)
  if(NOT SPOKE_SANITIZE)
    target_link_options(${name} PRIVATE -Wl,--no-undefined)
  endif()
endfunction()

function(spoke_add_plugin name)
  spoke_plugin_target(${name} ${CMAKE_BINARY_DIR}/plugins ${ARGN})
endfunction()

# Test-only fixtures go to build/tests/plugins, outside the default plugin path.
function(spoke_add_test_plugin name)
  spoke_plugin_target(${name} ${CMAKE_BINARY_DIR}/tests/plugins ${ARGN})
endfunction()

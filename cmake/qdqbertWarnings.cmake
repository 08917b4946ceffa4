# Warnings for qdqbert's own targets (never for dependencies).
function(qdqbert_warnings target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
  if(QDQBERT_WERROR)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
    # GCC 12 at -O3 in C++20 (what LibTorch 2.x asks for) warns -Wrestrict inside libstdc++'s own
    # std::string::insert (GCC bug 105329, fixed in 13): kept as a warning, not an error.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
      target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wno-error=restrict>)
    endif()
  endif()
endfunction()

# Warnings for qdqbert's own targets (never for dependencies).
function(qdqbert_warnings target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
  if(QDQBERT_WERROR)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
    # GCC 12 at -O3 in C++20 (what LibTorch 2.x asks for) warns inside libstdc++'s own std::string code
    # (-Wrestrict, -Warray-bounds, -Wstringop-overflow false positives: GCC bugs 105329, 105651, fixed in
    # 13): kept as warnings, not errors.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
      target_compile_options(${target} PRIVATE
                             $<$<COMPILE_LANGUAGE:CXX>:-Wno-error=restrict -Wno-error=array-bounds
                             -Wno-error=stringop-overflow>)
    endif()
  endif()
endfunction()

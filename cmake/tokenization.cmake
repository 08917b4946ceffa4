# Tokenization component: extra targets and link settings (included from the top-level CMakeLists).

# utf8proc's pkg-config file adds -DUTF8PROC_EXPORTS (a Windows dllexport switch, meaningless here).
# It reaches the library's shared precompiled header but not the targets that reuse it, and GCC
# then rejects the PCH (-Winvalid-pch): drop it from the imported target.
if(TARGET PkgConfig::UTF8PROC)
  get_target_property(_qdqbert_utf8proc_opts PkgConfig::UTF8PROC INTERFACE_COMPILE_OPTIONS)
  if(_qdqbert_utf8proc_opts)
    list(REMOVE_ITEM _qdqbert_utf8proc_opts "-DUTF8PROC_EXPORTS")
    set_property(TARGET PkgConfig::UTF8PROC PROPERTY INTERFACE_COMPILE_OPTIONS "${_qdqbert_utf8proc_opts}")
  endif()
endif()

# CLI parity check: `qdqbert-cli tokenize --requests` over every fixture case, compared by a small
# Python script (the fixture's expected answers are JSON; Python is the simplest robust checker).
if(QDQBERT_BUILD_TESTS AND QDQBERT_BUILD_TOOLS)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND)
    enable_testing()
    add_test(NAME tokenizer_cli_parity
             COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tests/tokenizer_cli_check.py
                     $<TARGET_FILE:qdqbert-cli> ${PROJECT_SOURCE_DIR}/tests/data/tokenizer
                     ${PROJECT_BINARY_DIR}/tests/tokenizer_cli_work)
  else()
    message(STATUS "qdqbert: no Python 3 interpreter; the tokenize CLI parity test is skipped")
  endif()
endif()

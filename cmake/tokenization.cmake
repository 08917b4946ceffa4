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
  enable_testing()
  add_test(NAME tokenizer_cli_quick
           COMMAND qdqbert-cli tokenize --tokenizer ${PROJECT_SOURCE_DIR}/tests/data/tokenizer/vocab_uncased.txt
                   --text "Héllo, World!" --text-pair "Second text" --max-length 8 --truncation only_second
                   --return-offsets)
  set_tests_properties(tokenizer_cli_quick PROPERTIES PASS_REGULAR_EXPRESSION
    "tokens: hello , world !\ntokens_pair: second text\nencoded: \\[CLS\\] hello , world ! \\[SEP\\] second \\[SEP\\]")
endif()

# sentencepiece plugin: Debian's libsentencepiece links its own protobuf-lite, which crashes next to
# LibTorch's protobuf. The library loads this small C-interface module with dlmopen(LM_ID_NEWLM) so
# that it gets a link-map namespace of its own (src/tokenization/sentencepiece_tokenizer.cpp).
include(GNUInstallDirs)
pkg_check_modules(SENTENCEPIECE IMPORTED_TARGET sentencepiece)
set(QDQBERT_SPM_PLUGIN_DIR ${PROJECT_BINARY_DIR}/lib/qdqbert)
set(QDQBERT_SPM_PLUGIN_BUILD_PATH ${QDQBERT_SPM_PLUGIN_DIR}/libqdqbert_spm.so)
set(QDQBERT_SPM_PLUGIN_INSTALL_PATH ${CMAKE_INSTALL_FULL_LIBDIR}/qdqbert/libqdqbert_spm.so)
configure_file(${PROJECT_SOURCE_DIR}/cmake/spm_plugin_paths.h.in
               ${PROJECT_BINARY_DIR}/include/qdqbert/spm_plugin_paths.h @ONLY)
if(SENTENCEPIECE_FOUND)
  add_library(qdqbert_spm MODULE ${PROJECT_SOURCE_DIR}/plugins/sentencepiece/qdqbert_spm_plugin.cpp)
  target_link_libraries(qdqbert_spm PRIVATE PkgConfig::SENTENCEPIECE)
  set_target_properties(qdqbert_spm PROPERTIES PREFIX "lib" OUTPUT_NAME qdqbert_spm
                                               LIBRARY_OUTPUT_DIRECTORY ${QDQBERT_SPM_PLUGIN_DIR})
  qdqbert_warnings(qdqbert_spm)
  add_dependencies(qdqbert_core qdqbert_spm)
  if(QDQBERT_INSTALL)
    install(TARGETS qdqbert_spm LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/qdqbert)
  endif()
else()
  message(STATUS "qdqbert: sentencepiece not found (pkg-config); SentencePieceTokenizer will report a missing plugin")
endif()

# Tokenizer benchmark (Google Benchmark).
if(QDQBERT_BUILD_BENCH)
  find_package(benchmark QUIET)
  if(TARGET benchmark::benchmark)
    add_executable(bench_tokenizer ${PROJECT_SOURCE_DIR}/bench/bench_tokenizer.cpp)
    target_link_libraries(bench_tokenizer PRIVATE qdqbert::qdqbert benchmark::benchmark)
    target_include_directories(bench_tokenizer PRIVATE ${PROJECT_SOURCE_DIR}/bench)
    qdqbert_warnings(bench_tokenizer)
    # The data path reaches the benchmark as an argument (no -D flags: shared PCH).
  endif()
endif()

# libFuzzer target (clang only): cmake -DCMAKE_CXX_COMPILER=clang++ -DQDQBERT_BUILD_FUZZ=ON, or build
# tests/fuzz as a project of its own.
option(QDQBERT_BUILD_FUZZ "Build the tokenizer libFuzzer target (needs clang)" OFF)
if(QDQBERT_BUILD_FUZZ)
  add_subdirectory(${PROJECT_SOURCE_DIR}/tests/fuzz ${PROJECT_BINARY_DIR}/fuzz)
endif()

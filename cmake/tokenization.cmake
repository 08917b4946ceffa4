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

# Writes OUT, a C++ file defining ferry::dashboard_page() as the bytes of IN:
# the dashboard is built into the binary, so a LAN without internet (or
# without the source tree) still gets it.
file(READ "${IN}" content)
string(FIND "${content}" ")ferry_page\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )ferry_page\"")
endif()
file(WRITE "${OUT}" "// Generated from ${IN} by embed_page.cmake; do not edit.\n#include \"coordinator/serving/dashboard_page.h\"\n\nnamespace ferry {\nstd::string_view dashboard_page() {\n    static const char page[] = R\"ferry_page(${content})ferry_page\";\n    return {page, sizeof page - 1};\n}\n}  // namespace ferry\n")

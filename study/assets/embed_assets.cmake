# Embeds page assets into the binary: writes OUTPUT, a C++ file defining one NUL-terminated byte
# array per file, named after it (report.html -> saelab::kReportHtml, report.css -> kReportCss).
# study/CMakeLists.txt runs it at build time (add_custom_command), so that a changed asset
# rebuilds the binary; HEADER (included as written) declares the arrays.
#
#   cmake -DINPUT_DIR=<dir> -DFILES=report.html,report.css,report.js \
#         -DHEADER=study/assets/report_assets.h -DOUTPUT=<file.cpp> -P embed_assets.cmake
#
# Files are copied byte for byte (byte arrays, not string literals: no delimiter or escaping can
# go wrong, and no compiler limit on literal length applies). Because write_report inlines the
# style sheet and the script into one HTML page, a .css must not contain "</style" and a .js
# must not contain "</script", "<script" or "<!--" (any of which would end or change the element
# early); the build stops here with the file and the text where one does.

cmake_minimum_required(VERSION 3.18)  # script mode: today's policies

foreach(var INPUT_DIR FILES HEADER OUTPUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed_assets.cmake: -D${var}=... is required")
  endif()
endforeach()

string(REPLACE "," ";" files "${FILES}")
set(body "")
foreach(name IN LISTS files)
  set(path "${INPUT_DIR}/${name}")
  if(NOT EXISTS "${path}")
    message(FATAL_ERROR "embed_assets.cmake: ${path} does not exist")
  endif()

  # report.html -> kReportHtml
  string(REGEX REPLACE "[^A-Za-z0-9]+" ";" parts "${name}")
  set(symbol "k")
  foreach(part IN LISTS parts)
    string(SUBSTRING "${part}" 0 1 head)
    string(SUBSTRING "${part}" 1 -1 tail)
    string(TOUPPER "${head}" head)
    string(APPEND symbol "${head}${tail}")
  endforeach()

  file(READ "${path}" text)
  string(TOLOWER "${text}" lower)
  set(forbidden "")
  if(name MATCHES "\\.css$")
    set(forbidden "</style")
  elseif(name MATCHES "\\.js$")
    set(forbidden "</script" "<script" "<!--")
  endif()
  foreach(f IN LISTS forbidden)
    string(FIND "${lower}" "${f}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "embed_assets.cmake: ${path} contains \"${f}\" (at byte ${at}), which would end its "
                          "element early when inlined into the report page; write it differently "
                          "(e.g. \"<\\/script\" in a JavaScript string)")
    endif()
  endforeach()

  file(READ "${path}" hex HEX)
  string(LENGTH "${hex}" hex_length)
  math(EXPR size "${hex_length} / 2")
  string(REPEAT "." 40 twenty_bytes)  # CMake regexes have no {n}
  string(REGEX REPLACE "(${twenty_bytes})" "\\1\n  " hex "${hex}")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
  string(FIND "${bytes}" "'\\x00'" nul)
  if(NOT nul EQUAL -1)
    message(FATAL_ERROR "embed_assets.cmake: ${path} contains a NUL byte; assets are text")
  endif()
  string(APPEND body "\n// ${name}, ${size} bytes\nconst char ${symbol}[] = {\n  ${bytes}'\\0'};\n")
endforeach()

set(content "// Generated at build time by study/assets/embed_assets.cmake from ${INPUT_DIR}; do not edit.\n")
string(APPEND content "#include \"${HEADER}\"\n\nnamespace saelab {\n${body}\n}  // namespace saelab\n")
file(WRITE "${OUTPUT}" "${content}")

// The report page's assets, the files beside this header, compiled into the binary at build time
// (embed_assets.cmake, run from study/CMakeLists.txt) so that write_report needs no file at run
// time and its page stays one self-contained HTML file. Each array holds the file's bytes, then a
// NUL. saelab serve serves report.css from the same array.
#pragma once

namespace saelab {

/// report.html: the page skeleton. "@STYLE@" (inside <style>), "@SCRIPT@" (inside <script>) and
/// "@DATA@" (inside the JSON script element with id "data") each occur exactly once.
extern const char kReportHtml[];
/// report.css: the style sheet; contains no "</style".
extern const char kReportCss[];
/// report.js: the page's script; contains no "</script", "<script" or "<!--". Node loads it
/// without a DOM for tests/js/report.test.js.
extern const char kReportJs[];
/// serve.html and serve.js: saelab serve's page (study/serve.cpp), which loads report.css too.
extern const char kServeHtml[];
extern const char kServeJs[];

}  // namespace saelab

/* page.h - the web page `t2i serve` answers at GET /: one self-contained HTML file built
 * into the binary (no CDN, no download): the build generates its definition from
 * serve/page/index.html (cmake/embed.cmake). */
#ifndef T2I_SERVE_PAGE_H
#define T2I_SERVE_PAGE_H

#include <stddef.h>

extern const char serve_page_html[];
extern const size_t serve_page_html_len;

#endif

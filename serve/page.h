/* page.h - the web page `t2i serve` answers at GET /: one self-contained HTML file built
 * into the binary (no CDN, no download). page_stub.c defines a placeholder until the page
 * is generated from serve/page/index.html. */
#ifndef T2I_SERVE_PAGE_H
#define T2I_SERVE_PAGE_H

#include <stddef.h>

extern const char serve_page_html[];
extern const size_t serve_page_html_len;

#endif

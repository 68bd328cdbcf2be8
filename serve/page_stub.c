/* page_stub.c - a placeholder for the page at GET / (page.h): it names the API so that
 * the server is usable before the real page is built in. */
#include "page.h"

const char serve_page_html[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>t2i serve</title></head>\n<body>\n<h1>t2i serve</h1>\n"
    "<p>The API is at <code>/v1/</code>: POST /v1/images/generations, POST /v1/jobs, GET /v1/jobs,\n"
    "GET /v1/models, POST /v1/rerank, POST /v1/classify; GET /health, GET /metrics.</p>\n"
    "</body></html>\n";
const size_t serve_page_html_len = sizeof serve_page_html - 1;

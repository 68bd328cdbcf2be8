/* serve.h - `t2i serve`: the models of `t2i generate` loaded once, answering over HTTP
 * (libmicrohttpd): OpenAI-style image generation, jobs with progress events, CLIP rerank
 * and zero-shot classification, health and Prometheus metrics, and the page at /.
 *
 * Threads: libmicrohttpd runs one thread per connection; those threads only parse,
 * validate, enqueue and wait or answer. One worker thread runs every model call in order
 * from a bounded queue (the models are not thread-safe). The main thread waits for
 * SIGINT/SIGTERM, then cancels the running job, stops accepting and exits 0.
 *
 * The endpoints and their JSON are described in docs/SERVING.md and
 * README.md; request bodies are parsed by request.h.
 */
#ifndef T2I_SERVE_H
#define T2I_SERVE_H

/* The `t2i serve` command. */
int serve_cmd(int argc, char **argv);

#endif

/* server.c - the `t2i serve` command (see serve.h): flags, loading the models, the worker
 * thread and libmicrohttpd's daemon, and the stop on SIGINT/SIGTERM. The job table and the
 * worker are jobs.c's, the HTTP routes routes.c's.
 */
#include "serve.h"
#include "server_state.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "args.h"
#include "base.h"
#include "safetensors.h"

server serve_g;

static size_t file_parameters(const char *path) {
    st_file f;
    if (!path || st_open(&f, path) != 0) return 0;
    size_t n = 0;
    for (int i = 0; i < f.n; i++)
        if (strncmp(f.t[i].name, "opt_", 4) != 0) n += f.t[i].numel;
    st_close(&f);
    return n;
}

static void add_model(const char *id, const char *kind, const char *file, int res) {
    if (!file) return;
    serve_g.models[serve_g.nmodels++] = (model_info){id, kind, file, file_parameters(file), res};
}

int serve_cmd(int argc, char **argv) {
    const char *host = "127.0.0.1", *models = NULL, *clip_path = NULL, *clip_vocab = NULL, *dalle_path = NULL,
               *vq_path = NULL, *gan_path = NULL, *upscale = NULL, *generator = "auto", *api_key = NULL;
    int port = 8080, threads = 0, queue = 16, max_candidates = 2048, batch = 64, timeout = 10, max_images = 64,
        tta_flip = 1;
    long max_body = 16L << 20;
    t2i_flag flags[] = {
        {"--host", T2I_STR, &host, "address to listen on (an IPv4 address)"},
        {"--port", T2I_INT, &port, "port (0 = a free one, printed at start)"},
        {"--models", T2I_STR, &models, "folder of the default models (default $T2I_MODELS, else samples/models)"},
        {"--clip", T2I_STR, &clip_path,
         "CLIP checkpoint (rerank, classify, generation ranking); A,B: an ensemble ranks (classify uses A)"},
        {"--clip-vocab", T2I_STR, &clip_vocab, "BPE vocabulary for a CLIP file without one (e.g. OpenAI's)"},
        {"--tta-flip", T2I_BOOL, &tta_flip,
         "CLIP embeds each image together with its mirror image, in every use (--tta-flip=0: alone)"},
        {"--dalle", T2I_STR, &dalle_path, "DALL-E checkpoint"},
        {"--vq", T2I_STR, &vq_path, "VQ checkpoint (default: the DALL-E file's, else the shipped one)"},
        {"--gan", T2I_STR, &gan_path, "caption-conditioned GAN checkpoint"},
        {"--generator", T2I_STR, &generator, "models to load: dalle, gan, both, or auto (as t2i generate)"},
        {"--upscale", T2I_STR, &upscale, "super-resolution checkpoint: kept images are upscaled by default"},
        {"--threads", T2I_INT, &threads, "threads of the model work (0 = all cores)"},
        {"--batch", T2I_INT, &batch, "candidates generated together"},
        {"--queue", T2I_INT, &queue, "jobs that may wait (more get 429)"},
        {"--max-candidates", T2I_INT, &max_candidates, "largest \"candidates\" of a request"},
        {"--max-images", T2I_INT, &max_images, "largest number of images of a rerank"},
        {"--max-body", T2I_LONG, &max_body, "largest request body in bytes (more gets 413)"},
        {"--timeout", T2I_INT, &timeout, "seconds a client may take to send a request"},
        {"--api-key", T2I_STR, &api_key, "require Authorization: Bearer KEY on /v1/ (default $T2I_API_KEY)"},
    };
    t2i_cmd cmd = {"t2i serve", "Serve generation, reranking and zero-shot classification over HTTP.",
                   "[--host H] [--port P] [--models DIR] [--clip F] [--dalle F] [--gan F] [--upscale F] [options]",
                   flags, (int)(sizeof flags / sizeof flags[0]),
                   "Loads the models once, then answers on http://HOST:PORT: POST /v1/images/generations\n"
                   "(OpenAI-style), /v1/jobs (progress as server-sent events), /v1/rerank, /v1/classify,\n"
                   "GET /v1/models, /health, /metrics and the page at /. One worker runs the model calls\n"
                   "in order. Ctrl-C or SIGTERM stops it (exit 0). Prints `t2i serve: listening on URL`."};
    int prc = t2i_parse(&cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd.npos) return t2i_fail("serve: unexpected argument '%s'", cmd.pos[0]), 2;
    if (t2i_check_range_i("--port", port, 0, 65535) || t2i_check_range_i("--queue", queue, 1, 100000) ||
        t2i_check_range_i("--max-candidates", max_candidates, 1, 1000000) ||
        t2i_check_range_i("--batch", batch, 1, 4096) || t2i_check_range_i("--timeout", timeout, 1, 3600) ||
        t2i_check_range_i("--max-images", max_images, 1, 4096) ||
        t2i_check_range_i("--max-body", max_body, 1024, 1L << 30))
        return 2;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return t2i_fail("serve: --host must be an IPv4 address such as 127.0.0.1, not '%s'", host), 2;
    if (!api_key) {
        const char *e = getenv("T2I_API_KEY");
        if (e && *e) api_key = e;
    }
    if (api_key && !*api_key) return t2i_fail("serve: --api-key is empty"), 2;
    t2i_set_threads(threads);

    gen_pipeline_cfg pc;
    gen_pipeline_cfg_defaults(&pc);
    pc.models_dir = models, pc.clip_path = clip_path, pc.clip_vocab = clip_vocab, pc.dalle_path = dalle_path;
    pc.vq_path = vq_path, pc.gan_path = gan_path, pc.upscale_path = upscale, pc.generator = generator;
    pc.batch = batch, pc.tta_flip = tta_flip;
    fprintf(stderr, "t2i serve: loading models\n");
    gen_pipeline *pl = gen_pipeline_load(&pc);
    if (!pl) return t2i_fail("serve: %s", t2i_error_msg()), 1;

    memset(&serve_g, 0, sizeof serve_g);
    serve_g.pl = pl;
    serve_g.lim = (serve_limits){max_candidates, max_images, pl->sample};
    serve_g.queue_cap = queue, serve_g.max_body = (size_t)max_body, serve_g.timeout = timeout, serve_g.api_key = api_key;
    serve_g.out_res = pl->nsrc ? pl->src[0]->H : 0;
    serve_g.up_res = pl->have_sr ? serve_g.out_res * pl->sr.cfg.scale : 0;
    if (pl->dalle_index >= 0) {
        add_model("dalle", "dalle", pl->dalle_file, pl->src[pl->dalle_index]->H);
        add_model("vq", "vq", pl->vq_file, pl->src[pl->dalle_index]->H);
    }
    if (pl->gan_index >= 0) add_model("gan", "gan", pl->gan_file, pl->src[pl->gan_index]->H);
    /* the ranking CLIPs, an entry each: "clip", then "clip2" ... of an ensemble */
    static const char *const clip_ids[GEN_MAX_CLIPS] = {"clip", "clip2", "clip3", "clip4"};
    char *clip_files = t2i_strdup(pl->clip_file), *save = NULL;
    int nclip = 0;
    for (char *f = strtok_r(clip_files, ",", &save); f && nclip <= pl->n_clip_more;
         f = strtok_r(NULL, ",", &save), nclip++)
        add_model(clip_ids[nclip], "clip", f, clip_resolution(nclip ? pl->clip_more[nclip - 1] : pl->clip));
    if (pl->have_sr) add_model("upscale", "upscale", pl->upscale_file, serve_g.up_res);
    pthread_mutex_init(&serve_g.mu, NULL);
    pthread_cond_init(&serve_g.cv, NULL);

    /* every thread started from here on inherits the blocked signals; main takes them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t wt;
    pthread_create(&wt, NULL, serve_worker, NULL);
    serve_conn_watch_start(timeout);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
        serve_handle, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)timeout, MHD_OPTION_CONNECTION_LIMIT, 128u, MHD_OPTION_NOTIFY_COMPLETED, serve_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, serve_conn_notify, NULL,
        MHD_OPTION_END);
    int rc = 0;
    if (!d) {
        rc = t2i_fail("serve: cannot listen on %s:%d (%s)", host, port, errno ? strerror(errno) : "port in use?");
    } else {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
        struct sockaddr_in bound;
        socklen_t bl = sizeof bound;
        int real_port = port;
        if (info && getsockname(info->listen_fd, (struct sockaddr *)&bound, &bl) == 0) real_port = ntohs(bound.sin_port);
        printf("t2i serve: listening on http://%s:%d\n", host, real_port);
        fflush(stdout);
        int sig = 0;
        sigwait(&sigs, &sig);
        fprintf(stderr, "t2i serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        MHD_quiesce_daemon(d);
    }
    pthread_mutex_lock(&serve_g.mu);
    serve_g.stopping = 1;
    for (job *j = serve_g.jobs; j; j = j->next) j->cancel = 1, atomic_store(&j->stop, 1);
    pthread_cond_broadcast(&serve_g.cv);
    pthread_mutex_unlock(&serve_g.mu);
    pthread_join(wt, NULL);
    /* the answers already decided (a waiting generation's 503, an event stream's last
     * event) go out before the connections are closed; a client that stalls is not waited
     * for more than 2 s */
    pthread_mutex_lock(&serve_g.mu);
    for (double until = t2i_now() + 2.0; serve_g.inflight > 0 && t2i_now() < until;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&serve_g.cv, &serve_g.mu, &ts);
    }
    pthread_mutex_unlock(&serve_g.mu);
    if (d) MHD_stop_daemon(d);
    serve_conn_watch_stop();
    for (job *j = serve_g.jobs, *next; j; j = next) {
        next = j->next;
        serve_job_free(j);
    }
    serve_g.jobs = NULL;
    pthread_mutex_destroy(&serve_g.mu);
    pthread_cond_destroy(&serve_g.cv);
    gen_pipeline_free(pl);
    free(clip_files);
    return rc ? 1 : 0;
}

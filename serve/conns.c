/* conns.c - `t2i serve`'s connection watchdog: a client that takes longer than --timeout
 * to send a request's headers is cut off.
 *
 * libmicrohttpd's own timeout (MHD_OPTION_CONNECTION_TIMEOUT) counts idle time only, so a
 * client that sends one byte a second would hold its connection (and its thread) for ever,
 * and 128 such clients would lock everyone out. Each connection gets a record here
 * (MHD_OPTION_NOTIFY_CONNECTION): the time its current request began, and whether its
 * headers are in (the access handler has been called). A thread looks every 250 ms and
 * shuts down the socket of a connection whose headers have taken longer than --timeout;
 * libmicrohttpd then reads the end of the stream and closes it as usual. A request whose
 * headers are in is not the watchdog's business: a slow body gets 408 from the routes, and
 * a waiting generation or an event stream may take as long as it needs.
 *
 * Safety: libmicrohttpd notifies the close of a connection before it closes the socket,
 * and the record is unlinked under the same mutex as the watchdog's shutdown, so the
 * watchdog never touches a descriptor that is closed or reused. shutdown() does not free
 * the descriptor; the connection's own thread still owns it.
 */
#include "server_state.h"

#include <stdlib.h>
#include <sys/socket.h>

#include "base.h"

typedef struct sock_rec sock_rec;
struct sock_rec {
    sock_rec *prev, *next;
    int fd;
    double since;   /* when the current request (its first header byte, or idleness) began */
    int in_request; /* headers in: the access handler has the request */
    int cut;        /* shut down once */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sock_rec *head;
    double timeout;
    int stopping;
    unsigned long cut_total;
    pthread_t thread;
} W = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, 0};

void serve_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode code) {
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        sock_rec *r = t2i_calloc(1, sizeof *r);
        r->fd = i ? i->connect_fd : -1;
        r->since = t2i_now();
        pthread_mutex_lock(&W.mu);
        r->next = W.head;
        if (W.head) W.head->prev = r;
        W.head = r;
        pthread_mutex_unlock(&W.mu);
        *socket_context = r;
        return;
    }
    sock_rec *r = *socket_context;
    if (!r) return;
    pthread_mutex_lock(&W.mu);
    if (r->prev) r->prev->next = r->next;
    else W.head = r->next;
    if (r->next) r->next->prev = r->prev;
    pthread_mutex_unlock(&W.mu);
    free(r);
    *socket_context = NULL;
}

void serve_conn_mark(struct MHD_Connection *c, int in_request) {
    const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    sock_rec *r = i ? i->socket_context : NULL;
    if (!r) return;
    pthread_mutex_lock(&W.mu);
    r->in_request = in_request;
    r->since = t2i_now();
    pthread_mutex_unlock(&W.mu);
}

static void *watch(void *arg) {
    (void)arg;
    pthread_mutex_lock(&W.mu);
    while (!W.stopping) {
        double now = t2i_now();
        for (sock_rec *r = W.head; r; r = r->next)
            if (!r->in_request && !r->cut && r->fd >= 0 && now - r->since > W.timeout) {
                shutdown(r->fd, SHUT_RDWR);
                r->cut = 1;
                W.cut_total++;
            }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&W.cv, &W.mu, &ts);
    }
    pthread_mutex_unlock(&W.mu);
    return NULL;
}

void serve_conn_watch_start(double timeout) {
    W.timeout = timeout;
    W.stopping = 0;
    pthread_create(&W.thread, NULL, watch, NULL);
}

void serve_conn_watch_stop(void) {
    pthread_mutex_lock(&W.mu);
    W.stopping = 1;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
    pthread_join(W.thread, NULL);
}

unsigned long serve_conn_cut_total(void) {
    pthread_mutex_lock(&W.mu);
    unsigned long n = W.cut_total;
    pthread_mutex_unlock(&W.mu);
    return n;
}

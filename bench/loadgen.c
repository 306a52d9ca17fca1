/*
 * loadgen: an epoll SSE load generator for the eventgate benchmark (bench/run.py drives it).
 *
 * One process, one thread, level-triggered epoll. It opens --conns connections to a loopback
 * server, sends `GET <path>` (path i % n of --paths; a Last-Event-ID header on reconnects),
 * reads every frame (plain or chunked bodies), and for each event whose data holds
 * `"ts":<publish time, CLOCK_REALTIME microseconds>` records the publish->receive latency.
 * Data may also hold `"s":<per-channel sequence number>`: each connection checks that it sees
 * every number once, in order (gaps, duplicates), across reconnects too.
 *
 * With --reconnect a closed connection comes back like an EventSource: after the server's
 * `retry:` delay, with `Last-Event-ID: <last id it dispatched>`.
 *
 * With --sources N connection i binds to the loopback address --source-base + i % N before it
 * connects: one source address reaches one server port from ~28k ephemeral ports only, and a
 * server's per-address limits see N clients.
 *
 * Control: one command per line on stdin; each answers one JSON line on stdout.
 *   open N  open connections up to N (--start N opens that many at once; default all)
 *   stats   counters of the connections (how many open, answered, got an event, ...)
 *   reset   start a measurement window (latency histogram, gaps, duplicates, counts)
 *   report  the window so far, with latency percentiles
 *   arm     forget drop/resume times (before a planned server kill)
 *   drop N  cut the next N streams (in turn over all connections), as a lost network would:
 *           with --reconnect they come back with their Last-Event-ID (churn)
 *   close   close every connection (RST, so no TIME_WAIT piles up) and stop reconnecting
 *   quit    exit
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINE_CAP 400
#define ID_CAP 96
#define BUCKET_US 10
#define NBUCKETS 1000000 /* 10 s at 10 us */
#define STDIN_TAG 0xffffffffu

enum { S_IDLE, S_CONNECTING, S_HEAD, S_BODY, S_WAIT, S_DONE };
enum { CH_SIZE, CH_EXT, CH_DATA, CH_DATA_END, CH_END };

typedef struct {
    int fd;
    uint8_t state, chunked, chunk_state, in_window, status_ok, ev_data, ev_id, ev_lost;
    uint8_t resuming, ever_event;
    uint16_t llen;
    uint32_t chunk_left;
    uint32_t retry_ms;
    int64_t ev_ts, ev_seq;
    int64_t last_seq;
    uint64_t events;
    uint64_t wait_until_us;
    uint64_t window_since_us;
    char ev_id_buf[ID_CAP];
    char last_id[ID_CAP];
    char line[LINE_CAP];
} conn_t;

static conn_t *conns;
static int nconns;
static char **paths;
static int npaths;
static struct sockaddr_in addr;
static uint32_t source_base; /* host order; 0: let the kernel pick (127.0.0.1) */
static int nsources = 0;
static int ep;
static int window = 256;
static int window_on_connect = 0; /* release the window slot once the request is written */
static int reconnect = 0;
static uint32_t default_retry_ms = 3000, max_retry_ms = 30000;
static int inflight = 0;
static int waiting = 0; /* connections waiting to reconnect */
static int next_new = 0; /* connections never started yet: next_new..nconns-1 */
static int target = -1;  /* open connections up to this index (command `open N`) */
static int accepting = 1;

/* totals since start */
static uint64_t t_events, t_bad_status, t_connect_err, t_drops, t_reconnects, t_heartbeats;
/* measurement window */
static uint64_t w_events, w_bytes, w_gaps, w_dups, w_lost, w_lat_n, w_overflow, w_nots;
static uint64_t w_lat_max, w_lat_sum, w_start_us;
static uint32_t *hist;
/* reconnect storm */
static uint64_t first_drop_us, last_resume_us;

static char rbuf[1 << 18];

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void window_leave(conn_t *c) {
    if (c->in_window) {
        c->in_window = 0;
        inflight--;
    }
}

static void conn_close(conn_t *c, int drop) {
    if (c->fd >= 0) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
    }
    window_leave(c);
    c->llen = 0;
    c->ev_data = c->ev_id = c->ev_lost = 0;
    if (drop && reconnect && accepting) {
        uint64_t now = now_us();
        uint32_t delay = c->retry_ms ? c->retry_ms : default_retry_ms;
        if (delay > max_retry_ms) delay = max_retry_ms;
        c->state = S_WAIT;
        waiting++;
        c->wait_until_us = now + (uint64_t)delay * 1000u;
        c->resuming = 1;
        t_drops++;
        if (!first_drop_us) first_drop_us = now;
    } else {
        if (drop) t_drops++;
        c->state = S_DONE;
    }
}

static void conn_start(conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        t_connect_err++;
        c->state = S_DONE;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nsources) {
        /* the port is picked at connect(), per 4-tuple, not per source address */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(source_base + (uint32_t)((c - conns) % nsources));
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            close(fd);
            t_connect_err++;
            c->state = S_DONE;
            return;
        }
    }
    c->fd = fd;
    c->state = S_CONNECTING;
    c->in_window = 1;
    c->window_since_us = now_us();
    inflight++;
    c->chunked = 0;
    c->chunk_state = CH_SIZE;
    c->chunk_left = 0;
    c->status_ok = 0;
    c->llen = 0;
    int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    if (rc < 0 && errno != EINPROGRESS) {
        t_connect_err++;
        conn_close(c, 1);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)(c - conns)};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
}

static void send_request(conn_t *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        t_connect_err++;
        conn_close(c, 1);
        return;
    }
    char req[8192];
    int i = (int)(c - conns);
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n",
                     paths[i % npaths]);
    if (c->last_id[0]) n += snprintf(req + n, sizeof req - n, "Last-Event-ID: %s\r\n", c->last_id);
    n += snprintf(req + n, sizeof req - n, "\r\n");
    ssize_t w = send(c->fd, req, (size_t)n, MSG_NOSIGNAL);
    if (w != n) { /* a fresh socket takes a few hundred bytes at once; anything else is odd */
        t_connect_err++;
        conn_close(c, 1);
        return;
    }
    if (c->resuming) t_reconnects++;
    c->state = S_HEAD;
    if (window_on_connect) window_leave(c);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
}

static int64_t number_after(const char *s, size_t n, const char *key) {
    size_t k = strlen(key);
    const char *p = memmem(s, n, key, k);
    if (!p) return -1;
    p += k;
    const char *end = s + n;
    int64_t v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        p++;
        digits++;
    }
    return digits ? v : -1;
}

static void dispatch(conn_t *c, uint64_t now) {
    if (c->ev_id) memcpy(c->last_id, c->ev_id_buf, ID_CAP);
    if (!c->ev_data) goto reset;
    c->events++;
    t_events++;
    w_events++;
    if (!c->ever_event) c->ever_event = 1;
    if (c->resuming) {
        c->resuming = 0;
        if (now > last_resume_us) last_resume_us = now;
    }
    if (c->ev_lost) {
        w_lost++;
        goto reset;
    }
    if (c->ev_ts > 0) {
        uint64_t lat = now > (uint64_t)c->ev_ts ? now - (uint64_t)c->ev_ts : 0;
        uint64_t b = lat / BUCKET_US;
        if (b >= NBUCKETS) {
            w_overflow++;
        } else {
            hist[b]++;
        }
        w_lat_n++;
        w_lat_sum += lat;
        if (lat > w_lat_max) w_lat_max = lat;
    } else {
        w_nots++;
    }
    if (c->ev_seq >= 0) {
        if (c->last_seq >= 0) {
            if (c->ev_seq == c->last_seq + 1) {
            } else if (c->ev_seq > c->last_seq + 1) {
                w_gaps += (uint64_t)(c->ev_seq - c->last_seq - 1);
            } else {
                w_dups++;
            }
        }
        if (c->ev_seq > c->last_seq) c->last_seq = c->ev_seq;
    }
reset:
    c->ev_data = c->ev_id = c->ev_lost = 0;
    c->ev_ts = c->ev_seq = -1;
}

/* One complete line of the head or the body (without its LF; a CR before it is dropped). */
static int on_line(conn_t *c, char *line, size_t n, uint64_t now) {
    if (n && line[n - 1] == '\r') n--;
    if (c->state == S_HEAD) {
        if (!c->status_ok) {
            if (n >= 12 && memcmp(line, "HTTP/1.", 7) == 0 && memcmp(line + 9, "200", 3) == 0) {
                c->status_ok = 1;
                return 0;
            }
            if (!t_bad_status++) fprintf(stderr, "loadgen: first refusal: %.*s\n", (int)n, line);
            return -1;
        }
        if (n == 0) {
            c->state = S_BODY;
            window_leave(c);
            c->ev_data = c->ev_id = c->ev_lost = 0;
            c->ev_ts = c->ev_seq = -1;
            return 1; /* the body starts: the caller switches to the body decoder */
        }
        if (n > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
            line[n] = 0;
            if (strcasestr(line + 18, "chunked")) c->chunked = 1;
        }
        return 0;
    }
    if (n == 0) {
        dispatch(c, now);
        return 0;
    }
    if (line[0] == ':') {
        t_heartbeats++;
        return 0;
    }
    char *colon = memchr(line, ':', n);
    size_t fl = colon ? (size_t)(colon - line) : n;
    char *v = colon ? colon + 1 : line + n;
    size_t vn = colon ? n - fl - 1 : 0;
    if (vn && *v == ' ') {
        v++;
        vn--;
    }
    if (fl == 4 && memcmp(line, "data", 4) == 0) {
        if (!c->ev_data) {
            c->ev_ts = number_after(v, vn, "\"ts\":");
            c->ev_seq = number_after(v, vn, "\"s\":");
        }
        c->ev_data = 1;
    } else if (fl == 2 && memcmp(line, "id", 2) == 0) {
        if (vn >= ID_CAP) vn = ID_CAP - 1;
        memcpy(c->ev_id_buf, v, vn);
        c->ev_id_buf[vn] = 0;
        c->ev_id = 1;
    } else if (fl == 5 && memcmp(line, "event", 5) == 0) {
        c->ev_lost = (vn >= 14 && memcmp(v, "eventgate.lost", 14) == 0);
    } else if (fl == 5 && memcmp(line, "retry", 5) == 0) {
        uint32_t r = 0;
        for (size_t i = 0; i < vn && v[i] >= '0' && v[i] <= '9'; i++) r = r * 10 + (uint32_t)(v[i] - '0');
        c->retry_ms = r;
    }
    return 0;
}

/* Split bytes into lines (head or SSE body); returns -1 to close the connection. */
static int feed_lines(conn_t *c, const char *p, size_t n, uint64_t now, size_t *used_head) {
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t seg = nl ? (size_t)(nl - (p + i)) : n - i;
        size_t room = LINE_CAP - 1 - c->llen;
        size_t take = seg < room ? seg : room; /* longer lines are cut: we need their start */
        memcpy(c->line + c->llen, p + i, take);
        c->llen += (uint16_t)take;
        i += seg;
        if (!nl) break;
        i++; /* the LF */
        int rc = on_line(c, c->line, c->llen, now);
        c->llen = 0;
        if (rc < 0) return -1;
        if (rc == 1 && used_head) { /* the head ended: the rest goes to the body decoder */
            *used_head = i;
            return 1;
        }
    }
    if (used_head) *used_head = n;
    return 0;
}

static int feed_body(conn_t *c, const char *p, size_t n, uint64_t now) {
    if (!c->chunked) return feed_lines(c, p, n, now, NULL);
    size_t i = 0;
    while (i < n) {
        switch (c->chunk_state) {
        case CH_SIZE: {
            char ch = p[i++];
            if (ch >= '0' && ch <= '9') c->chunk_left = c->chunk_left * 16 + (uint32_t)(ch - '0');
            else if (ch >= 'a' && ch <= 'f') c->chunk_left = c->chunk_left * 16 + (uint32_t)(ch - 'a' + 10);
            else if (ch >= 'A' && ch <= 'F') c->chunk_left = c->chunk_left * 16 + (uint32_t)(ch - 'A' + 10);
            else if (ch == ';') c->chunk_state = CH_EXT;
            else if (ch == '\n') c->chunk_state = c->chunk_left ? CH_DATA : CH_END;
            break;
        }
        case CH_EXT:
            if (p[i++] == '\n') c->chunk_state = c->chunk_left ? CH_DATA : CH_END;
            break;
        case CH_DATA: {
            size_t take = n - i < c->chunk_left ? n - i : c->chunk_left;
            if (feed_lines(c, p + i, take, now, NULL) < 0) return -1;
            i += take;
            c->chunk_left -= (uint32_t)take;
            if (!c->chunk_left) c->chunk_state = CH_DATA_END;
            break;
        }
        case CH_DATA_END:
            if (p[i++] == '\n') {
                c->chunk_state = CH_SIZE;
                c->chunk_left = 0;
            }
            break;
        case CH_END:
            return -1; /* the server ended the body */
        }
    }
    return 0;
}

static void on_readable(conn_t *c) {
    ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        conn_close(c, 1);
        return;
    }
    if (r == 0) {
        conn_close(c, 1);
        return;
    }
    uint64_t now = now_us();
    w_bytes += (uint64_t)r;
    size_t off = 0;
    if (c->state == S_HEAD) {
        size_t used = 0;
        int rc = feed_lines(c, rbuf, (size_t)r, now, &used);
        if (rc < 0) {
            conn_close(c, 1);
            return;
        }
        if (rc == 0) return;
        off = used;
    }
    if (off < (size_t)r && feed_body(c, rbuf + off, (size_t)r - off, now) < 0) conn_close(c, 1);
}

static void start_more(uint64_t now) {
    if (!accepting) return;
    /* A slot held only because the server answers late (flask-sse sends its head with the
       first event) is released after 200 ms so that such servers still get every connection. */
    if (inflight >= window) {
        for (int i = 0; i < nconns && inflight >= window; i++) {
            conn_t *c = &conns[i];
            if (c->in_window && c->state == S_HEAD && now - c->window_since_us > 200000) window_leave(c);
        }
    }
    while (inflight < window && next_new < target) conn_start(&conns[next_new++]);
    if (!reconnect || !waiting) return;
    for (int i = 0; i < nconns && inflight < window; i++) {
        conn_t *c = &conns[i];
        if (c->state == S_WAIT && c->wait_until_us <= now) {
            waiting--;
            conn_start(c);
        }
    }
}

static double pct(double q) {
    if (!w_lat_n) return 0;
    uint64_t want = (uint64_t)(q * (double)w_lat_n);
    if (want >= w_lat_n) want = w_lat_n - 1;
    uint64_t seen = 0;
    for (int b = 0; b < NBUCKETS; b++) {
        seen += hist[b];
        if (seen > want) return (b + 0.5) * BUCKET_US / 1000.0;
    }
    return w_lat_max / 1000.0;
}

static void cmd_stats(void) {
    int counts[6] = {0};
    int with_events = 0, answered = 0, no_seq = 0;
    for (int i = 0; i < nconns; i++) {
        counts[conns[i].state]++;
        if (conns[i].ever_event) with_events++;
        if (conns[i].status_ok) answered++;
        if (conns[i].last_seq < 0) no_seq++;
    }
    printf("{\"conns\":%d,\"unstarted\":%d,\"connecting\":%d,\"head\":%d,\"body\":%d,\"waiting\":%d,"
           "\"done\":%d,\"answered\":%d,\"with_events\":%d,\"no_seq\":%d,\"inflight\":%d,"
           "\"events\":%lu,\"bad_status\":%lu,\"connect_errors\":%lu,\"drops\":%lu,"
           "\"reconnects\":%lu,\"heartbeats\":%lu}\n",
           nconns, target - next_new, counts[S_CONNECTING],
           counts[S_HEAD], counts[S_BODY], counts[S_WAIT], counts[S_DONE], answered, with_events,
           no_seq, inflight, t_events, t_bad_status, t_connect_err, t_drops, t_reconnects,
           t_heartbeats);
}

static void cmd_report(void) {
    int64_t min_seq = -1, max_seq = -1;
    int resuming = 0;
    for (int i = 0; i < nconns; i++) {
        int64_t s = conns[i].last_seq;
        if (s >= 0 && (min_seq < 0 || s < min_seq)) min_seq = s;
        if (s > max_seq) max_seq = s;
        if (conns[i].resuming) resuming++;
    }
    uint64_t now = now_us();
    printf("{\"elapsed_s\":%.3f,\"events\":%lu,\"bytes\":%lu,\"gaps\":%lu,\"dups\":%lu,\"lost\":%lu,"
           "\"no_ts\":%lu,\"lat_n\":%lu,\"lat_overflow\":%lu,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f,"
           "\"min_last_seq\":%ld,\"max_last_seq\":%ld,\"resuming\":%d,"
           "\"first_drop_us\":%lu,\"last_resume_us\":%lu,\"drops\":%lu,\"reconnects\":%lu}\n",
           (now - w_start_us) / 1e6, w_events, w_bytes, w_gaps, w_dups, w_lost, w_nots, w_lat_n,
           w_overflow, pct(0.50), pct(0.90), pct(0.99), pct(0.999), w_lat_max / 1000.0,
           w_lat_n ? (double)w_lat_sum / (double)w_lat_n / 1000.0 : 0.0, min_seq, max_seq,
           resuming, first_drop_us, last_resume_us, t_drops, t_reconnects);
}

static void cmd_reset(void) {
    memset(hist, 0, sizeof(uint32_t) * NBUCKETS);
    w_events = w_bytes = w_gaps = w_dups = w_lost = w_lat_n = w_overflow = w_nots = 0;
    w_lat_max = w_lat_sum = 0;
    w_start_us = now_us();
    printf("{\"ok\":true}\n");
}

static int on_stdin(void) {
    static char cbuf[4096];
    static size_t clen = 0;
    ssize_t r = read(0, cbuf + clen, sizeof cbuf - 1 - clen);
    if (r <= 0) return -1; /* the driver went away: exit */
    clen += (size_t)r;
    char *nl;
    while ((nl = memchr(cbuf, '\n', clen))) {
        *nl = 0;
        char *cmd = cbuf;
        if (!strcmp(cmd, "stats")) cmd_stats();
        else if (!strcmp(cmd, "reset")) cmd_reset();
        else if (!strcmp(cmd, "report")) cmd_report();
        else if (!strncmp(cmd, "open ", 5)) {
            target = atoi(cmd + 5);
            if (target > nconns) target = nconns;
            printf("{\"ok\":true,\"target\":%d}\n", target);
        } else if (!strncmp(cmd, "drop ", 5)) {
            static int next_drop = 0;
            int want = atoi(cmd + 5), dropped = 0;
            for (int k = 0; k < nconns && dropped < want; k++) {
                conn_t *c = &conns[next_drop];
                next_drop = (next_drop + 1) % nconns;
                if (c->state == S_BODY) {
                    conn_close(c, 1);
                    dropped++;
                }
            }
            printf("{\"ok\":true,\"dropped\":%d}\n", dropped);
        } else if (!strcmp(cmd, "arm")) {
            first_drop_us = last_resume_us = 0;
            printf("{\"ok\":true}\n");
        } else if (!strcmp(cmd, "close")) {
            accepting = 0;
            for (int i = 0; i < nconns; i++) conn_close(&conns[i], 0);
            waiting = 0;
            printf("{\"ok\":true}\n");
        } else if (!strcmp(cmd, "quit")) {
            return -1;
        } else {
            printf("{\"error\":\"unknown command\"}\n");
        }
        fflush(stdout);
        size_t used = (size_t)(nl - cbuf) + 1;
        memmove(cbuf, cbuf + used, clen - used);
        clen -= used;
    }
    return 0;
}

static void load_paths(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) die(file);
    size_t cap = 1024;
    paths = malloc(cap * sizeof *paths);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    while ((n = getline(&line, &lcap, f)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (!n) continue;
        if ((size_t)npaths == cap) paths = realloc(paths, (cap *= 2) * sizeof *paths);
        paths[npaths++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (!npaths) {
        fprintf(stderr, "loadgen: no paths in %s\n", file);
        exit(2);
    }
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *pathfile = NULL;
    int port = 0;
    static struct option opts[] = {
        {"host", 1, 0, 'h'},      {"port", 1, 0, 'p'},     {"paths", 1, 0, 'P'},
        {"conns", 1, 0, 'n'},     {"window", 1, 0, 'w'},   {"window-on-connect", 0, 0, 'W'},
        {"reconnect", 0, 0, 'r'}, {"retry-ms", 1, 0, 'R'}, {"max-retry-ms", 1, 0, 'M'},
        {"start", 1, 0, 's'},     {"sources", 1, 0, 'S'},  {"source-base", 1, 0, 'B'},
        {0, 0, 0, 0}};
    const char *source = "127.2.0.1";
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'P': pathfile = optarg; break;
        case 'n': nconns = atoi(optarg); break;
        case 'w': window = atoi(optarg); break;
        case 'W': window_on_connect = 1; break;
        case 'r': reconnect = 1; break;
        case 'R': default_retry_ms = (uint32_t)atoi(optarg); break;
        case 'M': max_retry_ms = (uint32_t)atoi(optarg); break;
        case 's': target = atoi(optarg); break;
        case 'S': nsources = atoi(optarg); break;
        case 'B': source = optarg; break;
        default: fprintf(stderr, "loadgen: bad option\n"); return 2;
        }
    }
    if (!port || !pathfile || nconns <= 0) {
        fprintf(stderr, "usage: loadgen --port P --paths FILE --conns N [--window N] "
                        "[--window-on-connect] [--reconnect] [--retry-ms N] [--max-retry-ms N] [--start N] "
                        "[--sources N] [--source-base 127.A.B.C]\n");
        return 2;
    }
    if (strncmp(host, "127.", 4) != 0) {
        fprintf(stderr, "loadgen: loopback addresses only\n");
        return 2;
    }
    if (nsources) {
        struct in_addr a;
        if (strncmp(source, "127.", 4) != 0 || inet_pton(AF_INET, source, &a) != 1) {
            fprintf(stderr, "loadgen: --source-base must be a loopback address\n");
            return 2;
        }
        source_base = ntohl(a.s_addr);
        if (((source_base + (uint32_t)nsources - 1) >> 24) != 127) {
            fprintf(stderr, "loadgen: --sources would leave 127.0.0.0/8\n");
            return 2;
        }
    }
    if (target < 0 || target > nconns) target = nconns;
    load_paths(pathfile);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) die("inet_pton");
    conns = calloc((size_t)nconns, sizeof *conns);
    hist = calloc(NBUCKETS, sizeof *hist);
    if (!conns || !hist) die("calloc");
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].last_seq = -1;
        conns[i].ev_ts = conns[i].ev_seq = -1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev) < 0) die("epoll_ctl stdin");
    w_start_us = now_us();
    static struct epoll_event evs[4096];
    for (;;) {
        uint64_t now = now_us();
        start_more(now);
        int busy = (next_new < target) || inflight > 0 || waiting > 0;
        int n = epoll_wait(ep, evs, 4096, busy ? 5 : 20);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            uint32_t tag = evs[k].data.u32;
            if (tag == STDIN_TAG) {
                if (on_stdin() < 0) return 0;
                continue;
            }
            conn_t *c = &conns[tag];
            if (c->fd < 0) continue;
            if (c->state == S_CONNECTING) {
                if (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) send_request(c);
                continue;
            }
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) on_readable(c);
        }
    }
}

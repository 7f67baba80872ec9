/*
 * The connect-and-copy half of `mode: tcp`, in one native thread per process.
 *
 * Why this is written by hand: once a `mode: tcp` client has been given a server, all that
 * is left is connecting and copying bytes both ways, and in Node every copied chunk costs a
 * buffer allocation, a trip through the stream machinery and a JS callback, and every
 * upstream connection a net.Socket with its two streams. Measured here under smtp-source, a
 * bare `socket.pipe` proxy spends about twice HAProxy's CPU per message, which on a 2-core
 * machine caps it at ~0.65-0.75x HAProxy's throughput. No npm package relays file
 * descriptors natively, so this one does it the way HAProxy and nginx do: non-blocking
 * connect, edge-triggered epoll, one 16 KB read buffer per thread (a pair holds memory only
 * for bytes its peer cannot take yet), half-close passed through,
 * idle timeouts swept once a second. Every decision (which server, retries, PROXY headers,
 * metrics, logs) stays in TypeScript: JS hands over a duplicate of the accepted client's
 * descriptor with the server's address, and is told when the server connection is up or
 * failed and when the pair has ended.
 *
 * API (N-API, so it loads on any Node >= 20 without rebuilding for the ABI):
 *   start(onEvent)      onEvent(id, event, a, b, detail)
 *   connect(id, clientFd, ip, port, localIp, connectTimeoutMs, clientTimeoutMs,
 *           serverTimeoutMs, toServer?)            false when ip/localIp is not an IP literal
 *   add(id, clientFd, serverFd, clientTimeoutMs, serverTimeoutMs, toServer?, toClient?)
 *                       relay a server connection JS made itself (a server named by host name)
 *   abort(id)           tear the pair down now (event "aborted")
 * toServer / toClient: Buffers passed on before the sockets' own bytes (a PROXY header, bytes
 * JS had already read).
 * events: "connected" (a = connect time in microseconds), "connect_failed" (detail = errno
 * name, or "timeout"; the client descriptor stays JS's to use again), and the endings, with
 * a/b = bytes to the server/client: "closed" (the server closed, or both sides did; cleanly), "client_error",
 * "server_error", "client_timeout", "server_timeout", "aborted".
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ 16384
#define MAX_EVENTS 256
#define CONNECT_SWEEP_MS 20

enum { CLIENT = 0, SERVER = 1 };
enum event { E_CLOSED, E_CLIENT_ERROR, E_SERVER_ERROR, E_CLIENT_TIMEOUT, E_SERVER_TIMEOUT, E_ABORTED, E_CONNECTED, E_CONNECT_FAILED };
static const char *event_names[] = {"closed", "client_error", "server_error", "client_timeout", "server_timeout", "aborted", "connected", "connect_failed"};

typedef struct relay relay_t;

/* One side's epoll registration points back to its pair. */
typedef struct {
  relay_t *r;
  int side;
} tag_t;

/* Bytes read from side `src` waiting to be written to the other side. */
typedef struct {
  char *buf; /* bytes the other side could not take yet; NULL when none */
  size_t off, len;
  int rblocked; /* the last read drained the socket: wait for EPOLLIN */
  int wblocked; /* the other side's send buffer is full: wait for EPOLLOUT */
  int rdhup;    /* epoll saw src's FIN arrive: read until recv says so, no more edges come */
  int eof;      /* src sent FIN */
  int shut;     /* FIN passed on to the other side */
  uint64_t bytes;
} flow_t;

struct relay {
  uint32_t id;
  int fd[2];
  tag_t tag[2];
  flow_t flow[2]; /* flow[CLIENT]: client -> server; flow[SERVER]: server -> client */
  int64_t last[2];
  int64_t timeout[2];
  /* Set while the relay thread connects to the server. */
  int connecting;
  int64_t connect_timeout, connect_deadline;
  struct timespec connect_started;
  struct sockaddr_storage addr, local;
  socklen_t addr_len, local_len;
  int dead;
  relay_t *prev, *next;
};

enum { CMD_CONNECT, CMD_ADD, CMD_ABORT };
typedef struct cmd {
  int kind;
  relay_t *r;
  uint32_t id;
  struct cmd *next;
} cmd_t;

typedef struct {
  uint32_t id;
  int event;
  double a, b;
  char detail[32];
} report_t;

static int ep = -1, wake_fd = -1;
static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static cmd_t *pending = NULL;
static napi_threadsafe_function on_event;
/* Owned by the relay thread. */
static relay_t *live = NULL;
static int connecting_count = 0;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void report(uint32_t id, int event, double a, double b, const char *detail) {
  report_t *m = malloc(sizeof *m);
  if (!m) return;
  m->id = id;
  m->event = event;
  m->a = a;
  m->b = b;
  m->detail[0] = 0;
  if (detail) {
    strncpy(m->detail, detail, sizeof m->detail - 1);
    m->detail[sizeof m->detail - 1] = 0;
  }
  napi_call_threadsafe_function(on_event, m, napi_tsfn_nonblocking);
}

static void unlink_live(relay_t *r) {
  if (r->prev) r->prev->next = r->next; else live = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  if (r->connecting) connecting_count--;
}

/* Close the pair's sockets and tell JS; the relay is freed after the event batch, since
 * later events of the batch may still point at it. */
static void retire(relay_t *r, int event, const char *detail, relay_t **graveyard) {
  if (r->dead) return;
  r->dead = 1;
  for (int s = 0; s < 2; s++) {
    if (r->fd[s] < 0) continue;
    epoll_ctl(ep, EPOLL_CTL_DEL, r->fd[s], NULL);
    close(r->fd[s]);
  }
  unlink_live(r);
  report(r->id, event, (double)r->flow[CLIENT].bytes, (double)r->flow[SERVER].bytes, detail);
  r->next = *graveyard;
  *graveyard = r;
}

static void finish(relay_t *r, int event, relay_t **graveyard) {
  retire(r, event, NULL, graveyard);
}

/* The client's descriptor closed here is our duplicate: JS keeps the client, to try again. */
static void fail_connect(relay_t *r, int err, relay_t **graveyard) {
  const char *name = err == ETIMEDOUT ? "timeout" : strerrorname_np(err);
  retire(r, E_CONNECT_FAILED, name ? name : "error", graveyard);
}

/* Bytes are read into one buffer of the thread and sent on at once; only what the other
 * side's socket cannot take yet is copied to the flow, so an idle pair holds no buffer. */
static char scratch[BUFSZ];

static int keep(flow_t *f, const char *data, size_t n) {
  f->buf = malloc(n);
  if (!f->buf) return 0;
  memcpy(f->buf, data, n);
  f->off = 0;
  f->len = n;
  return 1;
}

/* Move bytes of one flow until it blocks; 0 while the pair is alive. */
static int pump(relay_t *r, int src, int64_t now, relay_t **graveyard) {
  flow_t *f = &r->flow[src];
  int dst = 1 - src;
  int dst_error = dst == CLIENT ? E_CLIENT_ERROR : E_SERVER_ERROR;
  for (;;) {
    if (f->len > 0) {
      /* Left over from a partial send (or a prefix): it goes first, and nothing is read
       * from src meanwhile, which is the backpressure. */
      if (f->wblocked) return 0;
      ssize_t w = send(r->fd[dst], f->buf + f->off, f->len, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        finish(r, dst_error, graveyard);
        return 1;
      }
      if (w > 0) {
        f->off += (size_t)w;
        f->len -= (size_t)w;
        r->last[dst] = now;
      }
      if (f->len > 0) {
        f->wblocked = 1;
        return 0;
      }
      free(f->buf);
      f->buf = NULL;
      continue;
    }
    if (!f->eof) {
      if (f->rblocked) return 0;
      ssize_t n = recv(r->fd[src], scratch, sizeof scratch, 0);
      if (n > 0) {
        f->bytes += (uint64_t)n;
        r->last[src] = now;
        /* A short read drained the socket and the next arrival raises a new edge; but a FIN
         * that came with this data raises none, so then read on until recv returns 0. */
        if ((size_t)n < sizeof scratch && !f->rdhup) f->rblocked = 1;
        ssize_t w = f->wblocked ? 0 : send(r->fd[dst], scratch, (size_t)n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) w = 0;
        if (w < 0) {
          finish(r, dst_error, graveyard);
          return 1;
        }
        if (w > 0) r->last[dst] = now;
        if (w < n) {
          if (!keep(f, scratch + w, (size_t)(n - w))) {
            finish(r, dst_error, graveyard);
            return 1;
          }
          f->wblocked = 1;
          return 0;
        }
        continue;
      }
      if (n == 0) {
        f->eof = 1;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        f->rblocked = 1;
        return 0;
      } else if (errno == EINTR) {
        continue;
      } else {
        finish(r, src == CLIENT ? E_CLIENT_ERROR : E_SERVER_ERROR, graveyard);
        return 1;
      }
    }
    if (f->len == 0 && f->eof) {
      if (!f->shut) {
        f->shut = 1;
        shutdown(r->fd[dst], SHUT_WR);
        /* An SMTP session is over when the server closes: once its last bytes and its FIN
         * are passed on, the pair ends and frees the server's slot, without waiting for the
         * client to close its half. A client that closes first still gets the server's 221. */
        if (src == SERVER || r->flow[dst].shut) {
          finish(r, E_CLOSED, graveyard);
          return 1;
        }
      }
      return 0;
    }
    if (f->rblocked) return 0;
  }
}

static int watch(relay_t *r, int side) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &r->tag[side]};
  return epoll_ctl(ep, EPOLL_CTL_ADD, r->fd[side], &ev);
}

/* Both sockets connected: watch the client too and move what is already waiting. */
static void begin(relay_t *r, int64_t now, relay_t **graveyard) {
  r->last[CLIENT] = r->last[SERVER] = now;
  if (watch(r, CLIENT) < 0) {
    finish(r, E_CLIENT_ERROR, graveyard);
    return;
  }
  if (!pump(r, SERVER, now, graveyard)) pump(r, CLIENT, now, graveyard);
}

static void connected(relay_t *r, int64_t now, relay_t **graveyard) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  double us = (double)(t.tv_sec - r->connect_started.tv_sec) * 1e6 + (double)(t.tv_nsec - r->connect_started.tv_nsec) / 1e3;
  r->connecting = 0;
  connecting_count--;
  report(r->id, E_CONNECTED, us, 0, NULL);
  begin(r, now, graveyard);
}

static void start_connect(relay_t *r, int64_t now, relay_t **graveyard) {
  clock_gettime(CLOCK_MONOTONIC, &r->connect_started);
  int fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  r->fd[SERVER] = fd;
  if (fd < 0) {
    fail_connect(r, errno, graveyard);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (r->local_len && bind(fd, (struct sockaddr *)&r->local, r->local_len) < 0) {
    fail_connect(r, errno, graveyard);
    return;
  }
  r->connecting = 1;
  connecting_count++;
  r->connect_deadline = now + r->connect_timeout;
  if (connect(fd, (struct sockaddr *)&r->addr, r->addr_len) < 0 && errno != EINPROGRESS) {
    fail_connect(r, errno, graveyard);
    return;
  }
  /* Done or in progress: EPOLLOUT (or an error) comes either way. */
  if (watch(r, SERVER) < 0) fail_connect(r, errno, graveyard);
}

static void handle(tag_t *t, uint32_t events, int64_t now, relay_t **graveyard) {
  relay_t *r = t->r;
  if (r->dead) return;
  int side = t->side;
  if (r->connecting) {
    if (side != SERVER || !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(r->fd[SERVER], SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err) {
      fail_connect(r, err, graveyard);
      return;
    }
    /* A server that greets and closes at once: its FIN may be in this very event. */
    if (events & (EPOLLRDHUP | EPOLLHUP)) r->flow[SERVER].rdhup = 1;
    connected(r, now, graveyard);
    return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) r->flow[side].rblocked = 0;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) r->flow[side].rdhup = 1;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) r->flow[1 - side].wblocked = 0;
  if (pump(r, side, now, graveyard)) return;
  if (pump(r, 1 - side, now, graveyard)) return;
  /* An error the pumps did not trip over (a reset while nothing was pending). */
  if (events & EPOLLERR) finish(r, side == CLIENT ? E_CLIENT_ERROR : E_SERVER_ERROR, graveyard);
}

static void track(relay_t *r) {
  r->prev = NULL;
  r->next = live;
  if (live) live->prev = r;
  live = r;
}

static void take_commands(int64_t now, relay_t **graveyard) {
  uint64_t v;
  if (read(wake_fd, &v, sizeof v) < 0) { /* nothing to drain */ }
  pthread_mutex_lock(&lock);
  cmd_t *c = pending;
  pending = NULL;
  pthread_mutex_unlock(&lock);
  /* Pushed newest first. An abort must not overtake the pair it names: starts go first. */
  for (cmd_t *x = c; x; x = x->next) {
    if (x->kind == CMD_ABORT) continue;
    relay_t *r = x->r;
    track(r);
    if (x->kind == CMD_CONNECT) start_connect(r, now, graveyard);
    else if (watch(r, SERVER) < 0) finish(r, E_SERVER_ERROR, graveyard);
    else begin(r, now, graveyard);
  }
  while (c) {
    cmd_t *next = c->next;
    if (c->kind == CMD_ABORT) {
      for (relay_t *r = live; r; r = r->next)
        if (r->id == c->id) {
          finish(r, E_ABORTED, graveyard);
          break;
        }
    }
    free(c);
    c = next;
  }
}

static void free_relay(relay_t *r) {
  free(r->flow[0].buf);
  free(r->flow[1].buf);
  free(r);
}

static void sweep(int64_t now, int idle_too, relay_t **graveyard) {
  relay_t *r = live;
  while (r) {
    relay_t *next = r->next;
    if (r->connecting) {
      if (now >= r->connect_deadline) fail_connect(r, ETIMEDOUT, graveyard);
    } else if (idle_too) {
      if (r->timeout[CLIENT] > 0 && now - r->last[CLIENT] > r->timeout[CLIENT]) finish(r, E_CLIENT_TIMEOUT, graveyard);
      else if (r->timeout[SERVER] > 0 && now - r->last[SERVER] > r->timeout[SERVER]) finish(r, E_SERVER_TIMEOUT, graveyard);
    }
    r = next;
  }
}

static void *loop(void *arg) {
  (void)arg;
  struct epoll_event events[MAX_EVENTS];
  int64_t last_sweep = now_ms(), last_connect_sweep = last_sweep;
  for (;;) {
    int n = epoll_wait(ep, events, MAX_EVENTS, connecting_count > 0 ? CONNECT_SWEEP_MS : 1000);
    int64_t now = now_ms();
    relay_t *graveyard = NULL;
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr == NULL) take_commands(now, &graveyard);
      else handle(events[i].data.ptr, events[i].events, now, &graveyard);
    }
    int idle_too = now - last_sweep >= 1000;
    if (idle_too || (connecting_count > 0 && now - last_connect_sweep >= CONNECT_SWEEP_MS)) {
      sweep(now, idle_too, &graveyard);
      last_connect_sweep = now;
      if (idle_too) last_sweep = now;
    }
    while (graveyard) {
      relay_t *next = graveyard->next;
      free_relay(graveyard);
      graveyard = next;
    }
  }
  return NULL;
}

static void push(cmd_t *c) {
  pthread_mutex_lock(&lock);
  int was_empty = pending == NULL;
  c->next = pending;
  pending = c;
  pthread_mutex_unlock(&lock);
  /* One wake-up per batch: the thread takes the whole list when it wakes. */
  uint64_t one = 1;
  if (was_empty && write(wake_fd, &one, sizeof one) < 0) { /* saturated: already awake */ }
}

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  report_t *m = data;
  if (env && cb) {
    napi_value args[5], undefined;
    napi_create_uint32(env, m->id, &args[0]);
    napi_create_string_utf8(env, event_names[m->event], NAPI_AUTO_LENGTH, &args[1]);
    napi_create_double(env, m->a, &args[2]);
    napi_create_double(env, m->b, &args[3]);
    napi_create_string_utf8(env, m->detail, NAPI_AUTO_LENGTH, &args[4]);
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, cb, 5, args, NULL);
  }
  free(m);
}

#define CHECK(call)                                   \
  do {                                                \
    if ((call) != napi_ok) {                          \
      napi_throw_error(env, NULL, #call " failed");   \
      return NULL;                                    \
    }                                                 \
  } while (0)

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (ep >= 0) {
    napi_throw_error(env, NULL, "relay already started");
    return NULL;
  }
  CHECK(napi_create_string_utf8(env, "smtplb-relay", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &on_event));
  /* The listeners keep the process alive; pairs in flight must not keep it from exiting. */
  CHECK(napi_unref_threadsafe_function(env, on_event));
  ep = epoll_create1(EPOLL_CLOEXEC);
  wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ep < 0 || wake_fd < 0) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, wake_fd, &ev);
  if (pthread_create(&thread, NULL, loop, NULL) != 0) {
    napi_throw_error(env, NULL, "cannot start the relay thread");
    return NULL;
  }
  pthread_detach(thread);
  return NULL;
}

/* A pair with the client's descriptor duplicated (JS keeps its own, paused, and closes it
 * when told the pair ended) and the prefixes copied; NULL with a JS error thrown. */
static relay_t *new_relay(napi_env env, uint32_t id, int cfd, double ct, double st, napi_value *prefixes, size_t nprefixes) {
  void *prefix[2] = {NULL, NULL};
  size_t plen[2] = {0, 0};
  for (size_t s = 0; s < nprefixes && s < 2; s++) {
    bool is_buf = false;
    napi_is_buffer(env, prefixes[s], &is_buf);
    if (is_buf && napi_get_buffer_info(env, prefixes[s], &prefix[s], &plen[s]) != napi_ok) plen[s] = 0;
  }
  relay_t *r = calloc(1, sizeof *r);
  if (!r) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  r->id = id;
  r->timeout[CLIENT] = (int64_t)ct;
  r->timeout[SERVER] = (int64_t)st;
  r->fd[SERVER] = -1;
  for (int s = 0; s < 2; s++) {
    r->tag[s].r = r;
    r->tag[s].side = s;
    if (plen[s] && !keep(&r->flow[s], prefix[s], plen[s])) {
      free_relay(r);
      napi_throw_error(env, NULL, "out of memory");
      return NULL;
    }
  }
  /* A duplicate shares libuv's non-blocking file description: nothing to set. */
  r->fd[CLIENT] = fcntl(cfd, F_DUPFD_CLOEXEC, 0);
  if (r->fd[CLIENT] < 0) {
    int e = errno;
    if (r->fd[CLIENT] >= 0) close(r->fd[CLIENT]);
    free_relay(r);
    napi_throw_error(env, NULL, strerror(e));
    return NULL;
  }
  return r;
}

static int enqueue(napi_env env, int kind, relay_t *r, uint32_t id) {
  cmd_t *c = calloc(1, sizeof *c);
  if (!c) {
    napi_throw_error(env, NULL, "out of memory");
    return 0;
  }
  c->kind = kind;
  c->r = r;
  c->id = id;
  push(c);
  return 1;
}

static void discard(relay_t *r) {
  for (int s = 0; s < 2; s++)
    if (r->fd[s] >= 0) close(r->fd[s]);
  free_relay(r);
}

static int parse_ip(const char *text, uint32_t port, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    *len = sizeof *v4;
    return 1;
  }
  if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    *len = sizeof *v6;
    return 1;
  }
  return 0;
}

static napi_value js_connect(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t id, port;
  int32_t cfd;
  double connect_ms, ct, st;
  char ip[64], local[64];
  size_t n;
  CHECK(napi_get_value_uint32(env, argv[0], &id));
  CHECK(napi_get_value_int32(env, argv[1], &cfd));
  CHECK(napi_get_value_string_utf8(env, argv[2], ip, sizeof ip, &n));
  CHECK(napi_get_value_uint32(env, argv[3], &port));
  CHECK(napi_get_value_string_utf8(env, argv[4], local, sizeof local, &n));
  CHECK(napi_get_value_double(env, argv[5], &connect_ms));
  CHECK(napi_get_value_double(env, argv[6], &ct));
  CHECK(napi_get_value_double(env, argv[7], &st));
  struct sockaddr_storage addr, laddr;
  socklen_t alen = 0, llen = 0;
  int ok = parse_ip(ip, port, &addr, &alen) && (!local[0] || parse_ip(local, 0, &laddr, &llen));
  if (ok) {
    relay_t *r = new_relay(env, id, cfd, ct, st, argc > 8 ? &argv[8] : NULL, argc > 8 ? 1 : 0);
    if (!r) return NULL;
    r->addr = addr;
    r->addr_len = alen;
    if (llen) {
      r->local = laddr;
      r->local_len = llen;
    }
    r->connect_timeout = (int64_t)connect_ms;
    if (!enqueue(env, CMD_CONNECT, r, id)) {
      discard(r);
      return NULL;
    }
  }
  CHECK(napi_get_boolean(env, ok, &result));
  return result;
}

static napi_value js_add(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t id;
  int32_t cfd, sfd;
  double ct, st;
  CHECK(napi_get_value_uint32(env, argv[0], &id));
  CHECK(napi_get_value_int32(env, argv[1], &cfd));
  CHECK(napi_get_value_int32(env, argv[2], &sfd));
  CHECK(napi_get_value_double(env, argv[3], &ct));
  CHECK(napi_get_value_double(env, argv[4], &st));
  relay_t *r = new_relay(env, id, cfd, ct, st, argc > 5 ? &argv[5] : NULL, argc > 5 ? argc - 5 : 0);
  if (!r) return NULL;
  r->fd[SERVER] = fcntl(sfd, F_DUPFD_CLOEXEC, 0);
  if (r->fd[SERVER] < 0) {
    int e = errno;
    discard(r);
    napi_throw_error(env, NULL, strerror(e));
    return NULL;
  }
  if (!enqueue(env, CMD_ADD, r, id)) discard(r);
  return NULL;
}

static napi_value js_abort(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t id;
  CHECK(napi_get_value_uint32(env, argv[0], &id));
  enqueue(env, CMD_ABORT, NULL, id);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_default, NULL},
      {"add", NULL, js_add, NULL, NULL, NULL, napi_default, NULL},
      {"abort", NULL, js_abort, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

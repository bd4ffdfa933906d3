/* tcp-hil's lwIP target: lwIP as a bare-metal firmware would run it, as a Linux process on a TAP.
 *
 * NO_SYS=1 and the raw API, one thread: the loop waits in ppoll() on the TAP and, with --agent,
 * on stdin, with lwIP's next timer deadline (or the agent's pending deadline) as the timeout,
 * feeds every frame to the netif, then runs the due timers. That is the super-loop of an
 * Ethernet MCU with the DMA ring replaced by read()/write() on a TAP and the UART replaced by
 * stdin/stdout, so what the harness measures is lwIP's own behaviour, not a threading port's.
 *
 * Services (level-0 target contract, identical to `hil stack serve`):
 *   echo 7 (RFC 862), discard 9 (RFC 863), chargen 19 (RFC 864; with --chargen-bytes N it
 *   sends N bytes of the pattern and closes, so bulk transfers end by themselves).
 * Each listens once for IPv4 and IPv6 (IPADDR_TYPE_ANY). --echo/--discard/--chargen PORT move a
 * service to another port; PORT 0 turns it off.
 *
 * Agent (level 1, docs/agent.md, with --agent): a line protocol on stdin/stdout that makes the
 * application open, write, read, shut down, close and abort connections on command. It is the
 * reference C implementation for firmware authors: no malloc, a fixed table of handles, one
 * command outstanding, deferred replies completed from the main loop. Without --agent stdin is
 * not read at all.
 *
 * Usage:
 *   lwip-target --tap NAME --mac 02:00:00:00:00:03 --ipv4 10.77.0.3/24
 *               --ipv6 2001:db8:77::3/64 [--chargen-bytes N] [--no-dad] [--mtu 1500] [--seed S]
 *               [--echo PORT] [--discard PORT] [--chargen PORT] [--agent]
 * Prints "ready: ..." on stdout once every IPv6 address has passed DAD (with --agent too: it is
 * console output, not a reply); exits 0 on SIGTERM/SIGINT after printing its frame counters.
 * When stdin reaches end of file the agent stops reading but the program keeps serving.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/if_tun.h>

#include "lwip/def.h"
#include "lwip/etharp.h"
#include "lwip/ethip6.h"
#include "lwip/init.h"
#include "lwip/ip_addr.h"
#include "lwip/memp.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/stats.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "lwip/priv/tcp_priv.h" /* tcp_active_pcbs/tcp_tw_pcbs: the agent checks its pcbs */
#include "netif/ethernet.h"

/* RFC 864: 95 lines of 72 printable characters + CR LF, line i starting at character i. The
 * pattern is stored twice so any run of up to one period starts at a single pointer. */
#define CHARGEN_LINES 95
#define CHARGEN_LINE 72
#define CHARGEN_PERIOD (CHARGEN_LINES * (CHARGEN_LINE + 2))
static char chargen_pattern[2 * CHARGEN_PERIOD];

static struct {
  const char *tap;
  u8_t mac[6];
  int have_v4, have_v6;
  ip4_addr_t v4;
  int v4_prefix;
  ip6_addr_t v6;
  int v6_prefix;
  int chargen_limited;
  unsigned long long chargen_bytes;
  int dad;
  int mtu;
  unsigned seed;
  int port_echo, port_discard, port_chargen; /* 0: service off */
  int agent;
} opt = {.mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x03},
         .dad = 1,
         .mtu = 1500,
         .port_echo = 7,
         .port_discard = 9,
         .port_chargen = 19};

static struct {
  unsigned long rx_frames, tx_frames, rx_no_pbuf, tx_errors, connections;
} counters;

static int tap_fd = -1;
static struct netif tap_netif;
static volatile sig_atomic_t stop_signal;

/* ---- time: lwIP's only system call with NO_SYS=1 ---- */

u32_t sys_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (u32_t)((u64_t)ts.tv_sec * 1000u + (u64_t)ts.tv_nsec / 1000000u);
}

/* ---- the TAP as an Ethernet driver ---- */

static int tap_open(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    perror("lwip-target: open /dev/net/tun");
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    fprintf(stderr, "lwip-target: attach to TAP %s: %s\n", name, strerror(errno));
    close(fd);
    return -1;
  }
  /* A TAP this call created is down; bring it up so frames flow (an existing one keeps the
   * admin state its owner gave it). */
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s >= 0) {
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
      ifr.ifr_flags |= IFF_UP;
      if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        fprintf(stderr, "lwip-target: cannot bring %s up: %s\n", name, strerror(errno));
    }
    close(s);
  }
  return fd;
}

static err_t tap_linkoutput(struct netif *netif, struct pbuf *p) {
  static u8_t frame[0x10000];
  const void *data = p->payload;
  LWIP_UNUSED_ARG(netif);
  if (p->next != NULL) {
    pbuf_copy_partial(p, frame, p->tot_len, 0);
    data = frame;
  }
  if (write(tap_fd, data, p->tot_len) != (ssize_t)p->tot_len) {
    /* A TAP write only fails when the kernel side is down or out of memory: the frame is lost
     * on the wire, which TCP recovers from like any loss. */
    counters.tx_errors++;
    return ERR_OK;
  }
  counters.tx_frames++;
  return ERR_OK;
}

static err_t tap_netif_init(struct netif *netif) {
  netif->name[0] = 't';
  netif->name[1] = 'p';
  netif->hwaddr_len = ETH_HWADDR_LEN;
  memcpy(netif->hwaddr, opt.mac, ETH_HWADDR_LEN);
  netif->mtu = (u16_t)opt.mtu;
  /* NETIF_FLAG_MLD6: without it lwIP never joins the solicited-node groups and ignores Linux's
   * multicast neighbour solicitations. */
  netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET |
                 NETIF_FLAG_IGMP | NETIF_FLAG_MLD6;
  netif->output = etharp_output;
  netif->output_ip6 = ethip6_output;
  netif->linkoutput = tap_linkoutput;
  return ERR_OK;
}

/* Read what the TAP holds, a bounded batch at a time so timers still run under a flood. */
static void tap_drain(void) {
  static u8_t frame[0x10000];
  for (int i = 0; i < 64; i++) {
    ssize_t n = read(tap_fd, frame, sizeof frame);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        perror("lwip-target: read TAP");
      return;
    }
    if (n == 0 || n > 0xFFFF)
      return;
    counters.rx_frames++;
    struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)n, PBUF_POOL);
    if (p == NULL) {
      counters.rx_no_pbuf++; /* the firmware's RX ring overflowed: the frame is dropped */
      continue;
    }
    pbuf_take(p, frame, (u16_t)n);
    if (tap_netif.input(p, &tap_netif) != ERR_OK)
      pbuf_free(p);
  }
}

/* ---- services ---- */

enum kind { ECHO, DISCARD, CHARGEN };

struct conn {
  enum kind kind;
  struct tcp_pcb *pcb;
  struct pbuf *pending; /* echo: received, not yet queued for sending (window held shut) */
  int eof;
  int closing;
  unsigned long long sent; /* chargen */
};

static void install(struct conn *c);

static void conn_free(struct conn *c) {
  if (c->pending != NULL)
    pbuf_free(c->pending);
  free(c);
}

/* Graceful close; lwIP sends what is queued, then FIN. If it has no memory for the FIN now,
 * the poll callback tries again. */
static void conn_close(struct conn *c) {
  struct tcp_pcb *pcb = c->pcb;
  tcp_arg(pcb, NULL);
  tcp_recv(pcb, NULL);
  tcp_sent(pcb, NULL);
  tcp_err(pcb, NULL);
  tcp_poll(pcb, NULL, 0);
  if (tcp_close(pcb) != ERR_OK) {
    c->closing = 1;
    install(c);
    return;
  }
  conn_free(c);
}

/* tcp_recved() takes a u16_t; with window scaling more may be consumed at once. */
static void recved(struct tcp_pcb *pcb, u32_t n) {
  while (n > 0) {
    u16_t step = (u16_t)LWIP_MIN(n, 0xFFFFu);
    tcp_recved(pcb, step);
    n -= step;
  }
}

/* Echo: queue what was received; the receive window opens only by what was queued, so a fast
 * sender is held back by lwIP's window instead of by dropping data. */
static void echo_send(struct conn *c) {
  struct tcp_pcb *pcb = c->pcb;
  u32_t queued = 0;
  while (c->pending != NULL && tcp_sndbuf(pcb) > 0) {
    struct pbuf *q = c->pending;
    u16_t len = (u16_t)LWIP_MIN((u32_t)q->len, (u32_t)tcp_sndbuf(pcb));
    if (len > 0) {
      err_t err = tcp_write(pcb, q->payload, len, TCP_WRITE_FLAG_COPY);
      if (err != ERR_OK)
        break; /* ERR_MEM: retried from the sent or poll callback */
      queued += len;
    }
    if (len == q->len) {
      c->pending = q->next;
      if (q->next != NULL)
        pbuf_ref(q->next);
      pbuf_free(q);
    } else {
      pbuf_remove_header(q, len);
    }
  }
  if (queued > 0) {
    recved(pcb, queued);
    tcp_output(pcb);
  }
  if (c->pending == NULL && c->eof)
    conn_close(c);
}

/* Chargen: fill the send buffer one MSS per write, as send_pump does. A single write of the
 * whole buffer needs that much heap (MEM_SIZE, 1600 B by default) and as many queue entries at
 * once; lwIP refuses it whole (ERR_MEM) when TCP_SND_BUF is raised alone, and chargen would
 * never send. MSS-sized writes stop where the heap or the queue really runs out. */
static void chargen_fill(struct conn *c) {
  struct tcp_pcb *pcb = c->pcb;
  for (;;) {
    if (tcp_sndqueuelen(pcb) >= TCP_SND_QUEUELEN)
      break;
    u32_t len = LWIP_MIN((u32_t)tcp_sndbuf(pcb), (u32_t)tcp_mss(pcb));
    len = LWIP_MIN(len, (u32_t)CHARGEN_PERIOD);
    if (opt.chargen_limited && opt.chargen_bytes - c->sent < len)
      len = (u32_t)(opt.chargen_bytes - c->sent);
    if (len == 0)
      break;
    const char *from = chargen_pattern + c->sent % CHARGEN_PERIOD;
    if (tcp_write(pcb, from, (u16_t)len, TCP_WRITE_FLAG_COPY) != ERR_OK)
      break;
    c->sent += len;
  }
  tcp_output(pcb);
  if (opt.chargen_limited && c->sent >= opt.chargen_bytes)
    conn_close(c);
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
  struct conn *c = arg;
  LWIP_UNUSED_ARG(err);
  if (p == NULL) { /* the peer's FIN */
    c->eof = 1;
    if (c->kind == ECHO)
      echo_send(c);
    else if (c->kind == DISCARD || !opt.chargen_limited)
      conn_close(c);
    return ERR_OK;
  }
  if (c->kind == ECHO) {
    if (c->pending == NULL)
      c->pending = p;
    else
      pbuf_cat(c->pending, p);
    echo_send(c);
    return ERR_OK;
  }
  /* discard, and chargen (RFC 864: received data is thrown away) */
  recved(pcb, p->tot_len);
  pbuf_free(p);
  return ERR_OK;
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len) {
  struct conn *c = arg;
  LWIP_UNUSED_ARG(pcb);
  LWIP_UNUSED_ARG(len);
  if (c->kind == ECHO)
    echo_send(c);
  else if (c->kind == CHARGEN)
    chargen_fill(c);
  return ERR_OK;
}

static err_t on_poll(void *arg, struct tcp_pcb *pcb) {
  struct conn *c = arg;
  LWIP_UNUSED_ARG(pcb);
  if (c->closing)
    conn_close(c);
  else
    on_sent(c, c->pcb, 0);
  return ERR_OK;
}

static void on_err(void *arg, err_t err) {
  LWIP_UNUSED_ARG(err);
  if (arg != NULL)
    conn_free(arg); /* lwIP has freed the pcb already */
}

static void install(struct conn *c) {
  tcp_arg(c->pcb, c);
  tcp_recv(c->pcb, on_recv);
  tcp_sent(c->pcb, on_sent);
  tcp_err(c->pcb, on_err);
  tcp_poll(c->pcb, on_poll, 1);
}

static err_t on_accept(void *arg, struct tcp_pcb *pcb, err_t err) {
  if (err != ERR_OK || pcb == NULL)
    return ERR_VAL;
  struct conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    tcp_abort(pcb);
    return ERR_ABRT;
  }
  c->kind = (enum kind)(uintptr_t)arg;
  c->pcb = pcb;
  install(c);
  counters.connections++;
  if (c->kind == CHARGEN)
    chargen_fill(c);
  return ERR_OK;
}

static int listen_on(int port, enum kind kind) {
  if (port == 0)
    return 0; /* service turned off */
  struct tcp_pcb *pcb = tcp_new_ip_type(IPADDR_TYPE_ANY);
  if (pcb == NULL || tcp_bind(pcb, IP_ANY_TYPE, (u16_t)port) != ERR_OK) {
    fprintf(stderr, "lwip-target: cannot bind TCP port %d\n", port);
    return -1;
  }
  struct tcp_pcb *lpcb = tcp_listen(pcb);
  if (lpcb == NULL) {
    fprintf(stderr, "lwip-target: cannot listen on TCP port %d\n", port);
    return -1;
  }
  tcp_arg(lpcb, (void *)(uintptr_t)kind);
  tcp_accept(lpcb, on_accept);
  return 0;
}

/* ---- the agent (docs/agent.md) ----
 *
 * Everything here runs in the one thread of the main loop: commands from agent_input(), lwIP
 * callbacks from tap_drain()/sys_check_timeouts(), deferred replies from agent_progress(). A
 * firmware would run the same code from its UART interrupt's line buffer. There is no dynamic
 * memory: a fixed table of handles, one pending command, one line buffer, one pattern buffer. */

#define AGENT_MAJOR 1
#define AGENT_LINE_MAX 255 /* bytes per command line, terminator included */
#define AGENT_HANDLES 16
#define AGENT_WORDS 8
#define AGENT_DEFAULT_TIMEOUT_MS 5000u
#define AGENT_MAX_TIMEOUT_MS 86400000u /* a day: far below the 2^31 ms sys_now() wrap */
/* `send` has no TIMEOUT_MS. It ends with `err timeout sent=N` when the stack has taken no byte
 * for this long (the peer stopped reading): without a bound, a client that gave up would leave
 * the agent waiting for ever with stdin unread. Under the client's default 30 s. */
#define AGENT_SEND_STALL_MS 20000u
#define PATTERN_UNIT_MAX 128           /* hex: bytes; a 255-byte line cannot carry more */
#define PATTERN_SPAN 4096              /* most bytes one tcp_write takes from the pattern */

enum handle_kind { H_FREE, H_LISTEN, H_CONN };
/* Why a connection ended, as `status` reports it (error=...). */
enum conn_error { E_NONE, E_RESET, E_TIMEOUT, E_REFUSED };
static const char *const conn_error_name[] = {"none", "reset", "timeout", "refused"};

struct handle {
  enum handle_kind kind;
  u32_t id;            /* the SID/CID the client sees; 0 while queued for `accept` */
  struct tcp_pcb *pcb; /* NULL once lwIP freed it or we handed it back */
  /* connections only */
  struct handle *listener; /* set while queued: accepted by lwIP, not yet by `accept` */
  u32_t queued_seq;        /* accept order among the queued */
  int connecting;          /* `connect` sent the SYN, not yet established */
  ip_addr_t local, remote;
  u16_t lport, rport;
  u64_t sent;     /* bytes handed to the stack by `send` (the seq pattern offset) */
  u64_t received; /* bytes consumed */
  u32_t crc;      /* CRC-32 of the consumed bytes (pre/post-inverted, as zlib.crc32) */
  int eof;        /* the peer's FIN has been consumed */
  int fin_held;   /* the FIN arrived behind held data */
  int wr_shut, rd_shut;
  int reading; /* setopt read: 1 consume, 0 hold */
  struct pbuf *held; /* received while reading == 0: not consumed, window not reopened */
  u32_t held_len;    /* its length (a chain's tot_len is a u16_t; with window scaling more
                      * than 64 KB can be held) */
  enum conn_error error;
};

static struct handle handles[AGENT_HANDLES];
static u32_t next_id = 1;
static u32_t accept_seq;

/* The one outstanding command whose reply waits for the network. */
enum pend_kind { P_NONE, P_ACCEPT, P_CONNECT, P_SEND, P_RECV };
static struct {
  enum pend_kind kind;
  struct handle *h;
  int has_deadline;
  u32_t deadline;
  u64_t want; /* send: bytes to hand over; recv: total to reach */
  u64_t done; /* send: handed over so far */
  u32_t chunk, chunk_left;
  u32_t period; /* pattern period in pattern_buf */
} pend;

/* The send pattern repeated over PATTERN_SPAN + one period, so a write of up to PATTERN_SPAN
 * bytes starting at any stream offset k is the contiguous run at pattern_buf + k % period. */
static u8_t pattern_buf[PATTERN_SPAN + 256];

static char in_buf[AGENT_LINE_MAX];
static size_t in_len;
static int in_discarding; /* inside a too long line: drop up to its newline */
static int in_eof;

static u32_t crc_table[256];

static void crc_init(void) {
  for (u32_t i = 0; i < 256; i++) {
    u32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1; /* IEEE 802.3, reflected */
    crc_table[i] = c;
  }
}

static u32_t crc_update(u32_t crc, const u8_t *data, size_t n) {
  crc = ~crc;
  while (n--)
    crc = crc_table[(crc ^ *data++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

/* ---- replies ---- */

static char reply_buf[1024];
static size_t reply_len;

/* Replies are built in reply_buf and written as one line; text beyond it is cut, never split. */
static void reply_vadd(const char *fmt, va_list ap) {
  int n = vsnprintf(reply_buf + reply_len, sizeof reply_buf - reply_len, fmt, ap);
  if (n > 0)
    reply_len = LWIP_MIN(reply_len + (size_t)n, sizeof reply_buf - 1);
}

static void reply_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply_add(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  reply_vadd(fmt, ap);
  va_end(ap);
}

/* One reply line, flushed at once: the client waits for it. */
static void reply_send(void) {
  fwrite(reply_buf, 1, reply_len, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  reply_len = 0;
}

/* `ok` and its result words. */
static void reply_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply_ok(const char *fmt, ...) {
  va_list ap;
  reply_len = 0;
  reply_add("ok ");
  va_start(ap, fmt);
  reply_vadd(fmt, ap);
  va_end(ap);
  reply_send();
}

static void reply_ok_bare(void) {
  reply_len = 0;
  reply_add("ok");
  reply_send();
}

/* `err CODE TEXT`: CODE from the spec's table, TEXT for people. */
static void reply_err(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply_err(const char *code, const char *fmt, ...) {
  va_list ap;
  reply_len = 0;
  reply_add("err %s ", code);
  va_start(ap, fmt);
  reply_vadd(fmt, ap);
  va_end(ap);
  reply_send();
}

/* Client text echoed in an error, made printable and short so the reply stays one line. */
static const char *printable(const char *text) {
  static char out[40];
  size_t i = 0;
  for (; text[i] != '\0' && i < sizeof out - 1; i++)
    out[i] = isprint((unsigned char)text[i]) ? text[i] : '?';
  out[i] = '\0';
  return out;
}

static void format_addr(const ip_addr_t *addr, char *out, int size) {
  ipaddr_ntoa_r(addr, out, size);
  for (char *c = out; *c; c++) /* RFC 5952 4.3: IPv6 in lower case */
    *c = (char)tolower((unsigned char)*c);
}

/* ---- handles ---- */

static struct handle *handle_new(enum handle_kind kind) {
  for (int i = 0; i < AGENT_HANDLES; i++) {
    struct handle *h = &handles[i];
    if (h->kind == H_FREE) {
      memset(h, 0, sizeof *h);
      h->kind = kind;
      h->reading = 1;
      return h;
    }
  }
  return NULL;
}

static struct handle *handle_by_id(u32_t id) {
  for (int i = 0; i < AGENT_HANDLES; i++)
    if (handles[i].kind != H_FREE && handles[i].id == id && id != 0)
      return &handles[i];
  return NULL;
}

/* Ids count up instead of reusing table slots, so a stale id answers `nosock` rather than
 * reaching a newer connection. */
static u32_t id_new(void) {
  for (;;) {
    u32_t id = next_id++;
    if (next_id > 999999)
      next_id = 1;
    if (handle_by_id(id) == NULL)
      return id;
  }
}

static void held_free(struct handle *h) {
  if (h->held != NULL) {
    pbuf_free(h->held);
    h->held = NULL;
  }
  h->held_len = 0;
}

/* lwIP frees a pcb without telling the application in two cases: a TIME-WAIT pcb at the end
 * of 2 MSL (or earlier, when tcp_alloc() recycles it), and a pcb whose receive side was shut
 * when its close completes. So before touching h->pcb, check that it is still on one of lwIP's
 * lists and still ours (a recycled pcb has another callback_arg). */
static struct tcp_pcb *conn_pcb(struct handle *h) {
  if (h->pcb == NULL)
    return NULL;
  struct tcp_pcb *lists[] = {tcp_active_pcbs, tcp_tw_pcbs};
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
    for (struct tcp_pcb *p = lists[i]; p != NULL; p = p->next)
      if (p == h->pcb && p->callback_arg == h)
        return p;
  h->pcb = NULL; /* gone the ordinary way: closed, error stays none */
  held_free(h);
  return NULL;
}

/* Take the pcb away from the agent: lwIP must not call back into a freed handle. */
static void conn_detach(struct tcp_pcb *pcb) {
  tcp_arg(pcb, NULL);
  tcp_recv(pcb, NULL);
  tcp_sent(pcb, NULL);
  tcp_err(pcb, NULL);
  tcp_poll(pcb, NULL, 0);
}

static void conn_abort(struct handle *h) {
  struct tcp_pcb *pcb = conn_pcb(h);
  held_free(h);
  if (pcb != NULL) {
    conn_detach(pcb);
    tcp_abort(pcb);
  }
  h->pcb = NULL;
}

static void handle_free(struct handle *h) {
  held_free(h);
  if (pend.h == h)
    pend.kind = P_NONE, pend.h = NULL;
  memset(h, 0, sizeof *h);
}

static void listener_close(struct handle *l) {
  /* Connections lwIP completed but `accept` never took die with their listener, as queued
   * children of a closed Linux socket do (RST). */
  for (int i = 0; i < AGENT_HANDLES; i++) {
    struct handle *h = &handles[i];
    if (h->kind == H_CONN && h->listener == l) {
      conn_abort(h);
      handle_free(h);
    }
  }
  if (l->pcb != NULL) {
    tcp_arg(l->pcb, NULL);
    tcp_accept(l->pcb, NULL);
    tcp_close(l->pcb); /* a listening pcb is freed at once; this cannot fail */
  }
  handle_free(l);
}

/* ---- receiving ---- */

static void consume(struct handle *h, struct pbuf *p) {
  for (struct pbuf *q = p; q != NULL; q = q->next) {
    h->crc = crc_update(h->crc, q->payload, q->len);
    h->received += q->len;
  }
}

/* Consume what was held back and reopen the window by as much. */
static void held_release(struct handle *h) {
  struct tcp_pcb *pcb = conn_pcb(h);
  if (h->held != NULL) {
    u32_t n = h->held_len;
    consume(h, h->held);
    held_free(h);
    if (pcb != NULL)
      recved(pcb, n);
  }
  if (h->fin_held) {
    h->fin_held = 0;
    h->eof = 1;
  }
}

static err_t agent_on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
  struct handle *h = arg;
  LWIP_UNUSED_ARG(err);
  if (h == NULL) { /* cannot happen: detached pcbs have no recv callback */
    if (p != NULL) {
      tcp_recved(pcb, p->tot_len);
      pbuf_free(p);
    }
    return ERR_OK;
  }
  if (p == NULL) { /* the peer's FIN; it counts only once the data before it is consumed */
    if (h->held != NULL)
      h->fin_held = 1;
    else
      h->eof = 1;
    return ERR_OK;
  }
  if (!h->reading || h->held != NULL) {
    /* Hold the pbufs without tcp_recved(): lwIP's receive window shrinks by what arrives and
     * reaches zero, which is what `setopt read 0` is for. (Returning ERR_MEM instead would
     * keep only one refused pbuf chain and drop later segments, so the window would never
     * close.) */
    if (h->held == NULL)
      h->held = p;
    else
      pbuf_cat(h->held, p);
    h->held_len += p->tot_len;
    return ERR_OK;
  }
  u32_t n = p->tot_len;
  consume(h, p);
  pbuf_free(p);
  recved(pcb, n);
  return ERR_OK;
}

/* ---- sending ---- */

static void send_pump(void);

static err_t agent_on_sent(void *arg, struct tcp_pcb *pcb, u16_t len) {
  LWIP_UNUSED_ARG(pcb);
  LWIP_UNUSED_ARG(len);
  if (arg != NULL && pend.kind == P_SEND && pend.h == arg)
    send_pump(); /* room in the send buffer again: continue the pending `send` */
  return ERR_OK;
}

static void agent_on_err(void *arg, err_t err) {
  struct handle *h = arg;
  if (h == NULL)
    return;
  /* lwIP has freed the pcb. ERR_RST: the peer reset (refused while still connecting);
   * ERR_ABRT: lwIP gave up (retransmissions, keep-alive, SYN retries) or reclaimed the pcb,
   * or, after `shutdown rd`, answered new data with RST; ERR_CLSD: the close completed after a
   * `shutdown wr` without `rd`. */
  h->pcb = NULL;
  held_free(h);
  h->fin_held = 0;
  if (err == ERR_RST)
    h->error = h->connecting ? E_REFUSED : E_RESET;
  else if (err == ERR_ABRT)
    h->error = h->rd_shut ? E_RESET : E_TIMEOUT;
  else if (err != ERR_CLSD)
    h->error = E_RESET;
  h->connecting = 0;
}

static err_t agent_on_connected(void *arg, struct tcp_pcb *pcb, err_t err) {
  struct handle *h = arg;
  LWIP_UNUSED_ARG(err); /* always ERR_OK in lwIP 2.1 */
  if (h == NULL)
    return ERR_VAL;
  h->connecting = 0;
  ip_addr_copy(h->local, pcb->local_ip);
  h->lport = pcb->local_port;
  return ERR_OK;
}

static void conn_attach(struct handle *h, struct tcp_pcb *pcb) {
  h->pcb = pcb;
  tcp_arg(pcb, h);
  tcp_recv(pcb, agent_on_recv);
  tcp_sent(pcb, agent_on_sent);
  tcp_err(pcb, agent_on_err);
}

static err_t agent_on_accept(void *arg, struct tcp_pcb *pcb, err_t err) {
  struct handle *l = arg;
  if (err != ERR_OK || pcb == NULL)
    return ERR_VAL; /* lwIP had no pcb for a SYN; the peer retransmits it */
  struct handle *h = (l != NULL && l->kind == H_LISTEN) ? handle_new(H_CONN) : NULL;
  if (h == NULL) {
    tcp_abort(pcb); /* out of handles: refuse, as a full accept queue would */
    return ERR_ABRT;
  }
  h->listener = l;
  h->queued_seq = ++accept_seq;
  ip_addr_copy(h->local, pcb->local_ip);
  ip_addr_copy(h->remote, pcb->remote_ip);
  h->lport = pcb->local_port;
  h->rport = pcb->remote_port;
  conn_attach(h, pcb);
  return ERR_OK;
}

/* Fill pattern_buf for a `send` pattern and return its period; 0 if PATTERN is malformed. */
static u32_t pattern_set(const char *pattern) {
  u8_t unit[PATTERN_UNIT_MAX];
  u32_t period;
  if (strcmp(pattern, "seq") == 0) {
    for (size_t i = 0; i < sizeof pattern_buf; i++)
      pattern_buf[i] = (u8_t)i;
    return 256;
  }
  if (strcmp(pattern, "zero") == 0) {
    memset(pattern_buf, 0, sizeof pattern_buf);
    return 1;
  }
  if (strncmp(pattern, "hex:", 4) != 0)
    return 0;
  const char *hex = pattern + 4;
  size_t digits = strlen(hex);
  if (digits == 0 || digits % 2 != 0 || digits / 2 > PATTERN_UNIT_MAX)
    return 0;
  for (size_t i = 0; i < digits; i++)
    if (!isxdigit((unsigned char)hex[i]))
      return 0;
  period = (u32_t)(digits / 2);
  for (u32_t i = 0; i < period; i++) {
    char byte[3] = {hex[2 * i], hex[2 * i + 1], '\0'};
    unit[i] = (u8_t)strtoul(byte, NULL, 16);
  }
  for (size_t i = 0; i < sizeof pattern_buf; i++)
    pattern_buf[i] = unit[i % period];
  return period;
}

/* Hand the pending `send`'s bytes to lwIP while its send buffer and segment queue have room.
 * Writes are at most one MSS, so one write never needs more queue entries than are free (a
 * refused tcp_write() also sets lwIP's TF_NAGLEMEMERR, which would change what Nagle does). */
static void send_pump(void) {
  struct handle *h = pend.h;
  struct tcp_pcb *pcb = conn_pcb(h);
  if (pcb == NULL)
    return;
  int wrote = 0;
  while (pend.done < pend.want) {
    if (tcp_sndqueuelen(pcb) >= TCP_SND_QUEUELEN)
      break;
    u64_t len = pend.want - pend.done;
    len = LWIP_MIN(len, (u64_t)tcp_sndbuf(pcb));
    len = LWIP_MIN(len, (u64_t)LWIP_MIN(tcp_mss(pcb), PATTERN_SPAN));
    if (pend.chunk != 0)
      len = LWIP_MIN(len, (u64_t)pend.chunk_left);
    if (len == 0)
      break;
    const u8_t *from = pattern_buf + h->sent % pend.period;
    err_t err = tcp_write(pcb, from, (u16_t)len, TCP_WRITE_FLAG_COPY);
    if (err == ERR_MEM)
      break; /* retried from the sent callback or the next loop pass */
    if (err != ERR_OK) {
      /* ERR_CONN: the state no longer allows sending; the pending reply says so. */
      h->wr_shut = 1;
      break;
    }
    wrote = 1;
    h->sent += len;
    pend.done += len;
    pend.deadline = sys_now() + AGENT_SEND_STALL_MS; /* progress: the stall clock restarts */
    if (pend.chunk != 0) {
      pend.chunk_left -= (u32_t)len;
      if (pend.chunk_left == 0) {
        /* A chunk is one application write: offer it to the wire now, so Nagle (or its
         * absence) decides what a segment carries, as for a socket write. */
        tcp_output(pcb);
        pend.chunk_left = pend.chunk;
        wrote = 0;
      }
    }
  }
  if (wrote)
    tcp_output(pcb);
}

/* ---- deferred replies ---- */

static void reply_conn_error(struct handle *h, const char *what) {
  if (h->error != E_NONE)
    reply_err(conn_error_name[h->error], "%s", what);
  else
    reply_err("closed", "%s", what);
}

static struct handle *accept_next(struct handle *l) {
  struct handle *best = NULL;
  for (int i = 0; i < AGENT_HANDLES; i++) {
    struct handle *h = &handles[i];
    if (h->kind == H_CONN && h->listener == l && (best == NULL || h->queued_seq < best->queued_seq))
      best = h;
  }
  return best;
}

static int deadline_passed(void) {
  return pend.has_deadline && (s32_t)(sys_now() - pend.deadline) >= 0;
}

/* Complete the pending command if the network has answered it or its time is up; 1 if the
 * reply was sent. */
static int pending_check(void) {
  struct handle *h = pend.h;
  char a[IPADDR_STRLEN_MAX];
  switch (pend.kind) {
  case P_NONE:
    return 0;
  case P_ACCEPT: {
    struct handle *c = accept_next(h);
    if (c != NULL) {
      c->listener = NULL;
      c->id = id_new();
      format_addr(&c->remote, a, sizeof a);
      pend.kind = P_NONE;
      reply_ok("%lu %s %u", (unsigned long)c->id, a, c->rport);
      return 1;
    }
    if (deadline_passed()) {
      pend.kind = P_NONE;
      reply_err("timeout", "no connection");
      return 1;
    }
    return 0;
  }
  case P_CONNECT: {
    struct tcp_pcb *pcb = conn_pcb(h);
    if (pcb != NULL && !h->connecting) {
      format_addr(&h->local, a, sizeof a);
      pend.kind = P_NONE;
      reply_ok("%lu %s %u", (unsigned long)h->id, a, h->lport);
      return 1;
    }
    if (pcb == NULL) { /* the handle was never given out: free it */
      enum conn_error e = h->error;
      handle_free(h);
      reply_err(e == E_NONE ? "internal" : conn_error_name[e], "connect failed");
      return 1;
    }
    if (deadline_passed()) {
      conn_abort(h);
      handle_free(h);
      reply_err("timeout", "no answer to the SYN");
      return 1;
    }
    return 0;
  }
  case P_SEND: {
    if (pend.done >= pend.want) {
      pend.kind = P_NONE;
      reply_ok("%llu", (unsigned long long)pend.done);
      return 1;
    }
    if (conn_pcb(h) == NULL || h->wr_shut) {
      pend.kind = P_NONE;
      if (h->error == E_NONE)
        reply_err("closed", "sent=%llu", (unsigned long long)pend.done);
      else
        reply_err(conn_error_name[h->error], "sent=%llu", (unsigned long long)pend.done);
      return 1;
    }
    if (deadline_passed()) {
      pend.kind = P_NONE;
      reply_err("timeout", "sent=%llu", (unsigned long long)pend.done);
      return 1;
    }
    return 0;
  }
  case P_RECV: {
    conn_pcb(h); /* notices a pcb lwIP freed without telling us */
    if (h->received >= pend.want || h->eof || (h->pcb == NULL && h->error == E_NONE)) {
      pend.kind = P_NONE;
      reply_ok("total=%llu crc32=%08lx eof=%d", (unsigned long long)h->received,
               (unsigned long)h->crc, h->eof || h->pcb == NULL);
      return 1;
    }
    if (h->pcb == NULL) {
      pend.kind = P_NONE;
      reply_err(conn_error_name[h->error], "total=%llu", (unsigned long long)h->received);
      return 1;
    }
    if (deadline_passed()) {
      pend.kind = P_NONE;
      reply_err("timeout", "total=%llu", (unsigned long long)h->received);
      return 1;
    }
    return 0;
  }
  }
  return 0;
}

/* ---- commands ---- */

static const char *state_name(enum tcp_state s) {
  switch (s) { /* RFC 9293 3.3.2 names */
  case CLOSED: return "CLOSED";
  case LISTEN: return "LISTEN";
  case SYN_SENT: return "SYN-SENT";
  case SYN_RCVD: return "SYN-RECEIVED";
  case ESTABLISHED: return "ESTABLISHED";
  case FIN_WAIT_1: return "FIN-WAIT-1";
  case FIN_WAIT_2: return "FIN-WAIT-2";
  case CLOSE_WAIT: return "CLOSE-WAIT";
  case CLOSING: return "CLOSING";
  case LAST_ACK: return "LAST-ACK";
  case TIME_WAIT: return "TIME-WAIT";
  }
  return "unknown";
}


/* Unsigned decimal only (no sign, no spaces, no hex), at most MAX. */
static int parse_num(const char *text, u64_t max, u64_t *out) {
  u64_t n = 0;
  if (text == NULL || *text == '\0')
    return -1;
  for (const char *c = text; *c; c++) {
    if (*c < '0' || *c > '9')
      return -1;
    u64_t d = (u64_t)(*c - '0');
    if (d > max || n > (max - d) / 10) /* n * 10 + d > max, without overflowing */
      return -1;
    n = n * 10 + d;
  }
  *out = n;
  return 0;
}

static int parse_timeout(int argc, char **argv, int at, u32_t *ms) {
  u64_t v = AGENT_DEFAULT_TIMEOUT_MS;
  if (argc > at && parse_num(argv[at], AGENT_MAX_TIMEOUT_MS, &v) < 0)
    return -1;
  *ms = (u32_t)v;
  return 0;
}

/* The handle a command names, or NULL after replying `usage`/`nosock`. */
static struct handle *arg_handle(const char *text, enum handle_kind want) {
  u64_t id;
  if (parse_num(text, 0xFFFFFFFFu, &id) < 0) {
    reply_err("usage", "not a handle: %s", printable(text));
    return NULL;
  }
  struct handle *h = handle_by_id((u32_t)id);
  if (h == NULL || (want != H_FREE && h->kind != want)) {
    const char *what = want == H_LISTEN ? "SID" : want == H_CONN ? "CID" : "handle";
    reply_err("nosock", "no such %s %llu", what, (unsigned long long)id);
    return NULL;
  }
  return h;
}

static void pend_start(enum pend_kind kind, struct handle *h, u32_t timeout_ms, int has_deadline) {
  pend.kind = kind;
  pend.h = h;
  pend.has_deadline = has_deadline;
  pend.deadline = sys_now() + timeout_ms;
}

static void cmd_hello(int argc, char **argv) {
  LWIP_UNUSED_ARG(argc);
  LWIP_UNUSED_ARG(argv);
  reply_len = 0;
  reply_add("ok agent=tcp-hil/%d stack=lwip version=%s", AGENT_MAJOR, LWIP_VERSION_STRING);
  reply_add(" lwip_tcp_mss=%lu lwip_tcp_wnd=%lu lwip_tcp_snd_buf=%lu handles=%d",
            (unsigned long)TCP_MSS, (unsigned long)TCP_WND, (unsigned long)TCP_SND_BUF,
            AGENT_HANDLES);
#ifdef TCP_HIL_BUILD
  reply_add(" build=%s", TCP_HIL_BUILD);
#endif
  reply_send();
}

static void cmd_help(int argc, char **argv);

/* Compile-time options as lwIP's own names, values as the compiler evaluated them. */
static void cmd_info(int argc, char **argv) {
  LWIP_UNUSED_ARG(argc);
  LWIP_UNUSED_ARG(argv);
  reply_len = 0;
  reply_add("ok lwip=%s", LWIP_VERSION_STRING);
#ifdef TCP_HIL_BUILD
  reply_add(" build=%s", TCP_HIL_BUILD);
#endif
#define INFO(name) reply_add(" " #name "=%lu", (unsigned long)(name))
  INFO(TCP_MSS);
  INFO(TCP_WND);
  INFO(TCP_SND_BUF);
  INFO(TCP_SND_QUEUELEN);
  INFO(TCP_QUEUE_OOSEQ);
  INFO(LWIP_WND_SCALE);
  INFO(TCP_RCV_SCALE);
  INFO(LWIP_TCP_TIMESTAMPS);
  INFO(LWIP_TCP_KEEPALIVE);
  INFO(TCP_KEEPIDLE_DEFAULT);
  INFO(TCP_KEEPINTVL_DEFAULT);
  INFO(TCP_KEEPCNT_DEFAULT);
#ifdef LWIP_TCP_SACK_OUT
  INFO(LWIP_TCP_SACK_OUT);
#endif
  INFO(TCP_MAXRTX);
  INFO(TCP_SYNMAXRTX);
  INFO(TCP_TTL);
  INFO(IP_DEFAULT_TTL);
  INFO(TCP_TMR_INTERVAL);
  INFO(TCP_MSL);
  INFO(TCP_OVERSIZE);
  INFO(TCP_LISTEN_BACKLOG);
  INFO(MEMP_NUM_TCP_PCB);
  INFO(MEMP_NUM_TCP_PCB_LISTEN);
  INFO(MEMP_NUM_TCP_SEG);
  INFO(PBUF_POOL_SIZE);
  INFO(PBUF_POOL_BUFSIZE);
  INFO(MEM_SIZE);
#undef INFO
  reply_send();
}

static void cmd_listen(int argc, char **argv) {
  u64_t port, backlog = TCP_DEFAULT_LISTEN_BACKLOG;
  if (parse_num(argv[1], 0xFFFF, &port) < 0 || port == 0 ||
      (argc > 2 && parse_num(argv[2], 0xFF, &backlog) < 0)) {
    reply_err("usage", "listen PORT [BACKLOG]");
    return;
  }
  struct handle *l = handle_new(H_LISTEN);
  if (l == NULL) {
    reply_err("nomem", "all %d handles in use", AGENT_HANDLES);
    return;
  }
  struct tcp_pcb *pcb = tcp_new_ip_type(IPADDR_TYPE_ANY); /* IPv4 and IPv6 on one pcb */
  if (pcb == NULL) {
    handle_free(l);
    reply_err("nomem", "no tcp pcb");
    return;
  }
  err_t err = tcp_bind(pcb, IP_ANY_TYPE, (u16_t)port);
  if (err != ERR_OK) {
    tcp_close(pcb);
    handle_free(l);
    if (err == ERR_USE)
      reply_err("inuse", "port %llu", (unsigned long long)port);
    else
      reply_err("internal", "tcp_bind: %d", err);
    return;
  }
  struct tcp_pcb *lpcb = tcp_listen_with_backlog(pcb, (u8_t)backlog);
  if (lpcb == NULL) { /* out of listen pcbs; pcb is still ours */
    tcp_close(pcb);
    handle_free(l);
    reply_err("nomem", "no listen pcb");
    return;
  }
  l->pcb = lpcb;
  l->lport = (u16_t)port;
  l->id = id_new();
  tcp_arg(lpcb, l);
  tcp_accept(lpcb, agent_on_accept);
  reply_ok("%lu", (unsigned long)l->id);
}

static void cmd_accept(int argc, char **argv) {
  u32_t timeout;
  struct handle *l = arg_handle(argv[1], H_LISTEN);
  if (l == NULL)
    return;
  if (parse_timeout(argc, argv, 2, &timeout) < 0) {
    reply_err("usage", "accept SID [TIMEOUT_MS]");
    return;
  }
  pend_start(P_ACCEPT, l, timeout, 1);
  pending_check();
}

static void cmd_connect(int argc, char **argv) {
  ip_addr_t addr;
  u64_t port;
  u32_t timeout;
  if (!ipaddr_aton(argv[1], &addr) || parse_num(argv[2], 0xFFFF, &port) < 0 || port == 0 ||
      parse_timeout(argc, argv, 3, &timeout) < 0) {
    reply_err("usage", "connect ADDR PORT [TIMEOUT_MS]");
    return;
  }
  struct handle *h = handle_new(H_CONN);
  if (h == NULL) {
    reply_err("nomem", "all %d handles in use", AGENT_HANDLES);
    return;
  }
  struct tcp_pcb *pcb = tcp_new_ip_type(IP_GET_TYPE(&addr));
  if (pcb == NULL) {
    handle_free(h);
    reply_err("nomem", "no tcp pcb");
    return;
  }
  h->id = id_new();
  h->connecting = 1;
  ip_addr_copy(h->remote, addr);
  h->rport = (u16_t)port;
  conn_attach(h, pcb);
  err_t err = tcp_connect(pcb, &addr, (u16_t)port, agent_on_connected);
  if (err != ERR_OK) {
    conn_detach(pcb);
    tcp_abort(pcb);
    handle_free(h);
    if (err == ERR_RTE)
      reply_err("unreachable", "no route to %s", printable(argv[1]));
    else if (err == ERR_MEM || err == ERR_BUF)
      reply_err("nomem", "tcp_connect: %d", err);
    else if (err == ERR_USE)
      reply_err("inuse", "tcp_connect: %d", err);
    else
      reply_err("internal", "tcp_connect: %d", err);
    return;
  }
  pend_start(P_CONNECT, h, timeout, 1);
  pending_check();
}

static void cmd_send(int argc, char **argv) {
  u64_t n, chunk = 0;
  struct handle *h = arg_handle(argv[1], H_CONN);
  if (h == NULL)
    return;
  u32_t period = pattern_set(argc > 3 ? argv[3] : "seq");
  if (parse_num(argv[2], (u64_t)1 << 62, &n) < 0 ||
      (argc > 4 && (parse_num(argv[4], 0xFFFF, &chunk) < 0 || chunk == 0)) || period == 0) {
    reply_err("usage", "send CID N [seq|zero|hex:HEX] [CHUNK]");
    return;
  }
  if (conn_pcb(h) == NULL || h->wr_shut) {
    reply_conn_error(h, "cannot send");
    return;
  }
  pend_start(P_SEND, h, AGENT_SEND_STALL_MS, 1);
  pend.want = n;
  pend.done = 0;
  pend.period = period;
  pend.chunk = pend.chunk_left = (u32_t)chunk;
  send_pump();
  pending_check();
}

static void cmd_recv(int argc, char **argv) {
  u64_t n;
  u32_t timeout;
  struct handle *h = arg_handle(argv[1], H_CONN);
  if (h == NULL)
    return;
  if (parse_num(argv[2], (u64_t)1 << 62, &n) < 0 || parse_timeout(argc, argv, 3, &timeout) < 0) {
    reply_err("usage", "recv CID N [TIMEOUT_MS]");
    return;
  }
  pend_start(P_RECV, h, timeout, 1);
  pend.want = n; /* a total over the connection's life, as `total=` reports it */
  pending_check();
}

static void cmd_shutdown(int argc, char **argv) {
  const char *how = argc > 2 ? argv[2] : "wr";
  int rd = strcmp(how, "rd") == 0 || strcmp(how, "rdwr") == 0;
  int wr = strcmp(how, "wr") == 0 || strcmp(how, "rdwr") == 0;
  struct handle *h = arg_handle(argv[1], H_CONN);
  if (h == NULL)
    return;
  if (!rd && !wr) {
    reply_err("usage", "shutdown CID [wr|rd|rdwr]");
    return;
  }
  struct tcp_pcb *pcb = conn_pcb(h);
  if (pcb == NULL) {
    reply_conn_error(h, "connection gone");
    return;
  }
  if (rd && !h->rd_shut) {
    /* Unread data is dropped; anything arriving later makes lwIP answer with RST. */
    held_free(h);
    h->fin_held = 0;
    tcp_shutdown(pcb, 1, 0);
    h->rd_shut = 1;
  }
  if (wr && !h->wr_shut) {
    /* Only the TX side: tcp_shutdown(pcb, 1, 1) would be tcp_close() and hand the pcb back to
     * lwIP, but the CID stays valid until `close`. */
    err_t err = tcp_shutdown(pcb, 0, 1);
    if (err != ERR_OK) {
      reply_err("closed", "cannot send a FIN in state %s", state_name(pcb->state));
      return;
    }
    h->wr_shut = 1;
  }
  reply_ok_bare();
}

static void cmd_close(int argc, char **argv) {
  LWIP_UNUSED_ARG(argc);
  struct handle *h = arg_handle(argv[1], H_FREE);
  if (h == NULL)
    return;
  if (h->kind == H_LISTEN) {
    listener_close(h);
    reply_ok_bare();
    return;
  }
  struct tcp_pcb *pcb = conn_pcb(h);
  if (pcb != NULL) {
    /* Held data is dropped without tcp_recved(): lwIP then sees unread data and resets, as
     * close() with unread data does on a socket. Otherwise FIN after what is queued. */
    held_free(h);
    conn_detach(pcb);
    if (tcp_close(pcb) != ERR_OK)
      tcp_abort(pcb);
  }
  handle_free(h);
  reply_ok_bare();
}

static void cmd_abort(int argc, char **argv) {
  LWIP_UNUSED_ARG(argc);
  struct handle *h = arg_handle(argv[1], H_CONN);
  if (h == NULL)
    return;
  conn_abort(h);
  handle_free(h);
  reply_ok_bare();
}


static void cmd_status(int argc, char **argv) {
  LWIP_UNUSED_ARG(argc);
  struct handle *h = arg_handle(argv[1], H_FREE);
  if (h == NULL)
    return;
  if (h->kind == H_LISTEN) {
    reply_ok("state=LISTEN sent=0 received=0 eof=0 error=none port=%u", h->lport);
    return;
  }
  struct tcp_pcb *pcb = conn_pcb(h);
  reply_ok("state=%s sent=%llu received=%llu eof=%d error=%s held=%u",
           pcb != NULL ? state_name(pcb->state) : "CLOSED", (unsigned long long)h->sent,
           (unsigned long long)h->received, h->eof, conn_error_name[h->error],
           (unsigned)h->held_len);
}

static void cmd_setopt(int argc, char **argv) {
  LWIP_UNUSED_ARG(argc);
  u64_t v;
  struct handle *h = arg_handle(argv[1], H_CONN);
  if (h == NULL)
    return;
  const char *name = argv[2];
  int boolean = strcmp(name, "nodelay") == 0 || strcmp(name, "keepalive") == 0 ||
                strcmp(name, "read") == 0;
  int timed = strcmp(name, "keepidle") == 0 || strcmp(name, "keepintvl") == 0 ||
              strcmp(name, "keepcnt") == 0;
  if (!boolean && !timed) {
    reply_err("usage", "unknown option %s", printable(name));
    return;
  }
  if (parse_num(argv[3], boolean ? 1 : 0xFFFFFFFFu, &v) < 0 || (timed && v == 0)) {
    reply_err("usage", "setopt CID %s %s", name, boolean ? "0|1" : "N>0");
    return;
  }
  if (strcmp(name, "read") == 0) { /* an application choice: valid on any connection */
    h->reading = (int)v;
    if (h->reading)
      held_release(h);
    reply_ok_bare();
    return;
  }
#if !LWIP_TCP_KEEPALIVE
  if (timed) {
    reply_err("unsupported", "%s needs LWIP_TCP_KEEPALIVE=1", name);
    return;
  }
#endif
  struct tcp_pcb *pcb = conn_pcb(h);
  if (pcb == NULL) {
    reply_conn_error(h, "connection gone");
    return;
  }
  if (strcmp(name, "nodelay") == 0) {
    if (v) {
      tcp_nagle_disable(pcb);
      tcp_output(pcb); /* what Nagle was holding may go now */
    } else {
      tcp_nagle_enable(pcb);
    }
  } else if (strcmp(name, "keepalive") == 0) {
    if (v)
      ip_set_option(pcb, SOF_KEEPALIVE);
    else
      ip_reset_option(pcb, SOF_KEEPALIVE);
  }
#if LWIP_TCP_KEEPALIVE
  else if (strcmp(name, "keepidle") == 0)
    pcb->keep_idle = (u32_t)v;
  else if (strcmp(name, "keepintvl") == 0)
    pcb->keep_intvl = (u32_t)v;
  else if (strcmp(name, "keepcnt") == 0)
    pcb->keep_cnt = (u32_t)v;
#endif
  reply_ok_bare();
}

static void cmd_counters(int argc, char **argv) {
  LWIP_UNUSED_ARG(argc);
  LWIP_UNUSED_ARG(argv);
  unsigned long active = 0, time_wait = 0, buffers = 0, drops = counters.rx_no_pbuf;
  for (struct tcp_pcb *p = tcp_active_pcbs; p != NULL; p = p->next)
    active++;
  for (struct tcp_pcb *p = tcp_tw_pcbs; p != NULL; p = p->next)
    time_wait++;
#if MEMP_STATS
  buffers = (unsigned long)lwip_stats.memp[MEMP_PBUF_POOL]->used +
            (unsigned long)lwip_stats.memp[MEMP_PBUF]->used;
#endif
#if LWIP_STATS
#if LINK_STATS
  drops += lwip_stats.link.drop;
#endif
#if ETHARP_STATS
  drops += lwip_stats.etharp.drop;
#endif
#if IP_STATS
  drops += lwip_stats.ip.drop;
#endif
#if IP6_STATS
  drops += lwip_stats.ip6.drop;
#endif
#if TCP_STATS
  drops += lwip_stats.tcp.drop;
#endif
#endif
  reply_len = 0;
  reply_add("ok connections=%lu buffers=%lu drops=%lu time_wait=%lu", active, buffers, drops,
            time_wait);
  reply_add(" frames_in=%lu frames_out=%lu rx_no_pbuf=%lu tx_errors=%lu", counters.rx_frames,
            counters.tx_frames, counters.rx_no_pbuf, counters.tx_errors);
#if LWIP_STATS && TCP_STATS
  reply_add(" tcp_xmit=%lu tcp_recv=%lu tcp_drop=%lu tcp_memerr=%lu tcp_proterr=%lu",
            (unsigned long)lwip_stats.tcp.xmit, (unsigned long)lwip_stats.tcp.recv,
            (unsigned long)lwip_stats.tcp.drop, (unsigned long)lwip_stats.tcp.memerr,
            (unsigned long)lwip_stats.tcp.proterr);
#endif
#if MIB2_STATS
  reply_add(" tcp_rexmit=%lu", (unsigned long)lwip_stats.mib2.tcpretranssegs);
#endif
#if MEM_STATS
  reply_add(" heap_used=%lu", (unsigned long)lwip_stats.mem.used);
#endif
#if MEMP_STATS
  reply_add(" pbuf_pool_err=%lu tcp_seg_used=%lu",
            (unsigned long)lwip_stats.memp[MEMP_PBUF_POOL]->err,
            (unsigned long)lwip_stats.memp[MEMP_TCP_SEG]->used);
#endif
  reply_send();
}

static void cmd_reset(int argc, char **argv) {
  LWIP_UNUSED_ARG(argc);
  LWIP_UNUSED_ARG(argv);
  for (int i = 0; i < AGENT_HANDLES; i++) {
    struct handle *h = &handles[i];
    if (h->kind == H_CONN) {
      conn_abort(h);
      handle_free(h);
    }
  }
  for (int i = 0; i < AGENT_HANDLES; i++)
    if (handles[i].kind == H_LISTEN)
      listener_close(&handles[i]);
  reply_ok_bare();
}

struct command {
  const char *name;
  int min_args, max_args; /* words after the command name */
  void (*run)(int argc, char **argv);
};

/* `mark` is here for `help`; agent_execute() runs it before splitting the line into words. */
static const struct command commands[] = {
    {"hello", 0, 0, cmd_hello},       {"help", 0, 0, cmd_help},
    {"info", 0, 0, cmd_info},         {"listen", 1, 2, cmd_listen},
    {"accept", 1, 2, cmd_accept},     {"connect", 2, 3, cmd_connect},
    {"send", 2, 4, cmd_send},         {"recv", 2, 3, cmd_recv},
    {"shutdown", 1, 2, cmd_shutdown}, {"close", 1, 1, cmd_close},
    {"abort", 1, 1, cmd_abort},       {"status", 1, 1, cmd_status},
    {"setopt", 3, 3, cmd_setopt},     {"counters", 0, 0, cmd_counters},
    {"mark", 0, AGENT_WORDS, NULL},   {"reset", 0, 0, cmd_reset}};

static void cmd_help(int argc, char **argv) {
  LWIP_UNUSED_ARG(argc);
  LWIP_UNUSED_ARG(argv);
  reply_len = 0;
  reply_add("ok");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    reply_add(" %s", commands[i].name);
  reply_send();
}

static void agent_execute(char *line) {
  /* mark echoes its text as given, so it is handled before the line is cut into words. */
  if (strncmp(line, "mark", 4) == 0 && (line[4] == '\0' || line[4] == ' ' || line[4] == '\t')) {
    const char *text = line[4] != '\0' ? line + 5 : "";
    printf("# mark t=%lu %s\n", (unsigned long)sys_now(), text); /* the agent's own timestamp */
    reply_ok("%s", text);
    return;
  }
  char *argv[AGENT_WORDS + 1];
  int argc = 0;
  for (char *w = strtok(line, " \t"); w != NULL; w = strtok(NULL, " \t")) {
    if (argc == AGENT_WORDS) {
      reply_err("usage", "too many words");
      return;
    }
    argv[argc++] = w;
  }
  if (argc == 0)
    return; /* an empty line gets no reply */
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    const struct command *c = &commands[i];
    if (strcmp(argv[0], c->name) != 0 || c->run == NULL)
      continue;
    if (argc - 1 < c->min_args || argc - 1 > c->max_args) {
      reply_err("usage", "%s takes %d to %d arguments", c->name, c->min_args, c->max_args);
      return;
    }
    argv[argc] = NULL;
    c->run(argc, argv);
    return;
  }
  reply_err("unknown", "no command %s", printable(argv[0]));
}

/* Run every complete line in the input buffer, as long as no command is pending (the client
 * sends the next command only after the reply; a pending one keeps the rest waiting). */
static void agent_run_lines(void) {
  while (pend.kind == P_NONE && in_len > 0) {
    char *nl = memchr(in_buf, '\n', in_len);
    if (in_discarding) { /* the tail of a too long line, already answered */
      if (nl == NULL) {
        in_len = 0;
        return;
      }
      size_t used = (size_t)(nl - in_buf) + 1;
      memmove(in_buf, in_buf + used, in_len - used);
      in_len -= used;
      in_discarding = 0;
      continue;
    }
    if (nl == NULL) {
      if (in_len < sizeof in_buf && !in_eof)
        return; /* wait for the rest */
      if (in_len == sizeof in_buf) {
        /* 255 bytes and still no newline: answer now, drop the rest of the line */
        reply_err("usage", "line too long");
        in_discarding = 1;
        in_len = 0;
        return;
      }
      nl = in_buf + in_len; /* at end of input an unterminated last line still counts */
    }
    size_t n = (size_t)(nl - in_buf);
    char line[AGENT_LINE_MAX + 1];
    memcpy(line, in_buf, n);
    line[n] = '\0';
    size_t used = n < in_len ? n + 1 : n;
    memmove(in_buf, in_buf + used, in_len - used);
    in_len -= used;
    if (n > 0 && line[n - 1] == '\r')
      line[--n] = '\0';
    for (size_t i = 0; i < n; i++)
      if (line[i] == '\0')
        line[i] = '?'; /* a NUL must not cut the line short */
    agent_execute(line);
  }
}

/* stdin is readable (or closed): take what is there with one read(), which does not block,
 * so stdin can stay in blocking mode (it may be a terminal shared with a shell). */
static void agent_input(void) {
  ssize_t n = read(STDIN_FILENO, in_buf + in_len, sizeof in_buf - in_len);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN)
      return;
    perror("lwip-target: read stdin");
    n = 0;
  }
  if (n == 0)
    in_eof = 1; /* keep serving; the loop stops polling stdin */
  in_len += (size_t)n;
  agent_run_lines();
}

/* 1 while the loop should poll stdin: not after EOF, and not while a command is pending. */
static int agent_wants_input(void) {
  return opt.agent && !in_eof && pend.kind == P_NONE && in_len < sizeof in_buf;
}

/* The loop's sleep, shortened to the pending command's deadline. */
static u32_t agent_sleeptime(u32_t sleep_ms) {
  if (pend.kind == P_NONE || !pend.has_deadline)
    return sleep_ms;
  s32_t left = (s32_t)(pend.deadline - sys_now());
  u32_t until = left > 0 ? (u32_t)left : 0;
  return LWIP_MIN(sleep_ms, until);
}

/* After every loop pass: continue a pending send, complete what the network answered, then
 * run lines that waited behind the reply. */
static void agent_progress(void) {
  if (pend.kind == P_SEND)
    send_pump();
  if (pending_check())
    agent_run_lines();
}

static void agent_init(void) { crc_init(); }

/* ---- command line ---- */

static void usage(FILE *to) {
  fprintf(to,
          "usage: lwip-target --tap NAME [--mac MAC] [--ipv4 ADDR/LEN] [--ipv6 ADDR/LEN]\n"
          "                   [--chargen-bytes N] [--no-dad] [--mtu N] [--seed N]\n"
          "                   [--echo PORT] [--discard PORT] [--chargen PORT] [--agent]\n"
          "Serves echo 7, discard 9 and chargen 19 over TCP (IPv4 and IPv6) on TAP NAME.\n"
          "  --echo/--discard/--chargen PORT  serve on PORT instead (0: not at all)\n"
          "  --agent  answer the tcp-hil agent protocol (docs/agent.md) on stdin/stdout\n");
}

static int parse_port(const char *name, const char *text, int *port) {
  char *end;
  errno = 0;
  unsigned long n = strtoul(text, &end, 10);
  if (errno || *end != '\0' || end == text || text[0] == '-' || n > 0xFFFF) {
    fprintf(stderr, "lwip-target: --%s %s is not a port (0..65535, 0 = off)\n", name, text);
    return -1;
  }
  *port = (int)n;
  return 0;
}

static int parse_prefixed(const char *text, char *addr, size_t size, int *prefix, int max) {
  const char *slash = strchr(text, '/');
  char *end;
  if (slash == NULL || (size_t)(slash - text) >= size)
    return -1;
  memcpy(addr, text, (size_t)(slash - text));
  addr[slash - text] = '\0';
  long n = strtol(slash + 1, &end, 10);
  if (*end != '\0' || end == slash + 1 || n < 0 || n > max)
    return -1;
  *prefix = (int)n;
  return 0;
}

static int parse_args(int argc, char **argv) {
  static const struct option longopts[] = {
      {"tap", required_argument, NULL, 't'},        {"mac", required_argument, NULL, 'm'},
      {"ipv4", required_argument, NULL, '4'},       {"ipv6", required_argument, NULL, '6'},
      {"chargen-bytes", required_argument, NULL, 'c'}, {"no-dad", no_argument, NULL, 'n'},
      {"mtu", required_argument, NULL, 'u'},        {"seed", required_argument, NULL, 's'},
      {"echo", required_argument, NULL, 'E'},       {"discard", required_argument, NULL, 'D'},
      {"chargen", required_argument, NULL, 'C'},    {"agent", no_argument, NULL, 'a'},
      {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0}};
  char addr[64], *end;
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
    case 't':
      opt.tap = optarg;
      break;
    case 'm': {
      unsigned m[6];
      char tail;
      if (sscanf(optarg, "%x:%x:%x:%x:%x:%x%c", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5],
                 &tail) != 6) {
        fprintf(stderr, "lwip-target: --mac %s is not a MAC like 02:00:00:00:00:03\n", optarg);
        return -1;
      }
      for (int i = 0; i < 6; i++)
        opt.mac[i] = (u8_t)m[i];
      break;
    }
    case '4':
      if (parse_prefixed(optarg, addr, sizeof addr, &opt.v4_prefix, 32) < 0 ||
          !ip4addr_aton(addr, &opt.v4)) {
        fprintf(stderr, "lwip-target: --ipv4 %s is not ADDRESS/PREFIX\n", optarg);
        return -1;
      }
      opt.have_v4 = 1;
      break;
    case '6':
      if (parse_prefixed(optarg, addr, sizeof addr, &opt.v6_prefix, 128) < 0 ||
          !ip6addr_aton(addr, &opt.v6)) {
        fprintf(stderr, "lwip-target: --ipv6 %s is not ADDRESS/PREFIX\n", optarg);
        return -1;
      }
      opt.have_v6 = 1;
      break;
    case 'c':
      errno = 0;
      opt.chargen_bytes = strtoull(optarg, &end, 10);
      if (errno || *end != '\0' || end == optarg || optarg[0] == '-') {
        fprintf(stderr, "lwip-target: --chargen-bytes %s is not a byte count\n", optarg);
        return -1;
      }
      opt.chargen_limited = 1;
      break;
    case 'n':
      opt.dad = 0;
      break;
    case 'u':
      opt.mtu = atoi(optarg);
      if (opt.mtu < 1280 || opt.mtu > 0xFFFF) {
        fprintf(stderr, "lwip-target: --mtu %s: use 1280..65535 (IPv6 needs 1280)\n", optarg);
        return -1;
      }
      break;
    case 's':
      opt.seed = (unsigned)strtoul(optarg, NULL, 0);
      break;
    case 'E':
      if (parse_port("echo", optarg, &opt.port_echo) < 0)
        return -1;
      break;
    case 'D':
      if (parse_port("discard", optarg, &opt.port_discard) < 0)
        return -1;
      break;
    case 'C':
      if (parse_port("chargen", optarg, &opt.port_chargen) < 0)
        return -1;
      break;
    case 'a':
      opt.agent = 1;
      break;
    case 'h':
      usage(stdout);
      exit(0);
    default:
      usage(stderr);
      return -1;
    }
  }
  if (opt.tap == NULL || optind != argc) {
    usage(stderr);
    return -1;
  }
  return 0;
}

/* ---- start-up and the main loop ---- */

/* 1: every IPv6 address is usable; 0: DAD still running; -1: DAD found a duplicate. */
static int addresses_settled(void) {
  for (int i = 0; i < LWIP_IPV6_NUM_ADDRESSES; i++) {
    u8_t state = netif_ip6_addr_state(&tap_netif, i);
    if (ip6_addr_isduplicated(state))
      return -1;
    if (ip6_addr_istentative(state))
      return 0;
  }
  return 1;
}

static void print_ready(void) {
  const u8_t *m = opt.mac;
  printf("ready: mac %02x:%02x:%02x:%02x:%02x:%02x; addresses", m[0], m[1], m[2], m[3], m[4],
         m[5]);
  const char *sep = " ";
  if (opt.have_v4) {
    printf("%s%s/%d", sep, ip4addr_ntoa(&opt.v4), opt.v4_prefix);
    sep = ", ";
  }
  for (int i = 0; i < LWIP_IPV6_NUM_ADDRESSES; i++) {
    u8_t state = netif_ip6_addr_state(&tap_netif, i);
    if (!ip6_addr_isvalid(state))
      continue;
    /* lwIP 2.1 stores no IPv6 prefix length: on-link means the same /64. */
    int plen = i == 0 ? 64 : opt.v6_prefix;
    char text[IP6ADDR_STRLEN_MAX];
    ip6addr_ntoa_r(netif_ip6_addr(&tap_netif, i), text, sizeof text);
    for (char *ch = text; *ch; ch++) /* RFC 5952 4.3: lower case, as Linux prints it */
      *ch = (char)tolower((unsigned char)*ch);
    printf("%s%s/%d (%s)", sep, text, plen,
           ip6_addr_ispreferred(state) ? "preferred" : "deprecated");
    sep = ", ";
  }
  printf("; services");
  sep = " ";
  if (opt.port_echo) {
    printf("%secho:%d", sep, opt.port_echo);
    sep = ", ";
  }
  if (opt.port_discard) {
    printf("%sdiscard:%d", sep, opt.port_discard);
    sep = ", ";
  }
  if (opt.port_chargen) {
    printf("%schargen:%d", sep, opt.port_chargen);
    if (opt.chargen_limited)
      printf(":%llu", opt.chargen_bytes);
    sep = ", ";
  }
  if (sep[0] == ' ')
    printf(" none");
  printf("; lwip %s%s\n", LWIP_VERSION_STRING, opt.agent ? "; agent tcp-hil/1 on stdin" : "");
  fflush(stdout);
}

static void on_signal(int sig) { stop_signal = sig; }

int main(int argc, char **argv) {
  if (parse_args(argc, argv) < 0)
    return 2;
  /* Replies and console lines must reach a pipe at once, not when a 4 KB buffer fills. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* A reader that went away must not kill the target: the network side keeps serving. */
  signal(SIGPIPE, SIG_IGN);
  srandom(opt.seed);
  for (int i = 0; i < CHARGEN_LINES; i++)
    for (int j = 0; j < CHARGEN_LINE + 2; j++)
      chargen_pattern[i * (CHARGEN_LINE + 2) + j] =
          j < CHARGEN_LINE ? (char)(' ' + (i + j) % 95) : (j == CHARGEN_LINE ? '\r' : '\n');
  memcpy(chargen_pattern + CHARGEN_PERIOD, chargen_pattern, CHARGEN_PERIOD);

  tap_fd = tap_open(opt.tap);
  if (tap_fd < 0)
    return 1;

  /* SIGINT/SIGTERM are blocked except inside ppoll(), so a signal can never slip in between
   * the stop check and the wait and leave the loop asleep. */
  sigset_t block, waitmask;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &waitmask);
  sigdelset(&waitmask, SIGINT);
  sigdelset(&waitmask, SIGTERM);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  lwip_init();
  ip4_addr_t mask, gw;
  ip4_addr_set_u32(&mask, opt.v4_prefix ? lwip_htonl(0xFFFFFFFFu << (32 - opt.v4_prefix)) : 0);
  ip4_addr_set_zero(&gw);
  if (!opt.have_v4)
    ip4_addr_set_zero(&opt.v4);
  netif_add(&tap_netif, &opt.v4, &mask, &gw, NULL, tap_netif_init, netif_input);
  netif_create_ip6_linklocal_address(&tap_netif, 1);
  if (opt.have_v6 && netif_add_ip6_address(&tap_netif, &opt.v6, NULL) != ERR_OK) {
    fprintf(stderr, "lwip-target: no free IPv6 address slot\n");
    return 1;
  }
  if (!opt.dad)
    for (int i = 0; i < LWIP_IPV6_NUM_ADDRESSES; i++)
      if (ip6_addr_istentative(netif_ip6_addr_state(&tap_netif, i)))
        netif_ip6_addr_set_state(&tap_netif, i, IP6_ADDR_PREFERRED);
  netif_set_default(&tap_netif);
  netif_set_link_up(&tap_netif);
  netif_set_up(&tap_netif);

  if (listen_on(opt.port_echo, ECHO) < 0 || listen_on(opt.port_discard, DISCARD) < 0 ||
      listen_on(opt.port_chargen, CHARGEN) < 0)
    return 1;
  if (opt.agent)
    agent_init();

  /* One pollfd per input: the TAP, and stdin for the agent (fd -1, i.e. ignored by ppoll,
   * without --agent, after EOF, and while a command waits for the network). */
  struct pollfd fds[] = {{.fd = tap_fd, .events = POLLIN}, {.fd = -1, .events = POLLIN}};
  int ready = 0;
  int status = 0;
  while (!stop_signal) {
    if (!ready) {
      int settled = addresses_settled();
      if (settled < 0) {
        fprintf(stderr, "lwip-target: duplicate address detected; giving up\n");
        status = 1;
        break;
      }
      if (settled > 0) {
        print_ready();
        ready = 1;
      }
    }
    fds[1].fd = agent_wants_input() ? STDIN_FILENO : -1;
    u32_t sleep_ms = sys_timeouts_sleeptime();
    if (opt.agent)
      sleep_ms = agent_sleeptime(sleep_ms);
    struct timespec timeout = {.tv_sec = sleep_ms / 1000, .tv_nsec = (long)(sleep_ms % 1000) * 1000000};
    int n = ppoll(fds, sizeof fds / sizeof fds[0],
                  sleep_ms == SYS_TIMEOUTS_SLEEPTIME_INFINITE ? NULL : &timeout, &waitmask);
    if (n < 0 && errno != EINTR) {
      perror("lwip-target: ppoll");
      status = 1;
      break;
    }
    if (n > 0 && (fds[0].revents & POLLIN))
      tap_drain();
    if (n > 0 && fds[1].fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)))
      agent_input();
    sys_check_timeouts();
    if (opt.agent)
      agent_progress();
  }
  close(tap_fd);
  printf("frames in %lu, out %lu, rx dropped for want of a pbuf %lu, tx errors %lu, "
         "connections %lu\n",
         counters.rx_frames, counters.tx_frames, counters.rx_no_pbuf, counters.tx_errors,
         counters.connections);
  fflush(stdout);
  return status;
}

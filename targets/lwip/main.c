/* tcp-hil's lwIP target: lwIP as a bare-metal firmware would run it, as a Linux process on a TAP.
 *
 * NO_SYS=1 and the raw API, one thread: the loop waits in ppoll() on the TAP (and later on
 * stdin, for the agent protocol) with lwIP's next timer deadline as the timeout, feeds every
 * frame to the netif, then runs the due timers. That is the super-loop of an Ethernet MCU with
 * the DMA ring replaced by read()/write() on a TAP, so what the harness measures is lwIP's own
 * behaviour, not a threading port's.
 *
 * Services (level-0 target contract, identical to `hil stack serve`):
 *   echo 7 (RFC 862), discard 9 (RFC 863), chargen 19 (RFC 864; with --chargen-bytes N it
 *   sends N bytes of the pattern and closes, so bulk transfers end by themselves).
 * Each listens once for IPv4 and IPv6 (IPADDR_TYPE_ANY).
 *
 * Usage:
 *   lwip-target --tap NAME --mac 02:00:00:00:00:03 --ipv4 10.77.0.3/24
 *               --ipv6 2001:db8:77::3/64 [--chargen-bytes N] [--no-dad] [--mtu 1500] [--seed S]
 * Prints "ready: ..." on stdout once every IPv6 address has passed DAD; exits 0 on
 * SIGTERM/SIGINT after printing its frame counters.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
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
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "netif/ethernet.h"

#define PORT_ECHO 7
#define PORT_DISCARD 9
#define PORT_CHARGEN 19

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
} opt = {.mac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x03}, .dad = 1, .mtu = 1500};

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

static void chargen_fill(struct conn *c) {
  struct tcp_pcb *pcb = c->pcb;
  for (;;) {
    u32_t len = LWIP_MIN((u32_t)tcp_sndbuf(pcb), (u32_t)CHARGEN_PERIOD);
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

static int listen_on(u16_t port, enum kind kind) {
  struct tcp_pcb *pcb = tcp_new_ip_type(IPADDR_TYPE_ANY);
  if (pcb == NULL || tcp_bind(pcb, IP_ANY_TYPE, port) != ERR_OK) {
    fprintf(stderr, "lwip-target: cannot bind TCP port %u\n", port);
    return -1;
  }
  struct tcp_pcb *lpcb = tcp_listen(pcb);
  if (lpcb == NULL) {
    fprintf(stderr, "lwip-target: cannot listen on TCP port %u\n", port);
    return -1;
  }
  tcp_arg(lpcb, (void *)(uintptr_t)kind);
  tcp_accept(lpcb, on_accept);
  return 0;
}

/* ---- command line ---- */

static void usage(FILE *to) {
  fprintf(to,
          "usage: lwip-target --tap NAME [--mac MAC] [--ipv4 ADDR/LEN] [--ipv6 ADDR/LEN]\n"
          "                   [--chargen-bytes N] [--no-dad] [--mtu N] [--seed N]\n"
          "Serves echo 7, discard 9 and chargen 19 over TCP (IPv4 and IPv6) on TAP NAME.\n");
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
  printf("; services echo:%d, discard:%d, chargen:%d", PORT_ECHO, PORT_DISCARD, PORT_CHARGEN);
  if (opt.chargen_limited)
    printf(":%llu", opt.chargen_bytes);
  printf("; lwip %s\n", LWIP_VERSION_STRING);
  fflush(stdout);
}

static void on_signal(int sig) { stop_signal = sig; }

int main(int argc, char **argv) {
  if (parse_args(argc, argv) < 0)
    return 2;
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

  if (listen_on(PORT_ECHO, ECHO) < 0 || listen_on(PORT_DISCARD, DISCARD) < 0 ||
      listen_on(PORT_CHARGEN, CHARGEN) < 0)
    return 1;

  /* One pollfd per input; the agent protocol adds stdin here. */
  struct pollfd fds[] = {{.fd = tap_fd, .events = POLLIN}};
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
    u32_t sleep_ms = sys_timeouts_sleeptime();
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
    sys_check_timeouts();
  }
  close(tap_fd);
  printf("frames in %lu, out %lu, rx dropped for want of a pbuf %lu, tx errors %lu, "
         "connections %lu\n",
         counters.rx_frames, counters.tx_frames, counters.rx_no_pbuf, counters.tx_errors,
         counters.connections);
  fflush(stdout);
  return status;
}

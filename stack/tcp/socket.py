"""One TCP connection: the RFC 9293 state machine with the extensions a modern stack has.

Sans-IO like the rest of the stack: segments and the current time come in through
:meth:`TcpSocket.input` (called by :class:`~stack.tcp.layer.TcpLayer`), segments leave through
the layer, and :meth:`TcpSocket.poll_at` tells the driver when a timer is next due. The user
API (``send``, ``recv``, ``shutdown``, ``close``, ``abort``) takes no time: what it causes goes
out on the next ``poll``.

Internally the send and receive sides count in *stream offsets* (unbounded ints: data byte
``i`` has sequence number ``ISS + 1 + i``; the SYN sits at offset -1 and the FIN right after the
last data byte). Sequence numbers appear only where segments are built or parsed, so wrap-around
is handled in exactly two conversion functions.

Every behaviour a probe measures is driven by the :class:`~stack.tcp.profile.TcpConfig`: RTO
(RFC 6298 with Karn and back-off), SYN and data retry limits, delayed ACK, Nagle, sender and
receiver SWS avoidance, zero-window probing, keep-alive, out-of-order queueing with a bounded
number of holes, MSS/WS/SACK/TS/ECN/TFO options, RFC 5961 checks, and congestion control.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from stack.tcp import seq as S
from stack.tcp.buffers import Reassembly, Scoreboard
from stack.tcp.congestion import CongestionControl, make_congestion_control
from stack.tcp.hooks import Segment, SegmentHook, SegmentRecord
from stack.tcp.profile import TcpConfig
from stack.tcp.rtt import KarnSampler, RttEstimator
from stack.wire.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    OptFastOpen,
    OptMss,
    OptNop,
    OptSack,
    OptSackPermitted,
    OptTimestamps,
    OptWindowScale,
    TcpHeader,
    TcpOption,
)

if TYPE_CHECKING:
    from stack.tcp.layer import TcpLayer

log = logging.getLogger(__name__)

MASK = 0xFFFFFFFF
_NOP = OptNop()
_DUPTHRESH = 3
_MAX_WS = 14


class State(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    def __str__(self) -> str:
        return self.value


CLOSED = State.CLOSED
SYN_SENT = State.SYN_SENT
SYN_RECEIVED = State.SYN_RECEIVED
ESTABLISHED = State.ESTABLISHED
FIN_WAIT_1 = State.FIN_WAIT_1
FIN_WAIT_2 = State.FIN_WAIT_2
CLOSE_WAIT = State.CLOSE_WAIT
CLOSING = State.CLOSING
LAST_ACK = State.LAST_ACK
TIME_WAIT = State.TIME_WAIT

_SYNCHRONIZED = frozenset(
    {ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT}
)
_CAN_SEND = frozenset({SYN_SENT, SYN_RECEIVED, ESTABLISHED, CLOSE_WAIT})
_RECEIVES_DATA = frozenset({SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})
_OUR_FIN_SENT = frozenset({FIN_WAIT_1, FIN_WAIT_2, CLOSING, LAST_ACK, TIME_WAIT})


class TcpError(ConnectionError):
    """A user call the connection's state does not allow (RFC 9293 3.10 error responses)."""


Callback = Callable[["TcpSocket"], None]


class TcpSocket:
    """A connection endpoint. Create through :meth:`TcpLayer.connect` or a listener."""

    def __init__(
        self,
        layer: TcpLayer,
        config: TcpConfig,
        local: bytes,
        local_port: int,
        remote: bytes,
        remote_port: int,
    ) -> None:
        self.layer = layer
        self.cfg = config
        self.local = local
        self.local_port = local_port
        self.remote = remote
        self.remote_port = remote_port
        self.key = (local, local_port, remote, remote_port)
        self.v6 = len(local) == 16
        self._advmss = max(min(config.mss, layer.mtu - (60 if self.v6 else 40)), 1)
        self.state = CLOSED
        self.error: str | None = None  # "refused", "reset", "timeout", "aborted"
        self.listener: object | None = None  # the Listener that spawned us (passive open)
        self.hook: SegmentHook | None = None
        self.log: list[SegmentRecord] | None = None  # set to [] to record segments
        self.window_override: int | None = None  # raw window field to advertise (probes)
        self.nagle = config.nagle
        self.keepalive = config.keepalive
        # user callbacks (called during input/poll processing; they may call the user API)
        self.on_connected: Callback | None = None
        self.on_readable: Callback | None = None
        self.on_writable: Callback | None = None
        self.on_closed: Callback | None = None

        # --- send side (stream offsets; -1 is the SYN)
        self.iss = 0
        self.snd_una = -1
        self.snd_nxt = -1
        self.snd_max = -1
        self._sbuf = bytearray()
        self._sbuf_base = 0  # offset of _sbuf[0]
        self._fin_queued = False
        self.snd_wnd = 0
        self.max_snd_wnd = 0
        self._wl1 = 0  # sequence number of the segment that last updated the window
        self._wl2 = -1  # ack offset of that segment
        self.snd_shift = 0  # peer's window scale
        self.peer_mss: int | None = None
        self.snd_mss = 536
        self.dupacks = 0
        self.rtt = RttEstimator(config.rto)
        self._karn = KarnSampler()
        self.cc: CongestionControl = make_congestion_control(
            config.congestion_control,
            536,
            initial_window=config.initial_window,
            limited_transmit=config.limited_transmit,
        )
        self._retries = 0  # consecutive RTO expiries without progress (R2 / SYN retries)
        self._una_since: int | None = None  # when the oldest unacknowledged data was sent
        self._last_send = 0
        self._recovering = False  # SACK (RFC 6675) or NewReno (RFC 6582) loss recovery
        self._recover = -2  # RFC 6582 "recover", as an offset: below any cumulative ACK
        self._rcv_mss = 536  # largest segment seen from the peer (for "every 2nd full")
        self._recovery_point = 0
        self._high_rxt = 0
        self.scoreboard = Scoreboard()
        # --- receive side
        self.irs = 0
        self.rcv_nxt = 0  # offset of the next byte expected (valid once SYN is received)
        self.rcv_adv = 0  # right edge of the window we advertised
        self.rcv_shift = 0
        self._rbuf = bytearray()
        self._ooo = Reassembly(config.ooo_max_holes)
        self._ooo_fin: int | None = None
        self._fin_rcvd = False
        self._app_closed = False
        self._ack_now = False
        self._unacked_segs = 0
        self._dsack: tuple[int, int] | None = None
        self._last_rx = 0
        # --- options
        self.ts_ok = False
        self.ts_recent = 0
        self._ts_last_ack = 0  # offset of the last ACK we sent (Last.ACK.sent)
        self._ts_offset = 0
        self.sack_ok = False
        self.ecn_ok = False
        self._ece_pending = False  # we saw CE: echo ECE until the peer sends CWR
        self._cwr_pending = False  # we reacted to ECE: set CWR on the next data segment
        self._ecn_recover = -1
        self.tfo_cookie: bytes | None = None
        self._tfo_data = 0  # bytes carried in our SYN
        # --- timers (absolute µs or None)
        self._t_rtx: int | None = None
        self._t_persist: int | None = None
        self._persist_backoff = 0
        self._t_delack: int | None = None
        self._t_keep: int | None = None
        self._keep_probes = 0
        self._t_close: int | None = None  # TIME-WAIT
        self._t_sws: int | None = None
        self._deadline: int | None = None
        # statistics a test or report reads
        self.stats: dict[str, int] = {
            "segs_in": 0,
            "segs_out": 0,
            "retransmits": 0,
            "rto": 0,
            "fast_retransmits": 0,
            "zwp": 0,
            "keepalives": 0,
            "challenge_acks": 0,
            "bytes_in": 0,
            "bytes_out": 0,
            "dup_bytes_in": 0,
            "ooo_dropped": 0,
        }

    def __repr__(self) -> str:
        return (
            f"<TcpSocket {self.state} {_addr(self.local)}:{self.local_port} -> "
            f"{_addr(self.remote)}:{self.remote_port}>"
        )

    # ================================================================== user API

    @property
    def established(self) -> bool:
        return self.state in _SYNCHRONIZED

    @property
    def send_space(self) -> int:
        if self.state not in _CAN_SEND or self._fin_queued:
            return 0
        return max(0, self.cfg.snd_buf - len(self._sbuf))

    @property
    def unsent(self) -> int:
        return self._sbuf_base + len(self._sbuf) - max(self.snd_nxt, 0)

    @property
    def unacked(self) -> int:
        return len(self._sbuf)

    @property
    def readable(self) -> int:
        return len(self._rbuf)

    @property
    def eof(self) -> bool:
        """The peer closed its side and everything it sent has been read."""
        return self._fin_rcvd and not self._rbuf

    @property
    def snd_seq(self) -> int:
        """SND.NXT as a sequence number (for injection and probes)."""
        return self._seq(self.snd_nxt)

    @property
    def rcv_seq(self) -> int:
        """RCV.NXT as a sequence number."""
        return self._rseq(self.rcv_nxt)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Queue data; returns how much fitted in the send buffer (RFC 9293 SEND)."""
        if self.state not in _CAN_SEND or self._fin_queued:
            if self.error:
                raise TcpError(f"connection {self.error}")
            raise TcpError("connection closing")
        n = min(len(data), self.cfg.snd_buf - len(self._sbuf))
        if n > 0:
            self._sbuf += data[:n] if n < len(data) else data
            self.layer.wake(self)
        return max(n, 0)

    def recv(self, max_bytes: int = -1) -> bytes:
        """Take received in-order data; ``b""`` with :attr:`eof` set means the peer closed."""
        if max_bytes < 0 or max_bytes >= len(self._rbuf):
            out = bytes(self._rbuf)
            self._rbuf.clear()
        else:
            out = bytes(self._rbuf[:max_bytes])
            del self._rbuf[:max_bytes]
        if out and self.state in _RECEIVES_DATA:
            # A window update of its own only when reading opened the window a lot: to at least
            # twice what the peer may still send (Linux __tcp_cleanup_rbuf), by at least
            # min(RCV.BUFF/2, MSS) (RFC 9293 3.8.6.2.2). Otherwise the next ACK carries it.
            left = self.rcv_adv - self.rcv_nxt
            new = self._window_field() << self.rcv_shift
            if new >= 2 * left and new - left >= min(self.cfg.rcv_buf // 2, self._adv_mss()):
                self._ack_now = True
                self.layer.wake(self)
        return out

    def shutdown(self) -> None:
        """Half-close: send FIN after the queued data; receiving goes on (RFC 9293 CLOSE)."""
        st = self.state
        if self._fin_queued or st in (CLOSED, State.LISTEN):
            return
        if st is SYN_SENT and not self._sbuf:
            self._enter_closed(None)  # RFC 9293 3.10.4: nothing queued, delete the TCB
            return
        # with data queued, SYN-SENT does what RFC 9293 asks of SYN-RECEIVED: the FIN
        # follows the data once the connection is established
        self._fin_queued = True
        if st is ESTABLISHED:
            self._set_state(FIN_WAIT_1)  # SYN-RECEIVED moves there once established
        elif st is CLOSE_WAIT:
            self._set_state(LAST_ACK)
        self.layer.wake(self)

    def close(self) -> None:
        """No more sending or reading: FIN after queued data; later data is acked and dropped."""
        self._app_closed = True
        self._rbuf.clear()
        self.shutdown()

    def abort(self) -> None:
        """RFC 9293 ABORT: send RST if synchronised, drop everything."""
        if self.state in _SYNCHRONIZED or self.state is SYN_RECEIVED:
            self._send_rst(self.layer.now, self._seq(self.snd_nxt))
        self._enter_closed("aborted")

    def set_keepalive(self, on: bool) -> None:
        self.keepalive = on
        self._arm_keepalive(self.layer.now)

    # ================================================================== sequence helpers

    def _seq(self, off: int) -> int:
        return (self.iss + 1 + off) & MASK

    def _rseq(self, off: int) -> int:
        return (self.irs + 1 + off) & MASK

    def _q(self, t: int) -> int:
        """Quantise a deadline up to the profile's timer tick (lwIP and uIP poll timers)."""
        tick = self.cfg.timer_tick_us
        if tick:
            return -(-t // tick) * tick
        return t

    def _after(self, start: int, d: int, rto: bool = False) -> int:
        """The deadline of a timer of ``d`` µs started at ``start``.

        A tick-driven stack counts whole ticks from the next tick on, so its timer fires on the
        first tick at which ``d`` has elapsed in ticks: somewhere in (start + d - tick,
        start + d], plus ``timer_extra_ticks`` ticks (uIP). lwIP counts retransmission and
        persist timers in 500 ms slow-timer ticks (``rto.tick_us``) and the rest on its 250 ms
        timer tick; uIP counts everything in 500 ms ticks.
        """
        tick = (self.cfg.rto.tick_us or self.cfg.timer_tick_us) if rto else self.cfg.timer_tick_us
        if not tick:
            return start + d
        first = -(-(start + max(d - tick, 0) + 1) // tick) * tick
        return first + self.cfg.timer_extra_ticks * tick

    def _set_state(self, st: State) -> None:
        if st is self.state:
            return
        self.layer.counters[f"tcp.state.{st.value}"] += 1
        self.state = st

    # ================================================================== opening

    def open_active(self, now: int, iss: int, data: bytes = b"") -> None:
        """Send a SYN (with TFO data when a cookie is known)."""
        self.iss = iss
        self.snd_una = -1
        self.snd_nxt = -1
        self.snd_max = -1
        self._ts_offset = self.layer.rng.u32()
        self._set_state(SYN_SENT)
        if data:
            self._sbuf += data
        self._last_rx = now
        self._send_syn(now)

    def open_passive(self, now: int, iss: int, syn: Segment) -> None:
        """We are a listener's child: process the SYN, reply SYN-ACK."""
        hdr = syn.hdr
        self.iss = iss
        self.irs = hdr.seq
        self.rcv_nxt = 0
        self._ts_offset = self.layer.rng.u32()
        self._last_rx = now
        self._take_syn_options(hdr, active=False)
        self._set_state(SYN_RECEIVED)
        # ECN (RFC 3168 6.1.1): a SYN with ECE and CWR asks for ECN
        ecn = self.cfg.ecn or self.cfg.ecn_server
        if ecn and hdr.flags & (ECE | CWR) == (ECE | CWR):
            self.ecn_ok = True
        # TFO (RFC 7413 4.2.2): data in the SYN is accepted only with a valid cookie; a
        # cookie request or a bad cookie gets a fresh cookie in the SYN-ACK
        cookie = hdr.fast_open
        if self.cfg.fast_open and cookie is not None:
            good = self.layer.tfo_cookie(self.remote)
            if cookie == good:
                if syn.payload:
                    self._deliver(now, 0, syn.payload)
                    self.layer.counters["tcp.tfo.accepted"] += 1
            else:
                self.tfo_cookie = good
                if cookie:
                    self.layer.counters["tcp.tfo.bad-cookie"] += 1
        self._init_rcv_window()
        self._send_syn(now)

    def _syn_options(self, synack: bool) -> list[TcpOption]:
        cfg = self.cfg
        layer = self.layer
        opts: list[TcpOption] = [OptMss(self._adv_mss())]
        want_ts = cfg.timestamps and (not synack or self.ts_ok)
        want_sack = cfg.sack and (not synack or self.sack_ok)
        want_ws = cfg.window_scale and (not synack or self._peer_ws is not None)
        if want_sack:
            opts.append(OptSackPermitted())
        if want_ts:
            opts.append(OptTimestamps(self._tsval(layer.now), self.ts_recent if synack else 0))
        if want_ws:
            opts += [_NOP, OptWindowScale(self.rcv_shift)]
        if synack:
            if self.tfo_cookie:
                opts.append(OptFastOpen(self.tfo_cookie))
        elif self.tfo_cookie or self._tfo_request:
            opts.append(OptFastOpen(self.tfo_cookie or b""))  # b"": cookie request
        return opts

    _peer_ws: int | None = None
    _tfo_request = False

    def _adv_mss(self) -> int:
        return self._advmss

    def _init_rcv_window(self) -> None:
        cfg = self.cfg
        shift = 0
        # RFC 7323 2.2: scale only when offered in our SYN and the peer's SYN has the option
        if cfg.window_scale and (self.state is SYN_SENT or self._peer_ws is not None):
            while (cfg.rcv_buf >> shift) > 0xFFFF and shift < _MAX_WS:
                shift += 1
        self.rcv_shift = shift
        self.rcv_adv = self.rcv_nxt + min(cfg.rcv_buf, 0xFFFF)

    def _send_syn(self, now: int) -> None:
        synack = self.state is SYN_RECEIVED
        flags = SYN
        if synack:
            flags |= ACK
            if self.ecn_ok:
                flags |= ECE
        elif self.cfg.ecn:
            flags |= ECE | CWR
        if not synack:
            self._init_rcv_window()
        opts = self._syn_options(synack)
        payload = b""
        if not synack and self.tfo_cookie and self._sbuf:
            # RFC 7413 3: data in the SYN, as much as fits one segment with the default MSS
            n = min(len(self._sbuf), self._default_mss() - 40)
            payload = bytes(self._sbuf[:n])
            self._tfo_data = n
            self.layer.counters["tcp.tfo.syn-data"] += 1
        window = min(self.cfg.rcv_buf, 0xFFFF)
        ack = self._rseq(self.rcv_nxt) if synack else 0
        retrans = self.snd_max >= 0
        if retrans:
            self._karn.on_retransmit()
        else:
            self._karn.on_send(now, len(payload))
        self._emit(now, flags, self.iss, ack, window, opts, payload, retransmit=retrans)
        self.snd_nxt = max(len(payload), 0)  # SYN and its data consumed offsets -1 .. len-1
        if self.snd_max < self.snd_nxt:
            self.snd_max = self.snd_nxt
        if self._t_rtx is None:
            self._t_rtx = self._after(now, self._syn_rto(), rto=True)
        if self._una_since is None:
            # the user timeout covers the open too (RFC 9293 3.10.1 OPEN's timeout; RIOT's
            # connection timeout bounds gnrc_tcp_open)
            self._una_since = now

    def _syn_rto(self) -> int:
        cfg = self.cfg
        rto = max(cfg.rto.initial_us, cfg.rto.min_us)
        if cfg.syn_backoff:
            rto = min(rto << min(self._retries, cfg.rto.max_backoff), max(cfg.rto.max_us, rto))
        if cfg.rto.tick_us:
            rto = -(-rto // cfg.rto.tick_us) * cfg.rto.tick_us
        return rto

    def _default_mss(self) -> int:
        return self.cfg.default_send_mss_v6 if self.v6 else self.cfg.default_send_mss

    def _take_syn_options(self, hdr: TcpHeader, active: bool) -> None:
        """Negotiate from the peer's SYN or SYN-ACK (RFC 9293 3.7.1, RFC 7323, RFC 2018)."""
        cfg = self.cfg
        mss = hdr.mss
        self.peer_mss = mss
        ws = hdr.window_scale
        self._peer_ws = ws
        if cfg.window_scale and ws is not None:
            self.snd_shift = min(ws, _MAX_WS)
        else:
            self.snd_shift = 0
            self.rcv_shift = 0
        ts = hdr.timestamps
        self.ts_ok = bool(cfg.timestamps and ts is not None)
        if self.ts_ok and ts is not None:
            self.ts_recent = ts[0]
        self.sack_ok = bool(cfg.sack and hdr.sack_permitted)
        self._set_snd_mss()
        self.snd_wnd = hdr.window  # never scaled in a SYN
        self.max_snd_wnd = self.snd_wnd
        self._wl1 = hdr.seq
        self._wl2 = -1

    def _set_snd_mss(self) -> None:
        hdrs = 60 if self.v6 else 40
        peer = self.peer_mss if self.peer_mss is not None else self._default_mss()
        mss = min(peer, self.layer.mtu - hdrs)
        if self.ts_ok:
            mss -= 12  # RFC 9293 3.7.1: the effective MSS leaves room for options
        self.snd_mss = max(mss, 1)
        self.cc.set_mss(self.snd_mss)

    def _established(self, now: int) -> None:
        self._set_state(FIN_WAIT_1 if self._fin_queued else ESTABLISHED)
        self._retries = 0
        self._arm_keepalive(now)
        self.layer.counters["tcp.established"] += 1
        if self.on_connected:
            self.on_connected(self)
        if self.listener is not None:
            self.layer.accepted(self)

    # ================================================================== input

    def input(self, now: int, seg: Segment) -> None:
        """Process one inbound segment (RFC 9293 3.10.7)."""
        self.stats["segs_in"] += 1
        if self.log is not None:
            self.log.append(SegmentRecord.of(now, "in", seg))
        st = self.state
        if st is SYN_SENT:
            self._input_syn_sent(now, seg)
        elif st is CLOSED:
            return
        else:
            self._input_synchronized(now, seg)
        if self.state is not CLOSED:
            self._output(now)

    def _input_syn_sent(self, now: int, seg: Segment) -> None:
        hdr = seg.hdr
        flags = hdr.flags
        ack_ok = False
        if flags & ACK:
            a = S.diff(hdr.ack, self.iss)
            if a <= 0 or a > self.snd_max + 1:
                if not flags & RST:
                    self._send_rst(now, hdr.ack)
                self.layer.counters["tcp.rx.drop.bad-ack-syn-sent"] += 1
                return
            ack_ok = True
        if flags & RST:
            if ack_ok:
                self._enter_closed("refused")
            return
        if not flags & SYN:
            return
        self.irs = hdr.seq
        self.rcv_nxt = 0
        self._take_syn_options(hdr, active=True)
        if self.cfg.ecn and flags & (ECE | CWR) == ECE:
            self.ecn_ok = True
        if self._tfo_request or self.tfo_cookie is not None:
            cookie = hdr.fast_open
            if cookie:
                self.layer.tfo_cache[self.remote] = cookie
        if ack_ok:
            ack_off = -1 + S.diff(hdr.ack, self.iss)
            self._process_new_ack(now, ack_off, hdr)
            if self.snd_nxt < self.snd_una:
                self.snd_nxt = self.snd_una
            self._established(now)
            if self._tfo_data and ack_off < self._tfo_data:
                # RFC 7413 4.1.3: the server took the SYN but not its data: send it again
                self.snd_nxt = max(self.snd_una, 0)
                self.layer.counters["tcp.tfo.data-not-acked"] += 1
            if seg.payload or flags & FIN:
                self._input_text(now, seg, -1, hdr)
            self._ack_now = True
        else:
            # simultaneous open (RFC 9293 3.5, figure 8)
            self._set_state(SYN_RECEIVED)
            self._t_rtx = None
            self._retries = 0
            self._send_syn(now)

    def _input_synchronized(self, now: int, seg: Segment) -> None:
        hdr = seg.hdr
        flags = hdr.flags
        cfg = self.cfg
        rcv_nxt_seq = self._rseq(self.rcv_nxt)
        off = self.rcv_nxt + S.diff(hdr.seq, rcv_nxt_seq)
        plen = len(seg.payload)
        seg_len = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        wnd = self.rcv_adv - self.rcv_nxt
        self._last_rx = now
        self._keep_probes = 0

        # RFC 7323 5.3: PAWS, before the sequence check
        ts = hdr.timestamps if self.ts_ok else None
        if ts is not None and not flags & RST:
            if S.lt(ts[0], self.ts_recent) and self.state is not SYN_RECEIVED:
                self.layer.counters["tcp.rx.drop.paws"] += 1
                self._ack_now = True
                return

        # The peer's SYN again (at IRS) in SYN-RECEIVED fails the window test, being below
        # RCV.NXT, yet is no duplicate to just ACK. A plain SYN means our SYN-ACK was lost: send
        # it again (as BSD and Linux do). A SYN-ACK is the other half of a simultaneous open
        # (RFC 9293 figure 8, line 6): its ACK completes the handshake (as in Linux
        # tcp_validate_incoming), so it goes on to the ACK processing below.
        resyn = self.state is SYN_RECEIVED and off == -1 and flags & (SYN | RST) == SYN
        if resyn and not flags & ACK:
            self._send_syn(now)
            return

        # 1. sequence number acceptability (RFC 9293 3.10.7.4, the four cases)
        end = off + seg_len
        if seg_len == 0:
            ok = off == self.rcv_nxt if wnd == 0 else self.rcv_nxt <= off < self.rcv_nxt + wnd
        elif wnd == 0:
            ok = False
        else:
            ok = (self.rcv_nxt <= off < self.rcv_nxt + wnd) or (
                self.rcv_nxt < end <= self.rcv_nxt + wnd
            )
        if not ok and not resyn:
            if flags & RST:
                self.layer.counters["tcp.rx.drop.rst-out-of-window"] += 1
                return
            if end <= self.rcv_nxt and plen:
                # a complete duplicate: report it with a D-SACK (RFC 2883 4.1)
                self.stats["dup_bytes_in"] += plen
                if self.sack_ok:
                    self._dsack = (off, end)
            self.layer.counters["tcp.rx.drop.out-of-window"] += 1
            if wnd == 0 and plen and off == self.rcv_nxt and flags & ACK:
                # zero window: still process the ACK and window fields (RFC 9293 3.10.7.4)
                self._input_ack(now, seg, hdr)
            if self.state is TIME_WAIT and flags & FIN:
                self._t_close = self._after(now, cfg.time_wait_us)
            self._ack_now = True
            return

        # 2. RST (RFC 5961 3.2)
        if flags & RST:
            if off == self.rcv_nxt or not cfg.rfc5961:
                self._on_reset(now)
            else:
                self._challenge_ack(now)
            return

        # 4. SYN in a synchronised state (RFC 5961 4.2; RFC 9293 3.10.7.4 fourth)
        if flags & SYN and not resyn:
            if cfg.rfc5961:
                self._challenge_ack(now)
            else:
                self._send_rst(now, self._seq(self.snd_nxt))
                self._enter_closed("reset")
            return

        # 5. ACK
        if not flags & ACK:
            self.layer.counters["tcp.rx.drop.no-ack"] += 1
            return
        if self.state is SYN_RECEIVED:
            a = -1 + S.diff(hdr.ack, self.iss)
            if self.snd_una < a <= self.snd_max:
                self._established(now)
                if self.state is CLOSED:
                    return
            else:
                self._send_rst(now, hdr.ack)
                return
        if not self._input_ack(now, seg, hdr):
            return
        if self.state is CLOSED:
            return

        # 7. segment text and 8. FIN
        if ts is not None and off <= self._ts_last_ack:
            self.ts_recent = ts[0]  # RFC 7323 4.3 (PAWS above made sure it is not older)
        # CWR before CE: a CWR segment that is itself CE-marked asks for ECE again (RFC 3168
        # 6.1.3: only ACKs of *non-CE* data after the CWR go without ECE; Linux does the same)
        if flags & CWR and self.ecn_ok:
            self._ece_pending = False
        if seg.ecn == 3 and self.ecn_ok:
            self._ece_pending = True
            self.layer.counters["tcp.ecn.ce-received"] += 1
        if plen or flags & FIN:
            self._input_text(now, seg, off, hdr)

    # ------------------------------------------------------------------ ACK processing

    def _input_ack(self, now: int, seg: Segment, hdr: TcpHeader) -> bool:
        """Returns False when the segment must be dropped after this step."""
        ack_off = self.snd_una + S.diff(hdr.ack, self._seq(self.snd_una))
        if ack_off > self.snd_max:
            # acks something not yet sent (RFC 9293: send an ACK, drop the segment)
            self.layer.counters["tcp.rx.drop.ack-unsent"] += 1
            if self.cfg.rfc5961:
                self._challenge_ack(now)
            else:
                self._ack_now = True
            return False
        if self.cfg.rfc5961 and ack_off < self.snd_una - max(self.max_snd_wnd, 1):
            # RFC 5961 5.2: too old to be acceptable
            self.layer.counters["tcp.rx.drop.ack-too-old"] += 1
            self._challenge_ack(now)
            return False
        old_wnd = self.snd_wnd
        if self._t_persist is not None and self._una_since is not None:
            self._una_since = now  # MUST-37: a peer answering probes is not timed out
        # window update (RFC 9293 3.10.7.4, SND.WL1/WL2)
        if S.lt(self._wl1, hdr.seq) or (self._wl1 == hdr.seq and self._wl2 <= ack_off):
            self.snd_wnd = hdr.window << self.snd_shift
            self._wl1 = hdr.seq
            self._wl2 = ack_off
            if self.snd_wnd > self.max_snd_wnd:
                self.max_snd_wnd = self.snd_wnd
            if self.snd_wnd and self._t_persist is not None:
                self._t_persist = None
                self._persist_backoff = 0
                # the probe octet has no retransmission timer: send it again with the rest
                self.snd_nxt = self.snd_una
        sack = hdr.sack_blocks if self.sack_ok else None
        new_sacked = 0
        if sack:
            new_sacked = self._take_sack(ack_off, sack)
        if hdr.flags & ECE and self.ecn_ok and not hdr.flags & SYN:
            if ack_off > self._ecn_recover or self._ecn_recover < 0:
                self.cc.on_ece(now, self.snd_max - max(self.snd_una, 0))
                self._ecn_recover = self.snd_max
                self._cwr_pending = True
                self.layer.counters["tcp.ecn.ece-reaction"] += 1
        if ack_off > self.snd_una:
            self._process_new_ack(now, ack_off, hdr)
        elif (
            ack_off == self.snd_una
            and not seg.payload
            and not hdr.flags & (SYN | FIN)
            and self.snd_max > self.snd_una
            and (self.snd_wnd == old_wnd or new_sacked)
            and self.snd_wnd > 0  # answers to zero-window probes are no loss signal (BSD)
        ):
            self._on_dupack(now, new_sacked)
        return True

    def _take_sack(self, ack_off: int, blocks: tuple[tuple[int, int], ...]) -> int:
        base_seq = self._seq(self.snd_una)
        new = 0
        for left, right in blocks:
            lo = self.snd_una + S.diff(left, base_seq)
            hi = self.snd_una + S.diff(right, base_seq)
            if hi <= ack_off or lo >= hi or hi > self.snd_max:
                continue  # D-SACK or bogus
            new += self.scoreboard.add(max(lo, ack_off), hi)
        return new

    def _process_new_ack(self, now: int, ack_off: int, hdr: TcpHeader) -> None:
        acked = ack_off - max(self.snd_una, 0)  # data bytes: the SYN is not counted
        data_end = self._sbuf_base + len(self._sbuf)
        # release acknowledged data
        cut = min(ack_off, data_end) - self._sbuf_base
        if cut > 0:
            del self._sbuf[:cut]
            self._sbuf_base += cut
        self.snd_una = ack_off
        if self.snd_nxt < ack_off:
            self.snd_nxt = ack_off
        self.scoreboard.ack(ack_off)
        flight = self.snd_max - ack_off
        # RTT sample: timestamps (RFC 7323 4) or Karn's one timed segment
        rtt_sample: int | None = None
        if self.ts_ok:
            rtt_sample = self._ts_sample(now, hdr)
        else:
            s = self._karn.on_ack(now, ack_off)
            if s is not None:
                self.rtt.sample(s)
                rtt_sample = s
        self._retries = 0
        self.dupacks = 0
        cc = self.cc
        if self._recovering:
            if ack_off >= self._recovery_point:
                self._recovering = False
                cc.on_full_ack(now, flight)
            elif not self.sack_ok:
                cc.on_partial_ack(now, acked, flight)
                # RFC 6582 3.2 step 4: retransmit the first unacknowledged segment
                self._retransmit_at(now, ack_off)
        elif acked > 0 and not (self.ecn_ok and hdr.flags & ECE):
            # RFC 3168 6.1.2: an ECN-Echo ACK SHOULD NOT increase cwnd
            cc.on_ack(now, acked, flight, rtt_sample)
        # RFC 6298 5.2/5.3: stop the timer when all is acked, else restart it
        if ack_off >= self.snd_max:
            self._t_rtx = None
            self._una_since = None
        else:
            self._t_rtx = self._after(now, self.rtt.rto_us, rto=True)
            self._una_since = now
        # our FIN acknowledged?
        if self._fin_queued and ack_off == data_end + 1:
            st = self.state
            if st is FIN_WAIT_1:
                self._set_state(FIN_WAIT_2)
            elif st is CLOSING:
                self._enter_time_wait(now)
            elif st is LAST_ACK:
                self._enter_closed(None)
                return
        if self.on_writable and self.send_space > 0:
            self.on_writable(self)

    def _on_dupack(self, now: int, new_sacked: int) -> None:
        self.dupacks += 1
        self.layer.counters["tcp.rx.dupack"] += 1
        cc = self.cc
        flight = self.snd_max - max(self.snd_una, 0)
        cc.on_dup_ack(now, flight)
        if self._recovering or not self.cfg.fast_retransmit:
            return  # uIP and RIOT gnrc_tcp recover from every loss by RTO only
        lost = (
            self.sack_ok
            and self.scoreboard.sacked_above(self.snd_una) > (_DUPTHRESH - 1) * self.snd_mss
        )
        # RFC 6582 3.2 step 1 (and RFC 6675 5's RecoveryPoint): a new recovery only starts
        # once the cumulative ACK covers more than where the last one (or an RTO) began
        if (self.dupacks >= _DUPTHRESH or lost) and self.snd_una > self._recover:
            self._enter_recovery(now, flight)

    def _enter_recovery(self, now: int, flight: int) -> None:
        cc = self.cc
        cc.enter_recovery(now, flight, self.snd_max)
        self._recover = self.snd_max
        self._recovering = True
        self._recovery_point = self.snd_max
        self._high_rxt = self.snd_una
        self.stats["fast_retransmits"] += 1
        self.layer.counters["tcp.fast-retransmit"] += 1
        self._karn.on_retransmit()
        self._retransmit_at(now, self.snd_una)
        if self.sack_ok:
            self._high_rxt = min(self.snd_una + self.snd_mss, self.snd_max)

    def _ts_sample(self, now: int, hdr: TcpHeader) -> int | None:
        ts = hdr.timestamps
        if ts is None or not ts[1]:
            return None
        rtt = ((self._tsval(now) - ts[1]) & MASK) * 1000
        if rtt > 0x7FFFFFFF:
            return None
        self.rtt.sample(rtt)
        return rtt

    def _tsval(self, now: int) -> int:
        return (now // 1000 + self._ts_offset) & MASK

    # ------------------------------------------------------------------ data and FIN

    def _input_text(self, now: int, seg: Segment, off: int, hdr: TcpHeader) -> None:
        flags = hdr.flags
        payload = seg.payload
        plen = len(payload)
        if flags & SYN:
            off += 1  # data starts after the SYN
        if self.state not in _RECEIVES_DATA:
            if flags & FIN and self.state is TIME_WAIT:
                self._t_close = self._after(now, self.cfg.time_wait_us)
            if plen:
                self.layer.counters["tcp.rx.drop.data-after-fin"] += 1
            self._ack_now = True
            return
        rcv_nxt = self.rcv_nxt
        fin_off = off + plen if flags & FIN else None
        # trim to the window's right edge
        right = self.rcv_adv if self.rcv_adv > rcv_nxt else rcv_nxt
        if off + plen > right:
            payload = payload[: max(right - off, 0)]
            plen = len(payload)
            fin_off = None
        if off < rcv_nxt:
            dup = min(rcv_nxt - off, plen)
            if dup and self.sack_ok:
                self._dsack = (off, off + dup)
            self.stats["dup_bytes_in"] += dup
            payload = payload[dup:]
            plen -= dup
            off += dup
        if plen:
            if off == rcv_nxt:
                self._deliver(now, off, payload)
                if self._ooo.bytes or len(self._ooo):
                    # filled (part of) a hole: ACK at once (RFC 5681 4.2)
                    self._ack_now = True
                    self.rcv_nxt, chunks = self._ooo.pop_ready(self.rcv_nxt)
                    for c in chunks:
                        self._append(c)
                self._unacked_segs += 1
                if plen > self._rcv_mss:
                    self._rcv_mss = plen
                # RFC 9293 SHLD-19 / RFC 5681 4.2: ACK at least every 2nd full-sized segment
                if (
                    not self.cfg.delayed_ack
                    or self.rcv_nxt - self._ts_last_ack
                    >= self.cfg.ack_every_segments * self._rcv_mss
                ):
                    self._ack_now = True
                elif self._t_delack is None:
                    # a tick-driven stack (lwIP's fast timer) sends a delayed ACK on the first
                    # tick after the segment: delayed_ack_us bounds the delay
                    self._t_delack = self._after(now, self.cfg.delayed_ack_us)
            else:
                # out of order: queue (if allowed) and send a duplicate ACK at once
                self._ack_now = True
                if not self.cfg.ooo_queue:
                    self.stats["ooo_dropped"] += plen
                    self.layer.counters["tcp.rx.drop.ooo"] += 1
                else:
                    added, dup_range = self._ooo.insert(off, payload)
                    if dup_range and self.sack_ok:
                        self._dsack = dup_range
                    if not added and dup_range is None:
                        self.stats["ooo_dropped"] += plen
                        self.layer.counters["tcp.rx.drop.ooo-full"] += 1
                    else:
                        self.layer.counters["tcp.rx.ooo"] += 1
        elif flags & FIN and fin_off is not None and fin_off > self.rcv_nxt:
            self._ack_now = True
        if fin_off is not None:
            if fin_off == self.rcv_nxt:
                self._on_fin(now)
            elif fin_off > self.rcv_nxt:
                self._ooo_fin = fin_off
        elif self._ooo_fin is not None and self._ooo_fin == self.rcv_nxt:
            self._on_fin(now)
        if self._rbuf and self.on_readable:
            self.on_readable(self)

    def _deliver(self, now: int, off: int, data: bytes | memoryview) -> None:
        self._append(data)
        self.rcv_nxt = off + len(data)

    def _append(self, data: bytes | bytearray | memoryview) -> None:
        self.stats["bytes_in"] += len(data)
        if self._app_closed:
            return
        self._rbuf += data

    def _on_fin(self, now: int) -> None:
        self._ooo_fin = None
        self.rcv_nxt += 1
        self._fin_rcvd = True
        self._ack_now = True
        st = self.state
        if st in (ESTABLISHED, SYN_RECEIVED):
            self._set_state(CLOSE_WAIT)
        elif st is FIN_WAIT_1:
            if self.snd_una == self._sbuf_base + len(self._sbuf) + 1:
                self._enter_time_wait(now)
            else:
                self._set_state(CLOSING)
        elif st is FIN_WAIT_2:
            self._enter_time_wait(now)
        if self.on_readable:
            self.on_readable(self)

    # ================================================================== resets and closing

    def _on_reset(self, now: int) -> None:
        self.layer.counters["tcp.rx.rst"] += 1
        if self.state is SYN_RECEIVED and self.listener is not None:
            self._enter_closed(None)  # back to LISTEN: the listener simply forgets us
        elif self.state in (CLOSING, LAST_ACK, TIME_WAIT):
            self._enter_closed(None)
        else:
            self._enter_closed("reset")

    def _challenge_ack(self, now: int) -> None:
        """RFC 5961 3.2/4.2/5.2: answer with an ACK, rate-limited across the stack."""
        if self.layer.challenge_bucket.take(now):
            self.stats["challenge_acks"] += 1
            self.layer.counters["tcp.challenge-ack"] += 1
            self._send_ack(now)
        else:
            self.layer.counters["tcp.challenge-ack.limited"] += 1

    def _enter_time_wait(self, now: int) -> None:
        self._set_state(TIME_WAIT)
        self._t_rtx = self._t_persist = self._t_keep = self._t_delack = self._t_sws = None
        self._t_close = self._after(now, self.cfg.time_wait_us)

    def _enter_closed(self, error: str | None) -> None:
        if self.state is CLOSED:
            return
        if error and self.error is None:
            self.error = error
            self.layer.counters[f"tcp.closed.{error}"] += 1
        self._set_state(CLOSED)
        self._t_rtx = self._t_persist = self._t_keep = self._t_delack = None
        self._t_close = self._t_sws = None
        self._ack_now = False
        self.layer.forget(self)
        if self.on_closed:
            self.on_closed(self)

    # ================================================================== output

    def _window_field(self) -> int:
        if self.window_override is not None:
            return self.window_override
        cfg = self.cfg
        space = cfg.rcv_buf - len(self._rbuf)
        if space < 0:
            space = 0
        right = self.rcv_nxt + min(space, 0xFFFF << self.rcv_shift)  # what the field can say
        if cfg.sws_avoidance and right > self.rcv_adv:
            # RFC 9293 3.8.6.2.2: move the right edge only by min(RCV.BUFF/2, MSS) or more
            if right - self.rcv_adv < min(cfg.rcv_buf // 2, self._adv_mss()):
                right = self.rcv_adv
        if right < self.rcv_adv:
            right = self.rcv_adv  # never shrink the window
        wnd = (right - self.rcv_nxt) >> self.rcv_shift
        return wnd if wnd < 0xFFFF else 0xFFFF

    def _ack_fields(self) -> tuple[int, int]:
        """(ack seq, window field) for an outgoing segment; updates what we advertised."""
        w = self._window_field()
        edge = self.rcv_nxt + (w << self.rcv_shift)
        if edge > self.rcv_adv or self.window_override is not None:
            self.rcv_adv = edge
        self._ts_last_ack = self.rcv_nxt
        self._ack_now = False
        self._unacked_segs = 0
        self._t_delack = None
        return self._rseq(self.rcv_nxt), w

    def _sack_opt_len(self) -> int:
        """Bytes the SACK option will take in the next segment: the payload shrinks by as much
        so header plus data still fit the MTU (as Linux's tcp_current_mss does)."""
        if not self.sack_ok or (self._dsack is None and not len(self._ooo)):
            return 0
        blocks = len(self._ooo) + (self._dsack is not None)
        return 4 + 8 * min(blocks, 3 if self.ts_ok else 4)

    def _data_options(self, now: int) -> list[TcpOption]:
        opts: list[TcpOption] = []
        if self.ts_ok:
            opts = [_NOP, _NOP, OptTimestamps(self._tsval(now), self.ts_recent)]
        if self.sack_ok and (self._dsack is not None or len(self._ooo)):
            limit = 3 if self.ts_ok else 4
            blocks: list[tuple[int, int]] = []
            if self._dsack is not None:
                blocks.append(self._dsack)
                self._dsack = None
            for b in self._ooo.sack_blocks(limit):
                if len(blocks) >= limit:
                    break
                # no dedup: a D-SACK equal to the block holding it is still followed by that
                # block, which is how the sender tells a D-SACK from a SACK (RFC 2883 4)
                blocks.append(b)
            if blocks:
                rs = self._rseq
                opts += [_NOP, _NOP, OptSack(tuple((rs(lo), rs(hi)) for lo, hi in blocks))]
        return opts

    def _send_ack(self, now: int) -> None:
        ack, w = self._ack_fields()
        flags = ACK
        if self._ece_pending:
            flags |= ECE
        self._emit(now, flags, self._seq(self.snd_nxt), ack, w, self._data_options(now), b"")

    def _send_rst(self, now: int, seq_no: int) -> None:
        self.layer.counters["tcp.tx.rst"] += 1
        self._emit(now, RST, seq_no, 0, 0, [], b"")

    def _emit(
        self,
        now: int,
        flags: int,
        seq_no: int,
        ack: int,
        window: int,
        options: list[TcpOption],
        payload: bytes | bytearray | memoryview,
        retransmit: bool = False,
        ect: bool = False,
    ) -> None:
        self.stats["segs_out"] += 1
        hdr = TcpHeader(self.local_port, self.remote_port, seq_no, ack, flags, window, 0, options)
        self.layer.transmit(now, self, hdr, payload, 2 if ect else 0)

    def _output(self, now: int) -> None:
        """Send what the state, windows and timers allow (BSD ``tcp_output`` in spirit)."""
        st = self.state
        if st is CLOSED:
            return
        if st is SYN_SENT or st is SYN_RECEIVED:
            if self.snd_max < 0:
                self._send_syn(now)
            if self._ack_now and st is SYN_RECEIVED:
                self._ack_now = False
            return
        sent = False
        if st is not TIME_WAIT:
            if self._recovering and self.sack_ok:
                sent = self._output_sack(now)
            else:
                while self._send_next(now):
                    sent = True
        if self._ack_now and not sent:
            self._send_ack(now)

    def _send_next(self, now: int, budget: int | None = None) -> bool:
        """Send the next new (or go-back-N) segment if allowed. True if one was sent.

        ``budget`` replaces the congestion window test (SACK recovery counts "pipe" instead).
        """
        cfg = self.cfg
        data_end = self._sbuf_base + len(self._sbuf)
        nxt = self.snd_nxt
        una = self.snd_una if self.snd_una > 0 else 0
        fin_wanted = self._fin_queued and nxt <= data_end
        avail = data_end - nxt
        if avail <= 0 and not fin_wanted:
            return False
        in_flight = nxt - una
        cc = self.cc
        win = self.snd_wnd
        cwnd = cc.window()
        if nxt >= self.snd_max:  # RFC 3042 lets out new data only, never go-back-N resends
            cwnd += cc.limited_transmit_allowance(self.dupacks)
        if cwnd < win:
            win = cwnd
        if cfg.max_in_flight_segments is not None:
            lim = cfg.max_in_flight_segments * self.snd_mss
            if lim < win:
                win = lim
        usable = win - in_flight
        if budget is not None:
            usable = min(budget, self.snd_wnd - in_flight)
        mss = self.snd_mss - self._sack_opt_len()
        n = avail if avail < mss else mss
        if usable < n:
            n = usable if usable > 0 else 0
        if n <= 0 and avail > 0:
            # window closed: persist timer (RFC 9293 3.8.6.1) when nothing is in flight
            if self.snd_wnd == 0 and in_flight <= 0 and self._t_rtx is None:
                if self._t_persist is None:
                    self._t_persist = self._after(now, self._persist_interval(), rto=True)
            return False
        if n < avail and n < mss:
            # sender SWS avoidance (RFC 9293 3.8.6.2.1): a usable window this small is only
            # used if it is at least half the largest window the peer has offered
            if cfg.sws_avoidance and n < self.max_snd_wnd // 2:
                if self._t_sws is None and in_flight <= 0:
                    self._t_sws = self._after(now, cfg.sws_override_us)
                if in_flight > 0 or self._t_sws is None or now < self._t_sws:
                    return False
        elif n < mss and n == avail and not fin_wanted and in_flight > 0 and self.nagle:
            # Nagle (RFC 896, RFC 9293 3.7.4): at most one small segment in flight
            if nxt >= self.snd_max:  # a retransmission is not held back
                return False
        fin = fin_wanted and nxt + n == data_end
        if n == 0 and not fin:
            return False
        self._t_sws = None
        start = nxt - self._sbuf_base
        payload = self._sbuf[start : start + n]
        self._send_data(now, nxt, payload, fin)
        self.snd_nxt = nxt + n + (1 if fin else 0)
        if self.snd_nxt > self.snd_max:
            self.snd_max = self.snd_nxt
        return True

    def _send_data(
        self, now: int, off: int, payload: bytes | bytearray | memoryview, fin: bool
    ) -> None:
        n = len(payload)
        retransmit = off < self.snd_max
        flags = ACK
        if fin:
            flags |= FIN
        if n and (off + n == self._sbuf_base + len(self._sbuf)):
            flags |= PSH
        if self._ece_pending:
            flags |= ECE
        ect = False
        if self.ecn_ok and n and not retransmit:
            ect = True
            if self._cwr_pending:
                flags |= CWR
                self._cwr_pending = False
        if self.cfg.congestion_control != "none" and not retransmit and off == self.snd_max:
            idle = now - self._last_send
            if self.snd_max <= max(self.snd_una, 0) and idle > self.rtt.rto_us:
                self.cc.on_idle_restart(now, idle, self.rtt.rto_us)
        ack, w = self._ack_fields()
        opts = self._data_options(now)
        self._emit(now, flags, self._seq(off), ack, w, opts, payload, retransmit, ect)
        self._last_send = now  # data only: pure ACKs do not end an idle period (RFC 5681 4.1)
        self.stats["bytes_out"] += n
        if retransmit:
            self.stats["retransmits"] += 1
            self.layer.counters["tcp.tx.retransmit"] += 1
            self._karn.on_retransmit()
        elif n or fin:
            self._karn.on_send(now, off + n + (1 if fin else 0))
        if self._t_rtx is None:
            self._t_rtx = self._after(now, self.rtt.rto_us, rto=True)
        if self._una_since is None:
            self._una_since = now

    def _retransmit_at(self, now: int, off: int, limit: int | None = None) -> int:
        """Retransmit one segment starting at ``off``; returns its sequence length."""
        data_end = self._sbuf_base + len(self._sbuf)
        if off < 0:
            return 0
        end = min(data_end, off + self.snd_mss - self._sack_opt_len())
        if limit is not None:
            end = min(end, limit)
        n = max(end - off, 0)
        fin = self._fin_queued and off + n == data_end and self.snd_max > data_end
        if n == 0 and not fin:
            return 0
        start = off - self._sbuf_base
        self._send_data(now, off, self._sbuf[start : start + n], fin)
        return n + (1 if fin else 0)

    def _output_sack(self, now: int) -> bool:
        """RFC 6675 5 (step 4 on): send while cwnd - pipe >= 1 SMSS, choosing NextSeg.

        During recovery cwnd is ssthresh (RFC 6675 5 step 4.2), so NewReno's inflation does not
        apply here; "none" congestion control leaves only the peer's window.
        """
        mss = self.snd_mss
        cc = self.cc
        cwnd = cc.ssthresh if cc.ssthresh < cc.cwnd else cc.cwnd
        sent = False
        for _ in range(256):
            room = cwnd - self._pipe()
            if room < mss:
                break
            nxt = self._next_seg()
            if nxt is None and self._send_next(now, budget=room):  # rule 2: new data
                sent = True
                continue
            if nxt is None:
                nxt = self._next_seg(lost_only=False)  # rule 3
            if nxt is not None:  # rules 1 and 3: a hole
                n = self._retransmit_at(now, nxt[0], nxt[1])
                if n == 0:
                    break
                if nxt[0] + n > self._high_rxt:
                    self._high_rxt = nxt[0] + n
            else:
                break
            sent = True
        return sent

    def _pipe(self) -> int:
        """RFC 6675 SetPipe, over byte ranges rather than per segment."""
        sb = self.scoreboard
        una = self.snd_una
        high = sb.high_sacked
        thresh = (_DUPTHRESH - 1) * self.snd_mss
        pipe = 0
        if high is None:
            return self.snd_max - una
        for s, e in sb.holes(una):
            lost = sb.sacked_above(s) > thresh
            if not lost:
                pipe += e - s
            # retransmitted part counts once more
            rx_end = min(e, self._high_rxt)
            if rx_end > s:
                pipe += rx_end - s
        pipe += max(self.snd_max - high, 0)
        return pipe

    def _next_seg(self, lost_only: bool = True) -> tuple[int, int] | None:
        """RFC 6675 NextSeg rules 1 and 3: the first unSACKed range above HighRxt (rule 1 wants
        it lost; rule 3, used only when no new data can go, takes any)."""
        sb = self.scoreboard
        thresh = (_DUPTHRESH - 1) * self.snd_mss
        for s, e in sb.holes(self.snd_una):
            s = max(s, self._high_rxt)
            if s >= e:
                continue
            if not lost_only or sb.sacked_above(s) > thresh:
                return s, min(e, s + self.snd_mss)
        return None

    def _persist_interval(self) -> int:
        base = self.rtt.rto_us
        return min(base << self._persist_backoff, max(self.cfg.zwp_max_us, base))

    # ================================================================== timers

    def poll_at(self) -> int | None:
        best: int | None = None
        for t in (
            self._t_rtx,
            self._t_delack,
            self._t_persist,
            self._t_keep,
            self._t_close,
            self._t_sws,
        ):
            if t is not None and (best is None or t < best):
                best = t
        if self._una_since is not None and self.cfg.user_timeout_us is not None:
            t = self._una_since + self.cfg.user_timeout_us
            if best is None or t < best:
                best = t
        return best

    def poll(self, now: int) -> None:
        cfg = self.cfg
        if self._t_close is not None and now >= self._t_close:
            self._t_close = None
            self._enter_closed(None)
            return
        if (
            cfg.user_timeout_us is not None
            and self._una_since is not None
            and now >= self._una_since + cfg.user_timeout_us
        ):
            self.layer.counters["tcp.user-timeout"] += 1
            self._give_up(now)
            return
        if self._t_rtx is not None and now >= self._t_rtx:
            self._t_rtx = None
            self._on_rto(now)
            if self.state is CLOSED:
                return
        if self._t_persist is not None and now >= self._t_persist:
            self._t_persist = None
            self._zero_window_probe(now)
        if self._t_keep is not None and now >= self._t_keep:
            self._t_keep = None
            self._on_keepalive(now)
            if self.state is CLOSED:
                return
        if self._t_delack is not None and now >= self._t_delack:
            self._t_delack = None
            self._ack_now = True
        if self._t_sws is not None and now >= self._t_sws:
            pass  # _send_next sends the small segment now that the timer is due
        self._output(now)
        if self._t_sws is not None and now >= self._t_sws:
            self._t_sws = None

    def _on_rto(self, now: int) -> None:
        cfg = self.cfg
        self._retries += 1
        self.stats["rto"] += 1
        self.layer.counters["tcp.rto"] += 1
        st = self.state
        syn_phase = st is SYN_SENT or st is SYN_RECEIVED
        limit = cfg.syn_retries if syn_phase else cfg.data_retries
        if self._retries > limit:
            self.layer.counters["tcp.retries-exceeded"] += 1
            self._give_up(now)
            return
        if syn_phase:
            self.stats["retransmits"] += 1
            self.layer.counters["tcp.tx.retransmit"] += 1
            self._t_rtx = None
            self._send_syn(now)
            self._t_rtx = self._after(now, self._syn_rto(), rto=True)
            return
        flight = self.snd_max - max(self.snd_una, 0)
        self.cc.on_rto(now, flight, self.snd_max)
        self._recover = self.snd_max
        self.rtt.on_timeout()
        self._karn.on_retransmit()
        self._recovering = False
        self.scoreboard.clear()
        self.dupacks = 0
        # go back N: resend from the first unacknowledged byte
        self.snd_nxt = max(self.snd_una, 0)
        if not self._send_next(now):
            self._retransmit_at(now, self.snd_nxt)
        self._t_rtx = self._after(now, self.rtt.rto_us, rto=True)

    def _give_up(self, now: int) -> None:
        if self.state in _SYNCHRONIZED:
            self._send_rst(now, self._seq(self.snd_nxt))
        self._enter_closed("timeout")

    def _zero_window_probe(self, now: int) -> None:
        data_end = self._sbuf_base + len(self._sbuf)
        if self.snd_wnd > 0 or self.state not in _SYNCHRONIZED:
            self._persist_backoff = 0
            return
        self.stats["zwp"] += 1
        self.layer.counters["tcp.zwp"] += 1
        off = max(self.snd_una, 0)
        if off < data_end:
            # RFC 9293 3.8.6.1: probe with one octet beyond the window (the same octet again
            # on later probes, until the window opens)
            start = off - self._sbuf_base
            self._send_data(now, off, self._sbuf[start : start + 1], False)
            self.snd_nxt = max(self.snd_nxt, off + 1)
            if self.snd_nxt > self.snd_max:
                self.snd_max = self.snd_nxt
            self._t_rtx = None  # the persist timer, not the RTO, governs probes
        else:
            self._send_ack(now)
        self._persist_backoff += 1
        self._t_persist = self._after(now, self._persist_interval(), rto=True)

    def _arm_keepalive(self, now: int) -> None:
        if self.keepalive and self.state in _SYNCHRONIZED:
            self._t_keep = self._after(self._last_rx, self.cfg.keepalive_idle_us)
        else:
            self._t_keep = None

    def _on_keepalive(self, now: int) -> None:
        cfg = self.cfg
        if not self.keepalive or self.state not in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2):
            return
        idle = now - self._last_rx
        if self._keep_probes == 0 and idle < cfg.keepalive_idle_us:
            self._t_keep = self._after(self._last_rx, cfg.keepalive_idle_us)
            return
        if self._keep_probes >= cfg.keepalive_count:
            self.layer.counters["tcp.keepalive-timeout"] += 1
            self._give_up(now)
            return
        self._keep_probes += 1
        self.stats["keepalives"] += 1
        self.layer.counters["tcp.keepalive"] += 1
        # RFC 9293 3.8.4: SEG.SEQ = SND.NXT - 1, no data (the peer answers with an ACK)
        ack, w = self._ack_fields()
        self._emit(now, ACK, self._seq(self.snd_una - 1), ack, w, self._data_options(now), b"")
        self._t_keep = self._after(now, cfg.keepalive_interval_us)

    # ================================================================== injection

    def inject(
        self,
        now: int,
        flags: int = ACK,
        payload: bytes = b"",
        seq: int | None = None,
        ack: int | None = None,
        window: int | None = None,
        options: list[TcpOption] | None = None,
        seq_delta: int = 0,
        ecn: int = 0,
    ) -> None:
        """Send a crafted segment in this connection's sequence space (probe use).

        Defaults: SEG.SEQ = SND.NXT (+ ``seq_delta``), SEG.ACK = RCV.NXT, the current window
        and the connection's usual options. Connection state is not changed.
        """
        if seq is None:
            seq = (self._seq(self.snd_nxt) + seq_delta) & MASK
        if ack is None:
            ack = self._rseq(self.rcv_nxt)
        if window is None:
            window = self._window_field()
        if options is None:
            options = self._data_options(now)
        hdr = TcpHeader(self.local_port, self.remote_port, seq, ack, flags, window, 0, options)
        self.layer.counters["tcp.tx.injected"] += 1
        self.layer.transmit(now, self, hdr, payload, ecn, injected=True)


def _addr(a: bytes) -> str:
    import ipaddress

    return str(ipaddress.ip_address(a))

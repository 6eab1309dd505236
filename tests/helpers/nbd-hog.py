#!/usr/bin/env python3
"""nbd-hog - NBD clients that hold server resources without making progress.

  nbd-hog.py --unix PATH MODE [--count N] [--requests N] [--size BYTES]
             [--hold SECS] [--report FILE]

Opens --count connections and plays MODE on each:

  idle     connect and say nothing (not even the client flags)
  refused  connect; report whether the server sent its greeting or closed
  write    finish the handshake (NBD_OPT_EXPORT_NAME), send --requests
           WRITEs of --size bytes back to back, never read a reply
  read     finish the handshake, send --requests READs of --size bytes,
           never read a reply

Then holds every connection until --hold seconds are up or the server has
closed all of them (POLLRDHUP; nothing is read).  Prints one line per
connection, "CONN i MODE: greeting yes|no, sent N requests, closed by the
server after T s | still open", and a summary line.  Every wait is bounded.
Exit 0, or 2 on usage or connection errors.
"""
import argparse
import os
import select
import socket
import struct
import sys
import time

NBD_MAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513


def recv_exact(s, n, deadline):
    buf = b""
    while len(buf) < n:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = s.recv(n - len(buf))
        except (socket.timeout, ConnectionResetError):
            return buf
        if not d:
            return buf
        buf += d
    return buf


def send_bounded(s, data, deadline):
    """Send what fits before the deadline; returns bytes sent."""
    sent = 0
    while sent < len(data):
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            n = s.send(data[sent:])
        except (socket.timeout, BlockingIOError):
            break
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += n
    return sent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unix", required=True)
    ap.add_argument("mode", choices=["idle", "refused", "write", "read"])
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--size", type=int, default=1 << 20)
    ap.add_argument("--hold", type=float, default=10)
    a = ap.parse_args()
    t0 = time.monotonic()
    end = t0 + a.hold
    conns = []
    for i in range(a.count):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        try:
            # A full listen backlog answers EAGAIN: retry (bounded) while
            # the daemon accepts (and refuses) the earlier ones.
            for attempt in range(500):
                try:
                    s.connect(a.unix)
                    break
                except BlockingIOError:
                    time.sleep(0.01)
            else:
                raise OSError("listen backlog full for 5 s")
        except OSError as e:
            print("CONN %d %s: connect failed: %s" % (i, a.mode, e))
            conns.append(None)
            continue
        conns.append({"s": s, "greeting": None, "sent": 0, "closed": None})
    for i, c in enumerate(conns):
        if not c or a.mode == "idle":
            continue
        s = c["s"]
        g = recv_exact(s, 18, time.monotonic() + 3)
        c["greeting"] = len(g) == 18 and struct.unpack(">QQ", g[:16]) == (NBD_MAGIC, IHAVEOPT)
        if a.mode == "refused" or not c["greeting"]:
            if not c["greeting"]:
                c["closed"] = time.monotonic() - t0
            continue
        # fixed newstyle + no zeroes; NBD_OPT_EXPORT_NAME "" -> size, flags
        s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 1, 0))
        r = recv_exact(s, 10, time.monotonic() + 5)
        if len(r) != 10:
            print("CONN %d: handshake failed" % i)
            sys.exit(2)
        cmd = 1 if a.mode == "write" else 0
        payload = os.urandom(a.size) if cmd == 1 else b""
        for k in range(a.requests):
            hdr = struct.pack(">IHHQQI", REQ_MAGIC, 0, cmd, 0x100 + k, (k * a.size) % (32 << 20), a.size)
            # Give each connection a bounded time to push its requests.
            dl = min(end, time.monotonic() + 2)
            msg = hdr + payload
            n = send_bounded(s, msg, dl)
            if n < len(msg):
                break
            c["sent"] += 1
    # Hold, never reading, until the server closed them all or time is up.
    p = select.poll()
    fds = {}
    for c in conns:
        if c and c["closed"] is None:
            p.register(c["s"].fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
            fds[c["s"].fileno()] = c
    while fds and time.monotonic() < end:
        for fd, ev in p.poll(max(1, int((end - time.monotonic()) * 1000))):
            c = fds.pop(fd, None)
            if c:
                c["closed"] = time.monotonic() - t0
                p.unregister(fd)
    nclosed = 0
    for i, c in enumerate(conns):
        if not c:
            continue
        state = "still open" if c["closed"] is None else "closed by the server after %.1f s" % c["closed"]
        nclosed += c["closed"] is not None
        print("CONN %d %s: greeting %s, sent %d requests, %s"
              % (i, a.mode, {None: "-", True: "yes", False: "no"}[c["greeting"]], c["sent"], state))
    print("SUMMARY %s: %d connections, %d greeted, %d closed by the server, %d requests sent"
          % (a.mode, len(conns), sum(1 for c in conns if c and c["greeting"]), nclosed,
             sum(c["sent"] for c in conns if c)))
    for c in conns:
        if c:
            c["s"].close()


if __name__ == "__main__":
    main()

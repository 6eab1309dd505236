/* netaddr.h - socket addresses and listening sockets, one way for the NBD
 * listeners, the replication link and the control socket.
 *
 * Address syntax: "HOST:PORT", "[V6ADDR]:PORT" (an optional "tcp:" prefix
 * is accepted), or "unix:/path". */
#ifndef REPVOL_NETADDR_H
#define REPVOL_NETADDR_H

#include <stdbool.h>
#include <sys/socket.h>

/* Resolve HOST:PORT (numeric port).  passive: an empty host means "any".
 * 0 or -EINVAL. */
int rv_parse_hostport(const char *spec, struct sockaddr_storage *ss, socklen_t *len, bool passive);

/* Does HOST:PORT (or tcp:HOST:PORT) stay on this machine: 127.0.0.0/8 or
 * ::1 (also as ::ffff:127.x)?  An empty host ("any") is not loopback.
 * 1, 0, or -EINVAL when it does not resolve. */
int rv_hostport_is_loopback(const char *spec);

/* The HOST part of HOST:PORT / [V6]:PORT into out (brackets removed). */
void rv_hostport_host(const char *spec, char *out, size_t len);

/* A listening TCP socket (SO_REUSEADDR, CLOEXEC) on HOST:PORT.  Returns
 * the fd or -errno; logs the reason with `what` as context. */
int rv_listen_tcp(const char *spec, int backlog, const char *what);

/* A listening Unix stream socket at path.  A stale socket file (nothing
 * accepting there) is replaced; a live one is -EADDRINUSE.  private:
 * created mode 0600.  Returns the fd or -errno, logging with `what`. */
int rv_listen_unix(const char *path, int backlog, bool private, const char *what);

/* "127.0.0.1:41234" for a connected socket's peer ("?" if unknown). */
void rv_peer_name(int fd, char *out, size_t len);

#endif

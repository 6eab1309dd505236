/* netaddr.c - addresses and listening sockets (see include/repvol/netaddr.h). */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "repvol/log.h"
#include "repvol/netaddr.h"

int rv_parse_hostport(const char *spec, struct sockaddr_storage *ss, socklen_t *len, bool passive)
{
    char host[256];
    snprintf(host, sizeof host, "%s", spec);
    if (!strncmp(host, "tcp:", 4))
        memmove(host, host + 4, strlen(host + 4) + 1);
    char *colon = strrchr(host, ':');
    if (!colon || !colon[1])
        return -EINVAL;
    *colon = '\0';
    const char *port = colon + 1;
    char *h = host;
    if (*h == '[') {            /* [::1]:7789 */
        h++;
        char *rb = strchr(h, ']');
        if (rb)
            *rb = '\0';
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) };
    struct addrinfo *ai;
    if (getaddrinfo(*h ? h : NULL, port, &hints, &ai) != 0)
        return -EINVAL;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int rv_hostport_is_loopback(const char *spec)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char host[256];
    rv_hostport_host(spec, host, sizeof host);
    if (!host[0])
        return 0;               /* all interfaces */
    if (rv_parse_hostport(spec, &ss, &len, false) < 0)
        return -EINVAL;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && s6->sin6_addr.s6_addr[12] == 127;
    }
    return 0;
}

void rv_hostport_host(const char *spec, char *out, size_t len)
{
    char host[256];
    snprintf(host, sizeof host, "%s", spec);
    if (!strncmp(host, "tcp:", 4))
        memmove(host, host + 4, strlen(host + 4) + 1);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    char *h = host;
    if (*h == '[') {
        h++;
        char *rb = strchr(h, ']');
        if (rb)
            *rb = '\0';
    }
    snprintf(out, len, "%s", h);
}

int rv_listen_tcp(const char *spec, int backlog, const char *what)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (rv_parse_hostport(spec, &ss, &len, true) < 0) {
        rv_err("%s %s: expected HOST:PORT", what, spec);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
        int e = -errno;
        rv_err("%s %s: %s", what, spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        return e;
    }
    return fd;
}

int rv_listen_unix(const char *path, int backlog, bool private, const char *what)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (!*path || strlen(path) >= sizeof sun.sun_path) {
        rv_err("%s %s: socket path empty or longer than %zu bytes", what, path, sizeof sun.sun_path - 1);
        return -EINVAL;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A leftover socket file from a process that died is removed; a live
     * one (something accepts connections) is not. */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
            rv_err("%s %s: another process is already listening there", what, path);
            close(fd);
            return -EADDRINUSE;
        }
        close(fd);
        unlink(path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
    }
    mode_t old = private ? umask(0077) : 0;
    int r = bind(fd, (struct sockaddr *)&sun, sizeof sun);
    if (private)
        umask(old);
    if (r < 0 || listen(fd, backlog) < 0) {
        int e = -errno;
        rv_err("%s %s: %s", what, path, strerror(errno));
        close(fd);
        return e;
    }
    return fd;
}

void rv_peer_name(int fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[64], port[16];
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family != AF_UNIX &&
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(out, len, "%s:%s", host, port);
    else
        snprintf(out, len, "%s", ss.ss_family == AF_UNIX ? "unix" : "?");
}

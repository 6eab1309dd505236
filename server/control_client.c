/* control_client.c - the CLI side of the control socket (see control.h).
 * Plain blocking sockets with a timeout: the CLI does one request. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "repvol/control.h"

#define CONTROL_TIMEOUT_MS 30000

void rv_control_default_path(const char *volume_name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s.ctl", RV_CONTROL_DIR, volume_name);
}

int rv_control_call(const char *path, const char *request, char *buf, size_t cap)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(buf, cap, "control socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(buf, cap, "socket: %s", strerror(errno));
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        int e = errno;
        snprintf(buf, cap, "cannot reach the daemon at %s: %s%s", path, strerror(e),
                 e == ENOENT || e == ECONNREFUSED ? " (is repvold running for this volume?)" : "");
        close(fd);
        return -e;
    }
    size_t len = strlen(request);
    char line[RV_CONTROL_MAX_REQUEST + 2];
    if (len > RV_CONTROL_MAX_REQUEST) {
        close(fd);
        snprintf(buf, cap, "request too long");
        return -E2BIG;
    }
    memcpy(line, request, len);
    line[len++] = '\n';
    if (send(fd, line, len, MSG_NOSIGNAL) != (ssize_t)len) {
        int e = errno;
        snprintf(buf, cap, "sending to the daemon: %s", strerror(e));
        close(fd);
        return -e;
    }
    size_t got = 0;
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int pr = poll(&p, 1, CONTROL_TIMEOUT_MS);
        if (pr <= 0) {
            close(fd);
            snprintf(buf, cap, "no answer from the daemon within %d s", CONTROL_TIMEOUT_MS / 1000);
            return -ETIMEDOUT;
        }
        if (got + 1 >= cap)
            break;
        ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    if (!strncmp(buf, "ok\n", 3)) {
        memmove(buf, buf + 3, got - 3 + 1);
        return 0;
    }
    if (!strncmp(buf, "error ", 6)) {
        int e = atoi(buf + 6);
        char *msg = strchr(buf + 6, ' ');
        msg = msg ? msg + 1 : buf + 6;
        memmove(buf, msg, strlen(msg) + 1);
        size_t l = strlen(buf);
        while (l && buf[l - 1] == '\n')
            buf[--l] = '\0';
        return e > 0 ? -e : -EIO;
    }
    snprintf(buf, cap, "malformed answer from the daemon");
    return -EPROTO;
}

/* strbuf.c - bounded text builder (see include/repvol/strbuf.h). */
#include <stdarg.h>
#include <stdio.h>

#include "repvol/strbuf.h"

void rv_sb_init(struct rv_strbuf *sb, char *buf, size_t cap)
{
    sb->buf = buf;
    sb->cap = cap;
    sb->len = 0;
    sb->truncated = false;
    if (cap)
        buf[0] = '\0';
}

void rv_sb_printf(struct rv_strbuf *sb, const char *fmt, ...)
{
    if (sb->len + 1 >= sb->cap) {
        sb->truncated = true;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sb->cap - sb->len) {
        sb->len = sb->cap - 1;
        sb->truncated = true;
    } else {
        sb->len += (size_t)n;
    }
}

void rv_sb_json_str(struct rv_strbuf *sb, const char *s)
{
    rv_sb_printf(sb, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            rv_sb_printf(sb, "\\%c", *p);
        else if (*p < 0x20)
            rv_sb_printf(sb, "\\u%04x", *p);
        else
            rv_sb_printf(sb, "%c", *p);
    }
    rv_sb_printf(sb, "\"");
}

/* strbuf.h - a bounded text builder for status output (text and JSON).
 *
 * Appends never overflow: once the buffer is full further text is dropped
 * and `truncated` is set, so a caller formats freely and checks once. */
#ifndef REPVOL_STRBUF_H
#define REPVOL_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct rv_strbuf {
    char *buf;
    size_t cap;
    size_t len;
    bool truncated;
};

void rv_sb_init(struct rv_strbuf *sb, char *buf, size_t cap);
void rv_sb_printf(struct rv_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string literal, quotes included. */
void rv_sb_json_str(struct rv_strbuf *sb, const char *s);

#endif

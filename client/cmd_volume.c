/* cmd_volume.c - `repvol create` and `repvol info`. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cli.h"
#include "repvol/meta_format.h"
#include "repvol/util.h"

#define MIN_VOLUME_SIZE (UINT64_C(1) << 20)

/* Flush stdout and report a failed write (full disk, closed pipe). */
static int finish_output(const char *prog)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error(prog, "error writing output: %s", strerror(errno));
        return RV_EXIT_FAIL;
    }
    return RV_EXIT_OK;
}

/* Parse a size option; prints the error.  Returns 0 or -1. */
static int parse_size_opt(const char *prog, const char *opt, const char *arg, uint64_t *out)
{
    int r = rv_parse_size(arg, out);
    if (r == -ERANGE) {
        cli_error(prog, "%s %s: too large", opt, arg);
        return -1;
    }
    if (r) {
        cli_error(prog, "%s '%s': not a size (use e.g. 4096, 512M, 4G, 1TiB)", opt, arg);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ create */

static void create_usage(FILE *f, const char *prog)
{
    fprintf(f,
            "Usage: %s --size SIZE [OPTIONS] PATH.img\n"
            "\n"
            "Create a new volume image file at PATH (which must not exist): a sparse\n"
            "file holding SIZE bytes of data, followed by repvol's metadata (a dirty\n"
            "bitmap and a 4 KiB superblock).  The data part is a plain raw image.\n"
            "\n"
            "Options:\n"
            "  -s, --size SIZE              data size: a multiple of 4096, at least 1M\n"
            "                               (suffixes K, M, G, T, P are powers of 1024)\n"
            "  -n, --name NAME              volume name, 1-63 printable ASCII characters\n"
            "                               (default: the file name without \".img\")\n"
            "  -b, --block-size 512|4096    logical block size exported (default 4096)\n"
            "  -g, --bitmap-granularity SZ  data bytes per dirty-bitmap bit: a power of\n"
            "                               two, at least 4K (default 4K)\n"
            "  -u, --uuid UUID              create an empty mirror of an existing volume:\n"
            "                               give it that volume's UUID (as 'repvol info'\n"
            "                               shows it on the other node; --size must match\n"
            "                               too).  The new image is Inconsistent, has no\n"
            "                               data generation yet (current and bitmap\n"
            "                               generation 0) and needs a full sync from a\n"
            "                               peer before it can be used.  Without --uuid the\n"
            "                               volume gets a new random UUID and starts\n"
            "                               UpToDate (all zeroes).\n"
            "      --node-id N              this replica's node id, 0-31 (default 0); the\n"
            "                               two nodes of a mirror need different ids\n"
            "  -h, --help                   show this help\n",
            prog);
}

/* Parse --node-id: decimal 0..RV_META_MAX_NODES-1; prints the error. */
static int parse_node_id(const char *prog, const char *arg, uint32_t *out)
{
    uint32_t v = 0;
    size_t n = strlen(arg);
    bool ok = n >= 1 && n <= 3;
    for (size_t i = 0; ok && i < n; i++) {
        if (arg[i] < '0' || arg[i] > '9')
            ok = false;
        else
            v = v * 10 + (uint32_t)(arg[i] - '0');
    }
    if (!ok || v >= RV_META_MAX_NODES) {
        cli_error(prog, "--node-id '%s': must be a whole number from 0 to %d", arg,
                  RV_META_MAX_NODES - 1);
        return -1;
    }
    *out = v;
    return 0;
}

/* Parse --uuid; prints the error. */
static int parse_uuid_opt(const char *prog, const char *arg, uint8_t uuid[RV_UUID_LEN])
{
    if (rv_uuid_parse(arg, uuid)) {
        cli_error(prog, "--uuid '%s': not a UUID (expected 32 hex digits as 8-4-4-4-12, "
                  "e.g. the uuid 'repvol info' shows for the volume to mirror)", arg);
        return -1;
    }
    static const uint8_t nil[RV_UUID_LEN];
    if (memcmp(uuid, nil, RV_UUID_LEN) == 0) {
        cli_error(prog, "--uuid %s: the nil UUID cannot identify a volume", arg);
        return -1;
    }
    return 0;
}


/* Move tmp to path, never replacing an existing path (-EEXIST). */
static int rename_noreplace(const char *tmp, const char *path)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* File system without RENAME_NOREPLACE: link() never replaces either. */
    if (link(tmp, path) < 0)
        return -errno;
    unlink(tmp);
    return 0;
}

/* What --uuid and --node-id change in a freshly created superblock. */
struct create_overrides {
    bool mirror;                    /* --uuid given */
    uint8_t uuid[RV_UUID_LEN];
    uint32_t node_id;
};

/* rv_meta_create_image() writes a standard fresh superblock.  To store
 * other values without path ever showing a volume with the wrong identity,
 * build the image under a temporary name next to it, rewrite its
 * superblock, then rename it into place (never replacing anything).  A crash
 * leaves at most the temporary file.  Prints its errors; returns 0 or -1. */
static int create_image_with(const char *prog, const char *path, uint64_t size,
                             const char *name, uint32_t block_size, uint32_t gran,
                             const struct create_overrides *ov, struct rv_meta *out)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        cli_error(prog, "%s: file exists; refusing to overwrite", path);
        return -1;
    }
    if (errno != ENOENT) {
        cli_error(prog, "%s: %s", path, strerror(errno));
        return -1;
    }
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.creating.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        cli_error(prog, "%s: path too long", path);
        return -1;
    }
    struct rv_meta m;
    int r = rv_meta_create_image(tmp, size, name, block_size, gran, &m);
    if (r) {
        cli_error(prog, "%s: cannot create image (working file %s): %s", path, tmp,
                  rv_meta_strerror(r));
        return -1;
    }
    if (ov->mirror) {
        memcpy(m.uuid, ov->uuid, RV_UUID_LEN);
        m.disk_state = RV_DISK_INCONSISTENT;
        m.current_gen = 0;
        m.bitmap_gen = 0;
        memset(m.history_gen, 0, sizeof m.history_gen);
    }
    m.node_id = ov->node_id;
    const char *step = "write metadata";
    int fd = open(tmp, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
    } else {
        r = rv_meta_write_fd(fd, &m);       /* fdatasyncs */
        if (close(fd) < 0 && !r)
            r = -errno;
    }
    if (!r) {
        step = "move into place";
        r = rename_noreplace(tmp, path);
    }
    if (r) {
        unlink(tmp);
        if (r == -EEXIST)
            cli_error(prog, "%s: file exists; refusing to overwrite", path);
        else
            cli_error(prog, "%s: cannot create image: %s: %s", path, step, rv_meta_strerror(r));
        return -1;
    }
    r = rv_fsync_parent_dir(path);
    if (r) {
        cli_error(prog, "%s: created, but syncing its directory failed: %s", path,
                  strerror(-r));
        return -1;
    }
    *out = m;
    return 0;
}

/* Check a volume name; prints the error.  Returns 0 or -1. */
static int check_name(const char *prog, const char *name, bool from_path)
{
    size_t n = strlen(name);
    bool ok = n >= 1 && n <= RV_META_NAME_MAX;
    for (size_t i = 0; ok && i < n; i++)
        if (name[i] < 0x20 || name[i] > 0x7e)
            ok = false;
    if (!ok) {
        cli_error(prog, "invalid volume name '%s'%s: must be 1-%d printable ASCII characters%s",
                  name, from_path ? " (taken from the file name)" : "",
                  RV_META_NAME_MAX, from_path ? "; use --name" : "");
        return -1;
    }
    return 0;
}

/* Default name: the file's base name without a ".img" suffix. */
static void name_from_path(const char *path, char *out, size_t outlen)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 4 && strcmp(base + n - 4, ".img") == 0)
        n -= 4;
    if (n >= outlen)
        n = outlen - 1;     /* too long: check_name will say so */
    memcpy(out, base, n);
    out[n] = '\0';
}

enum { OPT_NODE_ID = 256 };      /* long-only options */

int cmd_create(int argc, char **argv)
{
    const char *prog = argv[0];
    static const struct option opts[] = {
        { "size",               required_argument, NULL, 's' },
        { "name",               required_argument, NULL, 'n' },
        { "block-size",         required_argument, NULL, 'b' },
        { "bitmap-granularity", required_argument, NULL, 'g' },
        { "uuid",               required_argument, NULL, 'u' },
        { "node-id",            required_argument, NULL, OPT_NODE_ID },
        { "help",               no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *size_arg = NULL, *name = NULL;
    uint64_t size = 0, block_size = RV_META_DEFAULT_BLOCK_SIZE,
             gran = RV_META_DEFAULT_GRANULARITY;
    struct create_overrides ov = { .mirror = false, .node_id = 0 };
    int c;
    while ((c = getopt_long(argc, argv, "s:n:b:g:u:h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            size_arg = optarg;
            if (parse_size_opt(prog, "--size", optarg, &size))
                return RV_EXIT_FAIL;
            break;
        case 'n':
            name = optarg;
            break;
        case 'b':
            if (parse_size_opt(prog, "--block-size", optarg, &block_size))
                return RV_EXIT_FAIL;
            if (block_size != 512 && block_size != 4096) {
                cli_error(prog, "--block-size %s: must be 512 or 4096", optarg);
                return RV_EXIT_FAIL;
            }
            break;
        case 'g':
            if (parse_size_opt(prog, "--bitmap-granularity", optarg, &gran))
                return RV_EXIT_FAIL;
            if (gran < RV_META_MIN_GRANULARITY || gran > RV_META_MAX_GRANULARITY ||
                (gran & (gran - 1))) {
                cli_error(prog, "--bitmap-granularity %s: must be a power of two "
                          "between 4K and 2G", optarg);
                return RV_EXIT_FAIL;
            }
            break;
        case 'u':
            if (parse_uuid_opt(prog, optarg, ov.uuid))
                return RV_EXIT_FAIL;
            ov.mirror = true;
            break;
        case OPT_NODE_ID:
            if (parse_node_id(prog, optarg, &ov.node_id))
                return RV_EXIT_FAIL;
            break;
        case 'h':
            create_usage(stdout, prog);
            return finish_output(prog);
        default:
            return cli_usage_hint(prog);
        }
    }
    if (optind >= argc) {
        cli_error(prog, "missing image PATH");
        return cli_usage_hint(prog);
    }
    if (argc - optind > 1) {
        cli_error(prog, "too many arguments: '%s'", argv[optind + 1]);
        return cli_usage_hint(prog);
    }
    const char *path = argv[optind];
    if (!size_arg) {
        cli_error(prog, "--size is required");
        return cli_usage_hint(prog);
    }

    char sbuf[32];
    if (size % RV_META_ALIGN) {
        cli_error(prog, "--size %s (%" PRIu64 " bytes): must be a multiple of 4096",
                  size_arg, size);
        return RV_EXIT_FAIL;
    }
    if (size < MIN_VOLUME_SIZE) {
        cli_error(prog, "--size %s: must be at least 1 MiB", size_arg);
        return RV_EXIT_FAIL;
    }
    if (size > RV_META_MAX_DATA_SIZE) {
        cli_error(prog, "--size %s: larger than the maximum %s", size_arg,
                  rv_format_size(RV_META_MAX_DATA_SIZE, sbuf, sizeof sbuf));
        return RV_EXIT_FAIL;
    }

    char namebuf[RV_META_NAME_MAX + 2];   /* one more, to detect "too long" */
    bool from_path = name == NULL;
    if (from_path) {
        name_from_path(path, namebuf, sizeof namebuf);
        name = namebuf;
    }
    if (check_name(prog, name, from_path))
        return RV_EXIT_FAIL;

    struct rv_meta m;
    if (ov.mirror || ov.node_id != 0) {
        if (create_image_with(prog, path, size, name, (uint32_t)block_size, (uint32_t)gran,
                              &ov, &m))
            return RV_EXIT_FAIL;
    } else {
        int r = rv_meta_create_image(path, size, name, (uint32_t)block_size, (uint32_t)gran, &m);
        if (r == -EEXIST) {
            cli_error(prog, "%s: file exists; refusing to overwrite", path);
            return RV_EXIT_FAIL;
        }
        if (r) {
            cli_error(prog, "%s: cannot create image: %s", path, rv_meta_strerror(r));
            return RV_EXIT_FAIL;
        }
    }

    char uuid[RV_UUID_STR_LEN], mbuf[32], bbuf[32], gbuf[32];
    rv_uuid_format(m.uuid, uuid);
    printf("Created %s\n"
           "  name:       %s\n"
           "  uuid:       %s\n"
           "  size:       %s (%" PRIu64 " bytes)\n"
           "  block size: %" PRIu32 "\n"
           "  metadata:   %s after the data (bitmap %s, %s per bit; superblock 4.0 KiB)\n"
           "  node id:    %" PRIu32 "\n"
           "  disk state: %s%s\n",
           path, m.name, uuid,
           rv_format_size(m.data_size, sbuf, sizeof sbuf), m.data_size,
           m.block_size,
           rv_format_size(m.bm_length + RV_META_SB_SIZE, mbuf, sizeof mbuf),
           rv_format_size(m.bm_length, bbuf, sizeof bbuf),
           rv_format_size(m.bm_granularity, gbuf, sizeof gbuf),
           m.node_id, rv_disk_state_name(m.disk_state),
           ov.mirror ? " (empty mirror: needs a full sync from a peer before use)" : "");
    return finish_output(prog);
}

/* -------------------------------------------------------------------- info */

static void info_usage(FILE *f, const char *prog)
{
    fprintf(f,
            "Usage: %s [--json] PATH.img\n"
            "\n"
            "Show every field of a volume image's metadata (its superblock, the last\n"
            "4 KiB of the file).  Fails if PATH is not a valid repvol image.\n"
            "\n"
            "Options:\n"
            "  -j, --json   print one JSON object: sizes as numbers of bytes, the uuid\n"
            "               and generation identifiers (16 hex digits) as strings,\n"
            "               states by name\n"
            "  -h, --help   show this help\n",
            prog);
}

/* A JSON string literal.  Bytes >= 0x80 are passed through (UTF-8 paths). */
static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':  fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                printf("\\u%04x", *p);
            else
                putchar(*p);
        }
    }
    putchar('"');
}

static const char *format_time(uint64_t t, char *buf, size_t len)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t > (uint64_t)INT64_MAX || !gmtime_r(&tt, &tm) ||
        strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, len, "?");
    return buf;
}

static void print_info_text(const char *path, const struct rv_meta *m,
                            const struct rv_meta_layout *lay)
{
    char uuid[RV_UUID_STR_LEN], b1[32], b2[32], b3[32], tbuf[64];
    rv_uuid_format(m->uuid, uuid);
#define KEY "%-20s "
    printf(KEY "%s\n", "path:", path);
    printf(KEY "%s\n", "name:", m->name);
    printf(KEY "%s\n", "uuid:", uuid);
    printf(KEY "%" PRIu32 "\n", "format version:", m->version);
    printf(KEY "%s (%" PRIu64 " bytes)\n", "data size:",
           rv_format_size(m->data_size, b1, sizeof b1), m->data_size);
    printf(KEY "%" PRIu32 "\n", "block size:", m->block_size);
    printf(KEY "%s (%" PRIu32 " bytes per bit)\n", "bitmap granularity:",
           rv_format_size(m->bm_granularity, b1, sizeof b1), m->bm_granularity);
    printf(KEY "offset %" PRIu64 ", length %s (%" PRIu64 " bytes), %" PRIu64 " bits used\n",
           "bitmap area:", m->bm_offset, rv_format_size(m->bm_length, b2, sizeof b2),
           m->bm_length, lay->bitmap_bits);
    printf(KEY "offset %" PRIu64 "\n", "superblock:", lay->sb_offset);
    printf(KEY "%s (%" PRIu64 " bytes)\n", "file size:",
           rv_format_size(lay->file_size, b3, sizeof b3), lay->file_size);
    printf(KEY "0x%08" PRIx32 " (%s)\n", "flags:", m->flags,
           (m->flags & RV_META_F_CLEAN) ? "clean" : "not clean: last shutdown was not clean");
    printf(KEY "%s\n", "disk state:", rv_disk_state_name(m->disk_state));
    printf(KEY "%s\n", "role:", rv_role_name(m->role));
    printf(KEY "%" PRIu32 "\n", "node id:", m->node_id);
    printf(KEY "%016" PRIX64 "\n", "current generation:", m->current_gen);
    printf(KEY "%016" PRIX64 "\n", "bitmap generation:", m->bitmap_gen);
    printf(KEY "%016" PRIX64 " %016" PRIX64 "\n", "history generations:",
           m->history_gen[0], m->history_gen[1]);
    printf(KEY "%s (%" PRIu64 ")\n", "created:", format_time(m->ctime, tbuf, sizeof tbuf),
           m->ctime);
    printf(KEY "%" PRIu64 "\n", "open count:", m->open_count);
#undef KEY
}

static void print_info_json(const char *path, const struct rv_meta *m,
                            const struct rv_meta_layout *lay)
{
    char uuid[RV_UUID_STR_LEN];
    rv_uuid_format(m->uuid, uuid);
    printf("{\n  \"path\": ");
    json_string(path);
    printf(",\n  \"name\": ");
    json_string(m->name);
    printf(",\n  \"uuid\": \"%s\"", uuid);
    printf(",\n  \"format_version\": %" PRIu32, m->version);
    printf(",\n  \"data_size\": %" PRIu64, m->data_size);
    printf(",\n  \"block_size\": %" PRIu32, m->block_size);
    printf(",\n  \"bitmap_granularity\": %" PRIu32, m->bm_granularity);
    printf(",\n  \"bitmap_offset\": %" PRIu64, m->bm_offset);
    printf(",\n  \"bitmap_length\": %" PRIu64, m->bm_length);
    printf(",\n  \"bitmap_bits\": %" PRIu64, lay->bitmap_bits);
    printf(",\n  \"superblock_offset\": %" PRIu64, lay->sb_offset);
    printf(",\n  \"file_size\": %" PRIu64, lay->file_size);
    printf(",\n  \"flags\": %" PRIu32, m->flags);
    printf(",\n  \"clean\": %s", (m->flags & RV_META_F_CLEAN) ? "true" : "false");
    printf(",\n  \"disk_state\": \"%s\"", rv_disk_state_name(m->disk_state));
    printf(",\n  \"role\": \"%s\"", rv_role_name(m->role));
    printf(",\n  \"node_id\": %" PRIu32, m->node_id);
    printf(",\n  \"current_gen\": \"%016" PRIX64 "\"", m->current_gen);
    printf(",\n  \"bitmap_gen\": \"%016" PRIX64 "\"", m->bitmap_gen);
    printf(",\n  \"history_gen\": [\"%016" PRIX64 "\", \"%016" PRIX64 "\"]",
           m->history_gen[0], m->history_gen[1]);
    printf(",\n  \"ctime\": %" PRIu64, m->ctime);
    printf(",\n  \"open_count\": %" PRIu64, m->open_count);
    printf("\n}\n");
}

int cmd_info(int argc, char **argv)
{
    const char *prog = argv[0];
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = true;
            break;
        case 'h':
            info_usage(stdout, prog);
            return finish_output(prog);
        default:
            return cli_usage_hint(prog);
        }
    }
    if (optind >= argc) {
        cli_error(prog, "missing image PATH");
        return cli_usage_hint(prog);
    }
    if (argc - optind > 1) {
        cli_error(prog, "too many arguments: '%s'", argv[optind + 1]);
        return cli_usage_hint(prog);
    }
    const char *path = argv[optind];

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cli_error(prog, "%s: %s", path, strerror(errno));
        return RV_EXIT_FAIL;
    }
    struct rv_meta m;
    char why[RV_META_WHY_LEN];
    int r = rv_meta_read_fd_ex(fd, &m, why, sizeof why);
    close(fd);
    if (r) {
        if (why[0])
            cli_error(prog, "%s: %s: %s", path, rv_meta_strerror(r), why);
        else
            cli_error(prog, "%s: %s", path, rv_meta_strerror(r));
        return RV_EXIT_FAIL;
    }
    struct rv_meta_layout lay;
    rv_meta_layout(m.data_size, m.bm_granularity, &lay);   /* valid: read_fd checked */
    if (json)
        print_info_json(path, &m, &lay);
    else
        print_info_text(path, &m, &lay);
    return finish_output(prog);
}

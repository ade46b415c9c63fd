/*
 * test_ffi.c: every function of Missive's C API, with its error paths, and a bad-input matrix
 * (NULL handles and buffers, zero and huge lengths, invalid UTF-8, double frees, use after free
 * and after close, wrong-user operations) in which each case must return its documented code,
 * leave its out-parameter untouched and change nothing in the engine.
 *
 * ffi/run.sh builds it against the installed header and library and runs it, then runs it again
 * under valgrind (or AddressSanitizer). It prints one line per check that fails and a summary;
 * the exit status is 0 only if every check passed.
 *
 *   test_ffi [DIR]      DIR: an empty scratch folder (default: a new one in $TMPDIR or /tmp)
 */
#define _XOPEN_SOURCE 700

#include <ftw.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "missive.h"

/* ---- checking --------------------------------------------------------------------------- */

static int checks;
static int failures;

static void fail_at(const char *file, int line, const char *what) {
    failures++;
    fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what);
}

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        checks++;                                                                              \
        if (!(cond)) fail_at(__FILE__, __LINE__, #cond);                                       \
    } while (0)

/* A call that must return `want`. */
#define EXPECT(want, call)                                                                     \
    do {                                                                                       \
        missive_result got_ = (call);                                                          \
        checks++;                                                                              \
        if (got_ != (want)) {                                                                  \
            char msg_[1024];                                                                   \
            snprintf(msg_, sizeof msg_, "%s\n     returned %s, expected %s (%s)", #call,       \
                     missive_result_name(got_), missive_result_name(want),                     \
                     missive_last_error_message());                                            \
            fail_at(__FILE__, __LINE__, msg_);                                                 \
        }                                                                                      \
    } while (0)

#define OK(call) EXPECT(MISSIVE_OK, call)

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Waits up to 10 s for *value >= want. */
static int wait_for(atomic_int *value, int want) {
    for (int i = 0; i < 1000; i++) {
        if (atomic_load(value) >= want) return 1;
        sleep_ms(10);
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* ---- fixtures --------------------------------------------------------------------------- */

enum { ALICE = 1, BOB = 2, CAROL = 3, DAVE = 4, ERIN = 5, MALLORY = 66 };

static char root[512];

static void path_in(char *out, size_t len, const char *name) {
    snprintf(out, len, "%s/%s", root, name);
}

static missive_config test_config(void) {
    missive_config config;
    missive_config_default(&config);
    config.durability = MISSIVE_DURABILITY_OS;
    config.shards = 2;
    config.group_members_max = 4;
    config.body_bytes_max = 1024;
    config.media_ref_bytes_max = 64;
    config.checkpoint_interval_ms = 0;
    config.retention_interval_ms = 0;
    config.clock = MISSIVE_CLOCK_MANUAL;
    config.clock_start_ms = 1700000000000ULL;
    return config;
}

static missive_engine *open_engine(const char *name, const missive_config *config) {
    char path[600];
    path_in(path, sizeof path, name);
    missive_engine *engine = NULL;
    missive_result r = missive_engine_open(path, config, &engine);
    if (r != MISSIVE_OK) {
        fprintf(stderr, "cannot open %s: %s\n", path, missive_last_error_message());
        exit(2);
    }
    return engine;
}

static void id16(uint8_t out[16], unsigned n) {
    memset(out, 0, 16);
    out[0] = (uint8_t)n;
    out[1] = (uint8_t)(n >> 8);
    out[15] = 0x5a;
}

static missive_sent send_text(missive_engine *e, uint64_t from, uint64_t to, unsigned id,
                              const char *text) {
    uint8_t cid[16];
    id16(cid, id);
    missive_sent sent;
    memset(&sent, 0, sizeof sent);
    OK(missive_send_direct(e, from, 0, to, cid, (const uint8_t *)text, strlen(text), NULL, &sent));
    return sent;
}

static missive_sent send_group(missive_engine *e, uint64_t from, missive_chat_id chat,
                               unsigned id, const char *text) {
    uint8_t cid[16];
    id16(cid, id);
    missive_sent sent;
    memset(&sent, 0, sizeof sent);
    OK(missive_send(e, from, 0, chat, cid, (const uint8_t *)text, strlen(text), NULL, &sent));
    return sent;
}

static int same_chat(missive_chat_id a, missive_chat_id b) { return a.hi == b.hi && a.lo == b.lo; }

static size_t history_len(missive_engine *e, uint64_t user, missive_chat_id chat) {
    missive_message_list *list = NULL;
    if (missive_history(e, user, chat, MISSIVE_HISTORY_LATEST, 0, MISSIVE_HISTORY_LIMIT_MAX,
                        &list) != MISSIVE_OK)
        return (size_t)-1;
    size_t len = list->len;
    missive_message_list_free(list);
    return len;
}

static int body_is(const missive_message *m, const char *text) {
    size_t len = strlen(text);
    return m->body_len == len && (len == 0 ? m->body == NULL : memcmp(m->body, text, len) == 0);
}

/* ---- misc: version, result names, last error, ids, defaults ----------------------------- */

static void test_misc(void) {
    CHECK(strlen(missive_version()) > 0);
    CHECK(strcmp(missive_result_name(MISSIVE_OK), "MISSIVE_OK") == 0);
    CHECK(strcmp(missive_result_name(MISSIVE_ERR_NOT_A_MEMBER), "MISSIVE_ERR_NOT_A_MEMBER") == 0);
    CHECK(strcmp(missive_result_name(MISSIVE_ERR_OTHER), "MISSIVE_ERR_OTHER") == 0);
    CHECK(strcmp(missive_result_name(12345), "MISSIVE_UNKNOWN") == 0);
    CHECK(strcmp(missive_result_name(-1), "MISSIVE_UNKNOWN") == 0);

    /* The last error: set by a failure, kept by successes, copied only into a large buffer. */
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_config_default(NULL));
    CHECK(strstr(missive_last_error_message(), "missive_config_default") != NULL);
    missive_chat_id c1, c2;
    OK(missive_chat_direct(7, 3, &c1));
    CHECK(strstr(missive_last_error_message(), "missive_config_default") != NULL);
    size_t len = 0, written = 12345;
    OK(missive_last_error_length(&len));
    CHECK(len == strlen(missive_last_error_message()));
    char small[4];
    EXPECT(MISSIVE_ERR_BUFFER_TOO_SMALL, missive_last_error(small, sizeof small, &written));
    CHECK(written == 12345);
    char buf[256];
    OK(missive_last_error(buf, sizeof buf, &written));
    CHECK(written == len && strcmp(buf, missive_last_error_message()) == 0);
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_last_error(NULL, 10, &written));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_last_error(buf, sizeof buf, NULL));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_last_error_length(NULL));
    /* ... and the getters' own failures did not replace it. */
    CHECK(strcmp(buf, missive_last_error_message()) == 0);

    /* A 1:1 chat's id is the same from both sides: min << 64 | max. */
    OK(missive_chat_direct(3, 7, &c2));
    CHECK(same_chat(c1, c2) && c1.hi == 3 && c1.lo == 7);

    missive_config config;
    OK(missive_config_default(&config));
    CHECK(config.durability == MISSIVE_DURABILITY_ALWAYS && config.group_members_max == 256);
    CHECK(config.clock == MISSIVE_CLOCK_SYSTEM && config.queue_capacity == 1024);
    missive_send_options options;
    OK(missive_send_options_default(&options));
    CHECK(options.kind == MISSIVE_CONTENT_TEXT && options.ttl_ms == MISSIVE_TTL_CHAT);
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_send_options_default(NULL));
}

/* ---- opening, time, checkpoint, expire, stats, close ------------------------------------ */

static void test_lifecycle(void) {
    char path[600];
    path_in(path, sizeof path, "lifecycle");
    missive_engine *e = NULL;
    /* NULL config: the defaults (system clock, background thread). */
    OK(missive_engine_open(path, NULL, &e));
    uint64_t now = 0;
    OK(missive_engine_now(e, &now));
    CHECK(now > 1600000000000ULL);
    EXPECT(MISSIVE_ERR_INVALID_ARGUMENT, missive_engine_set_time(e, 5));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_engine_now(e, NULL));
    send_text(e, ALICE, BOB, 1, "durable");
    OK(missive_engine_checkpoint(e));
    missive_stats stats;
    OK(missive_engine_stats(e, &stats));
    CHECK(stats.sends == 1 && stats.checkpoints == 1);
    missive_expire_report report;
    OK(missive_expire(e, now, &report));
    CHECK(report.segments_removed == 0);
    CHECK(report.cutoff_ms == now - 30ULL * 24 * 3600 * 1000);
    OK(missive_expire(e, now, NULL));
    OK(missive_engine_close(e));
    OK(missive_engine_close(e));
    EXPECT(MISSIVE_ERR_CLOSED, missive_engine_checkpoint(e));
    EXPECT(MISSIVE_ERR_CLOSED, missive_expire(e, now, NULL));
    OK(missive_engine_stats(e, &stats)); /* stats still answer after close */
    OK(missive_engine_free(e));

    /* Reopen: the message survived, and the index came from the checkpoint. */
    OK(missive_engine_open(path, NULL, &e));
    OK(missive_engine_stats(e, &stats));
    CHECK(stats.opened_from_checkpoint);
    missive_chat_id chat;
    missive_chat_direct(ALICE, BOB, &chat);
    CHECK(history_len(e, BOB, chat) == 1);
    OK(missive_engine_free(e)); /* free without close: closes */

    /* Manual clock. */
    missive_config config = test_config();
    e = open_engine("manual", &config);
    OK(missive_engine_now(e, &now));
    CHECK(now == 1700000000000ULL);
    OK(missive_engine_set_time(e, 1800000000000ULL));
    OK(missive_engine_now(e, &now));
    CHECK(now == 1800000000000ULL);
    missive_sent sent = send_text(e, ALICE, BOB, 1, "late");
    CHECK(sent.timestamp_ms == 1800000000000ULL);
    OK(missive_engine_free(e));

    /* Opening fails cleanly: a path that is a file, every out-of-range config field. */
    char file[600];
    path_in(file, sizeof file, "a-file");
    FILE *f = fopen(file, "w");
    fputs("not a folder", f);
    fclose(f);
    e = NULL;
    EXPECT(MISSIVE_ERR_STORAGE, missive_engine_open(file, NULL, &e));
    CHECK(e == NULL);
    path_in(path, sizeof path, "never");
    missive_config c;
#define OPEN_FAILS(stmt)                                                                       \
    do {                                                                                       \
        c = test_config();                                                                     \
        stmt;                                                                                  \
        e = NULL;                                                                              \
        EXPECT(MISSIVE_ERR_INVALID_ARGUMENT, missive_engine_open(path, &c, &e));               \
        CHECK(e == NULL);                                                                      \
    } while (0)
    OPEN_FAILS(c.durability = 0);
    OPEN_FAILS(c.durability = 77);
    OPEN_FAILS((c.durability = MISSIVE_DURABILITY_INTERVAL, c.durability_interval_ms = 0));
    OPEN_FAILS((c.durability = MISSIVE_DURABILITY_INTERVAL, c.durability_interval_ms = 60001));
    OPEN_FAILS(c.shards = 1025);
    OPEN_FAILS(c.segment_window_ms = 999);
    OPEN_FAILS(c.segment_bytes_max = 4095);
    OPEN_FAILS(c.group_members_max = 0);
    OPEN_FAILS(c.group_members_max = MISSIVE_GROUP_MEMBERS_MAX + 1);
    OPEN_FAILS(c.body_bytes_max = MISSIVE_BODY_BYTES_MAX + 1);
    OPEN_FAILS(c.media_ref_bytes_max = MISSIVE_MEDIA_REF_BYTES_MAX + 1);
    OPEN_FAILS(c.queue_capacity = 0);
    OPEN_FAILS(c.queue_capacity = MISSIVE_QUEUE_CAPACITY_MAX + 1);
    OPEN_FAILS(c.clock = 0);
    CHECK(access(path, F_OK) != 0); /* nothing was created */
    /* An interval durability in range opens. */
    c = test_config();
    c.durability = MISSIVE_DURABILITY_INTERVAL;
    c.durability_interval_ms = 5;
    e = open_engine("interval", &c);
    send_text(e, ALICE, BOB, 1, "x");
    OK(missive_engine_free(e));
}

/* ---- messaging, reads, receipts, status ------------------------------------------------- */

static void test_messaging(missive_engine *e) {
    missive_chat_id chat;
    OK(missive_chat_direct(ALICE, BOB, &chat));
    missive_sent s1 = send_text(e, ALICE, BOB, 100, "one");
    CHECK(same_chat(s1.chat, chat) && s1.seq == 1 && !s1.duplicate);
    /* A retry with the same client_msg_id stores nothing. */
    missive_sent again = send_text(e, ALICE, BOB, 100, "one");
    CHECK(again.duplicate && again.seq == 1 && again.timestamp_ms == s1.timestamp_ms);
    missive_sent s2 = send_text(e, BOB, ALICE, 101, "two");
    CHECK(s2.seq == 2);

    /* Options: an image with media, a reply, a TTL; an empty body. */
    missive_send_options options;
    missive_send_options_default(&options);
    options.kind = MISSIVE_CONTENT_IMAGE;
    options.media = (const uint8_t *)"sha256:abc";
    options.media_len = 10;
    options.reply_to = 1;
    options.ttl_ms = 0;
    uint8_t cid[16];
    id16(cid, 102);
    missive_sent s3;
    OK(missive_send(e, ALICE, 1, chat, cid, NULL, 0, &options, &s3));
    CHECK(s3.seq == 3);

    /* History, all four ways. */
    missive_message_list *list = NULL;
    OK(missive_history(e, BOB, chat, MISSIVE_HISTORY_LATEST, 0, 10, &list));
    CHECK(list->len == 3);
    if (list->len == 3) {
        const missive_message *m = list->messages;
        CHECK(m[0].seq == 1 && m[0].sender == ALICE && m[0].kind == MISSIVE_CONTENT_TEXT);
        CHECK(body_is(&m[0], "one") && m[0].client_msg_id[0] == 100 && !m[0].deleted);
        CHECK(m[1].sender == BOB && body_is(&m[1], "two") && m[1].reply_to == 0);
        CHECK(m[2].kind == MISSIVE_CONTENT_IMAGE && m[2].reply_to == 1 && m[2].body_len == 0);
        CHECK(m[2].body == NULL && m[2].media_len == 10 && memcmp(m[2].media, "sha256:abc", 10) == 0);
        CHECK(m[2].sender_device == 1 && same_chat(m[2].chat, chat));
        CHECK(m[0].timestamp_ms <= m[1].timestamp_ms);
    }
    OK(missive_message_list_free(list));
    OK(missive_history(e, ALICE, chat, MISSIVE_HISTORY_BEFORE, 3, 10, &list));
    CHECK(list->len == 2 && list->messages[1].seq == 2);
    OK(missive_message_list_free(list));
    OK(missive_history(e, ALICE, chat, MISSIVE_HISTORY_AFTER, 1, 1, &list));
    CHECK(list->len == 1 && list->messages[0].seq == 2);
    OK(missive_message_list_free(list));
    OK(missive_history(e, ALICE, chat, MISSIVE_HISTORY_AROUND, s2.timestamp_ms, 10, &list));
    CHECK(list->len == 3);
    OK(missive_message_list_free(list));
    /* An empty chat reads as an empty list with a NULL array. */
    missive_chat_id empty;
    missive_chat_direct(ALICE, ERIN, &empty);
    OK(missive_history(e, ERIN, empty, MISSIVE_HISTORY_LATEST, 0, 10, &list));
    CHECK(list->len == 0 && list->messages == NULL);
    OK(missive_message_list_free(list));

    /* One message. */
    OK(missive_message_get(e, BOB, chat, 2, &list));
    CHECK(list->len == 1 && body_is(&list->messages[0], "two"));
    OK(missive_message_list_free(list));
    EXPECT(MISSIVE_ERR_NO_SUCH_MESSAGE, missive_message_get(e, BOB, chat, 99, &list));
    EXPECT(MISSIVE_ERR_NOT_A_MEMBER, missive_message_get(e, CAROL, chat, 1, &list));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_message_get(e, BOB, chat, 1, NULL));

    /* Unread, receipts, watermarks, status. */
    uint64_t n = 0, up_to = 0;
    OK(missive_unread(e, BOB, chat, &n));
    CHECK(n == 1); /* sending "two" marked Bob read up to it: only Alice's "image" is unread */
    OK(missive_mark_delivered(e, BOB, 0, chat, 3, &up_to));
    CHECK(up_to == 3);
    OK(missive_mark_delivered(e, BOB, 0, chat, 1, &up_to)); /* never goes back */
    CHECK(up_to == 3);
    OK(missive_delivered_up_to(e, BOB, 0, chat, &n));
    CHECK(n == 3);
    OK(missive_mark_read(e, BOB, 0, chat, 1, NULL)); /* below the watermark: nothing changes */
    OK(missive_read_up_to(e, BOB, chat, &n));
    CHECK(n == 2);
    OK(missive_unread(e, BOB, chat, &n));
    CHECK(n == 1);
    OK(missive_mark_read(e, BOB, 0, chat, 1000, &up_to)); /* clamped to the head */
    CHECK(up_to == 3);
    missive_receipt_counts counts;
    missive_recipient_list *recipients = NULL;
    OK(missive_message_status(e, ALICE, chat, 1, &counts, &recipients));
    CHECK(counts.recipients == 1 && counts.delivered == 1 && counts.read == 1);
    CHECK(recipients->len == 1 && recipients->recipients[0].user == BOB);
    CHECK(recipients->recipients[0].status == MISSIVE_STATUS_READ);
    OK(missive_recipient_list_free(recipients));
    /* Alice sent message 3 after Bob's message 2, so she has read it. */
    OK(missive_message_status(e, BOB, chat, 2, &counts, NULL));
    CHECK(counts.recipients == 1 && counts.delivered == 1 && counts.read == 1);
    EXPECT(MISSIVE_ERR_NOT_SENDER, missive_message_status(e, ALICE, chat, 2, &counts, NULL));
    EXPECT(MISSIVE_ERR_NO_SUCH_MESSAGE, missive_message_status(e, ALICE, chat, 50, &counts, NULL));
    OK(missive_delivered_up_to(e, ALICE, 7, chat, &n));
    CHECK(n == 0);

    /* Chat list. */
    missive_chat_list *chats = NULL;
    OK(missive_chats(e, BOB, &chats));
    CHECK(chats->len == 1);
    if (chats->len == 1) {
        CHECK(same_chat(chats->chats[0].chat, chat) && chats->chats[0].has_last);
        CHECK(chats->chats[0].head == 3 && chats->chats[0].last.seq == 3);
        CHECK(chats->chats[0].unread == 0);
    }
    OK(missive_chat_list_free(chats));
    OK(missive_chats(e, MALLORY, &chats));
    CHECK(chats->len == 0 && chats->chats == NULL);
    OK(missive_chat_list_free(chats));

    /* Delete for everyone. */
    EXPECT(MISSIVE_ERR_NOT_SENDER, missive_delete(e, BOB, chat, 1));
    OK(missive_delete(e, ALICE, chat, 1));
    OK(missive_delete(e, ALICE, chat, 1)); /* again: nothing changes */
    EXPECT(MISSIVE_ERR_NO_SUCH_MESSAGE, missive_delete(e, ALICE, chat, 77));
    OK(missive_message_get(e, BOB, chat, 1, &list));
    CHECK(list->messages[0].deleted && list->messages[0].body_len == 0);
    OK(missive_message_list_free(list));

    /* Disappearing messages: the chat's timer applies to later messages without their own. */
    OK(missive_set_chat_ttl(e, BOB, chat, 1000));
    missive_sent s4 = send_text(e, ALICE, BOB, 103, "poof");
    OK(missive_message_get(e, BOB, chat, s4.seq, &list));
    CHECK(list->messages[0].ttl_ms == 1000);
    OK(missive_message_list_free(list));
    uint64_t now;
    missive_engine_now(e, &now);
    OK(missive_engine_set_time(e, now + 5000));
    EXPECT(MISSIVE_ERR_NO_SUCH_MESSAGE, missive_message_get(e, BOB, chat, s4.seq, &list));
    OK(missive_set_chat_ttl(e, BOB, chat, 0));
    OK(missive_typing(e, ALICE, 0, chat, true));
    OK(missive_typing(e, ALICE, 0, chat, false));

    missive_presence presence;
    OK(missive_presence_get(e, MALLORY, &presence));
    CHECK(!presence.online && !presence.has_last_seen);
}

/* ---- groups ----------------------------------------------------------------------------- */

static missive_chat_id test_groups(missive_engine *e) {
    uint64_t members[] = {BOB, CAROL, BOB, ALICE}; /* repeats and the creator are skipped */
    missive_chat_id g;
    OK(missive_group_create(e, ALICE, members, 4, &g));
    CHECK(g.hi == UINT64_MAX);
    missive_member_list *list = NULL;
    OK(missive_group_members(e, CAROL, g, &list));
    CHECK(list->len == 3);
    if (list->len == 3) {
        CHECK(list->members[0].user == ALICE && list->members[0].role == MISSIVE_ROLE_ADMIN);
        CHECK(list->members[1].user == BOB && list->members[1].role == MISSIVE_ROLE_MEMBER);
    }
    OK(missive_member_list_free(list));

    missive_sent hello = send_group(e, ALICE, g, 200, "hello group");
    CHECK(hello.seq == 2); /* 1 is the system message of the creation */
    EXPECT(MISSIVE_ERR_NOT_ADMIN, missive_group_add(e, BOB, g, (uint64_t[]){DAVE}, 1));
    OK(missive_group_add(e, ALICE, g, (uint64_t[]){DAVE, BOB}, 2));
    EXPECT(MISSIVE_ERR_GROUP_FULL, missive_group_add(e, ALICE, g, (uint64_t[]){ERIN}, 1));
    OK(missive_group_add(e, ALICE, g, NULL, 0)); /* nothing to add */
    /* Dave joined after "hello group": he never sees it, only what follows his join (the
     * system notice of the add). */
    missive_message_list *history = NULL;
    OK(missive_history(e, DAVE, g, MISSIVE_HISTORY_LATEST, 0, 50, &history));
    int saw_hello = 0;
    for (size_t i = 0; i < history->len; i++)
        if (body_is(&history->messages[i], "hello group")) saw_hello = 1;
    CHECK(history->len == 1 && !saw_hello);
    CHECK(history->messages[0].kind == MISSIVE_CONTENT_SYSTEM);
    CHECK(history->messages[0].sender_device == UINT32_MAX);
    OK(missive_message_list_free(history));

    OK(missive_group_promote(e, ALICE, g, BOB));
    OK(missive_group_demote(e, BOB, g, ALICE));
    EXPECT(MISSIVE_ERR_NOT_ADMIN, missive_group_promote(e, ALICE, g, CAROL));
    OK(missive_group_remove(e, BOB, g, DAVE));
    EXPECT(MISSIVE_ERR_NOT_A_MEMBER, missive_group_remove(e, BOB, g, DAVE));
    EXPECT(MISSIVE_ERR_NOT_A_MEMBER, missive_send(e, DAVE, 0, g, (uint8_t[16]){9}, NULL, 0, NULL,
                                                  &hello));
    OK(missive_group_leave(e, CAROL, g));
    EXPECT(MISSIVE_ERR_NOT_A_MEMBER, missive_group_leave(e, CAROL, g));
    OK(missive_group_members(e, ALICE, g, &list));
    CHECK(list->len == 2);
    OK(missive_member_list_free(list));
    /* The last admin leaving promotes the lowest id. */
    OK(missive_group_leave(e, BOB, g));
    OK(missive_group_members(e, ALICE, g, &list));
    CHECK(list->len == 1 && list->members[0].role == MISSIVE_ROLE_ADMIN);
    OK(missive_member_list_free(list));
    OK(missive_group_add(e, ALICE, g, (uint64_t[]){BOB, CAROL}, 2));

    /* Status of a group message, as its sender and as an admin. */
    missive_sent m = send_group(e, BOB, g, 201, "status?");
    OK(missive_mark_read(e, CAROL, 0, g, m.seq, NULL));
    missive_receipt_counts counts;
    OK(missive_message_status(e, BOB, g, m.seq, &counts, NULL));
    CHECK(counts.recipients == 2 && counts.read == 1 && counts.delivered == 1);
    OK(missive_message_status(e, ALICE, g, m.seq, &counts, NULL)); /* an admin may */

    /* Groups that do not exist, and 1:1 chats are not groups. */
    missive_chat_id nowhere = {UINT64_MAX, 12345};
    EXPECT(MISSIVE_ERR_NO_SUCH_CHAT, missive_group_members(e, ALICE, nowhere, &list));
    missive_chat_id direct;
    missive_chat_direct(ALICE, BOB, &direct);
    EXPECT(MISSIVE_ERR_INVALID_ARGUMENT, missive_group_promote(e, ALICE, direct, BOB));
    OK(missive_group_members(e, ALICE, direct, &list)); /* a 1:1 chat's two users */
    CHECK(list->len == 2);
    OK(missive_member_list_free(list));
    /* A group of one. */
    missive_chat_id solo;
    OK(missive_group_create(e, ERIN, NULL, 0, &solo));
    EXPECT(MISSIVE_ERR_GROUP_FULL,
           missive_group_create(e, ERIN, (uint64_t[]){1, 2, 3, 4}, 4, &solo));
    return g;
}

/* ---- subscriptions ---------------------------------------------------------------------- */

static missive_result next(missive_subscription *sub, uint32_t ms, missive_event *event) {
    memset(event, 0, sizeof *event);
    return missive_subscription_next(sub, ms, event);
}

static void test_poll(missive_engine *e, missive_chat_id g) {
    missive_chat_id chat;
    missive_chat_direct(ALICE, BOB, &chat);
    /* Bob's second device has never received anything: its backlog is every message. */
    missive_subscription *bob = NULL;
    OK(missive_subscribe(e, BOB, 5, &bob));
    missive_event ev;
    int backlog = 0;
    while (next(bob, 0, &ev) == MISSIVE_OK) {
        CHECK(ev.kind == MISSIVE_EVENT_MESSAGE);
        backlog++;
    }
    CHECK(backlog >= 3);
    EXPECT(MISSIVE_ERR_TIMEOUT, next(bob, 20, &ev));
    CHECK(ev.kind == 0); /* nothing written */

    /* Alice comes online: Bob, her 1:1 partner, hears it. */
    missive_subscription *alice = NULL;
    OK(missive_subscribe(e, ALICE, 0, &alice));
    while (next(alice, 0, &ev) == MISSIVE_OK) {
    }
    OK(next(bob, 2000, &ev));
    CHECK(ev.kind == MISSIVE_EVENT_PRESENCE && ev.user == ALICE && ev.presence.online);
    missive_presence presence;
    OK(missive_presence_get(e, ALICE, &presence));
    CHECK(presence.online);

    /* A live message, with its bytes valid until the next call. */
    missive_sent sent = send_text(e, ALICE, BOB, 300, "live!");
    OK(next(bob, 2000, &ev));
    CHECK(ev.kind == MISSIVE_EVENT_MESSAGE && ev.message.seq == sent.seq);
    CHECK(body_is(&ev.message, "live!") && same_chat(ev.chat, chat));

    /* Typing, receipt, delete, chat TTL, group change. */
    OK(missive_typing(e, ALICE, 0, chat, true));
    OK(next(bob, 2000, &ev));
    CHECK(ev.kind == MISSIVE_EVENT_TYPING && ev.user == ALICE && ev.typing);
    OK(missive_mark_read(e, BOB, 5, chat, sent.seq, NULL));
    OK(next(alice, 2000, &ev));
    CHECK(ev.kind == MISSIVE_EVENT_RECEIPT && ev.user == BOB && ev.device == 5);
    CHECK(ev.receipt_kind == MISSIVE_RECEIPT_READ && ev.seq == sent.seq && ev.timestamp_ms > 0);
    OK(missive_delete(e, ALICE, chat, sent.seq));
    OK(next(bob, 2000, &ev));
    CHECK(ev.kind == MISSIVE_EVENT_DELETED && ev.seq == sent.seq && ev.user == ALICE);
    OK(missive_set_chat_ttl(e, ALICE, chat, 60000));
    OK(next(bob, 2000, &ev));
    CHECK(ev.kind == MISSIVE_EVENT_CHAT_TTL && ev.ttl_ms == 60000 && ev.user == ALICE);
    OK(missive_set_chat_ttl(e, ALICE, chat, 0));
    OK(next(bob, 2000, &ev));
    OK(missive_group_remove(e, ALICE, g, CAROL));
    int saw_group = 0;
    while (next(bob, 500, &ev) == MISSIVE_OK) {
        if (ev.kind == MISSIVE_EVENT_GROUP) {
            saw_group = 1;
            CHECK(ev.group_op == MISSIVE_GROUP_REMOVE && ev.user == ALICE);
            CHECK(ev.users_len == 1 && ev.users[0] == CAROL && same_chat(ev.chat, g));
        }
    }
    CHECK(saw_group);

    /* A second subscription of the same device ends the first. */
    missive_subscription *bob2 = NULL;
    OK(missive_subscribe(e, BOB, 5, &bob2));
    EXPECT(MISSIVE_ERR_CLOSED, next(bob, 2000, &ev));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_subscription_next(bob2, 0, NULL));
    OK(missive_subscription_free(bob));
    OK(missive_subscription_free(bob2));
    OK(missive_subscription_free(alice));
    OK(missive_presence_get(e, ALICE, &presence));
    CHECK(!presence.online && presence.has_last_seen && presence.last_seen_ms > 0);
}

typedef struct {
    atomic_int messages;
    atomic_int closed;
    atomic_int closed_code;
    atomic_int free_from_callback;
    atomic_int body_ok;
    _Atomic(missive_subscription *) self;
} callback_state;

static void on_event(void *user_data, const missive_event *event) {
    callback_state *s = user_data;
    if (event->kind == MISSIVE_EVENT_MESSAGE) {
        if (body_is(&event->message, "to the callback")) atomic_fetch_add(&s->body_ok, 1);
        if (atomic_fetch_add(&s->messages, 1) == 0) {
            /* Freeing a subscription from its own callback is refused. */
            atomic_store(&s->free_from_callback,
                         (int)missive_subscription_free(atomic_load(&s->self)));
        }
    } else if (event->kind == MISSIVE_EVENT_CLOSED) {
        atomic_store(&s->closed_code, event->code);
        atomic_fetch_add(&s->closed, 1);
    }
}

static void test_callback(void) {
    missive_config config = test_config();
    missive_engine *e = open_engine("callback", &config);
    callback_state *s = calloc(1, sizeof *s);
    atomic_store(&s->free_from_callback, -1);
    missive_subscription *sub = NULL;
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_subscribe_callback(e, BOB, 0, NULL, s, &sub));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_subscribe_callback(e, BOB, 0, on_event, s, NULL));
    OK(missive_subscribe_callback(e, BOB, 0, on_event, s, &sub));
    atomic_store(&s->self, sub);
    send_text(e, ALICE, BOB, 1, "to the callback");
    send_text(e, ALICE, BOB, 2, "to the callback");
    CHECK(wait_for(&s->messages, 2));
    CHECK(atomic_load(&s->body_ok) == 2);
    CHECK(atomic_load(&s->free_from_callback) == MISSIVE_ERR_BUSY);
    missive_event ev;
    EXPECT(MISSIVE_ERR_BUSY, next(sub, 0, &ev)); /* a callback subscription is not polled */
    /* Closing the engine ends the stream: one CLOSED event, then no more callbacks. */
    OK(missive_engine_close(e));
    CHECK(wait_for(&s->closed, 1));
    CHECK(atomic_load(&s->closed_code) == MISSIVE_ERR_CLOSED);
    OK(missive_subscription_free(sub));
    EXPECT(MISSIVE_ERR_INVALID_HANDLE, missive_subscription_free(sub));
    OK(missive_engine_free(e));

    /* Freeing a callback subscription stops it: no callback afterwards. */
    e = open_engine("callback2", &config);
    memset(s, 0, sizeof *s);
    OK(missive_subscribe_callback(e, CAROL, 0, on_event, s, &sub));
    atomic_store(&s->self, sub);
    send_text(e, ALICE, CAROL, 1, "to the callback");
    CHECK(wait_for(&s->messages, 1));
    OK(missive_subscription_free(sub));
    int seen = atomic_load(&s->messages);
    send_text(e, ALICE, CAROL, 2, "to the callback");
    sleep_ms(100);
    CHECK(atomic_load(&s->messages) == seen && atomic_load(&s->closed) == 0);
    OK(missive_engine_free(e));
    free(s);
}

/* ---- the bad-input matrix --------------------------------------------------------------- */

/* What a bad call must not change. */
typedef struct {
    missive_stats stats;
    size_t direct_len, group_len;
    uint64_t unread, read_up_to;
    size_t members;
} snapshot;

static missive_engine *E;     /* the engine the matrix runs against */
static missive_chat_id DIRECT; /* Alice and Bob */
static missive_chat_id GROUP;  /* Alice (admin), Bob, Carol; cap 4 */

static snapshot take_snapshot(void) {
    snapshot s;
    memset(&s, 0, sizeof s);
    missive_engine_stats(E, &s.stats);
    s.direct_len = history_len(E, BOB, DIRECT);
    s.group_len = history_len(E, BOB, GROUP);
    missive_unread(E, BOB, DIRECT, &s.unread);
    missive_read_up_to(E, BOB, DIRECT, &s.read_up_to);
    missive_member_list *list = NULL;
    if (missive_group_members(E, ALICE, GROUP, &list) == MISSIVE_OK) {
        s.members = list->len;
        missive_member_list_free(list);
    }
    return s;
}

static int same_snapshot(const snapshot *a, const snapshot *b) {
    return a->stats.sends == b->stats.sends && a->stats.receipts == b->stats.receipts &&
           a->stats.deletes == b->stats.deletes &&
           a->stats.group_changes == b->stats.group_changes &&
           a->stats.duplicate_sends == b->stats.duplicate_sends &&
           a->stats.bytes_appended == b->stats.bytes_appended &&
           a->direct_len == b->direct_len && a->group_len == b->group_len &&
           a->unread == b->unread && a->read_up_to == b->read_up_to && a->members == b->members;
}

static int matrix_cases;

/*
 * One case: fill `out` with a pattern, make the call, and check the code, that `out` still
 * holds the pattern, and that the engine's visible state did not change.
 */
#define BAD(want, out, call)                                                                   \
    do {                                                                                       \
        matrix_cases++;                                                                        \
        snapshot before_ = take_snapshot();                                                    \
        memset(&(out), 0xa5, sizeof(out));                                                     \
        unsigned char pattern_[sizeof(out)];                                                   \
        memcpy(pattern_, &(out), sizeof(out));                                                 \
        EXPECT(want, call);                                                                    \
        checks++;                                                                              \
        if (memcmp(pattern_, &(out), sizeof(out)) != 0)                                        \
            fail_at(__FILE__, __LINE__, "out-parameter written on failure: " #call);           \
        snapshot after_ = take_snapshot();                                                     \
        checks++;                                                                              \
        if (!same_snapshot(&before_, &after_))                                                 \
            fail_at(__FILE__, __LINE__, "state changed by a failed call: " #call);             \
    } while (0)

static void test_matrix(void) {
    missive_config config = test_config();
    E = open_engine("matrix", &config);
    missive_chat_direct(ALICE, BOB, &DIRECT);
    send_text(E, ALICE, BOB, 1, "first");
    send_text(E, BOB, ALICE, 2, "second");
    OK(missive_group_create(E, ALICE, (uint64_t[]){BOB, CAROL}, 2, &GROUP));
    send_group(E, ALICE, GROUP, 3, "group hello");

    uint8_t cid[16];
    id16(cid, 999);
    const uint8_t *body = (const uint8_t *)"payload";
    missive_sent sent;
    missive_engine *engine_out;
    missive_message_list *list_out;
    missive_member_list *members_out;
    missive_chat_id chat_out;
    missive_event event_out;
    missive_subscription *sub_out;
    missive_receipt_counts counts_out;
    uint64_t u64_out;
    int nothing = 0; /* for calls without an out-parameter */
    char path[600];
    path_in(path, sizeof path, "matrix-new");
    missive_config bad_config = test_config();
    missive_send_options options;
    missive_send_options_default(&options);

    /* Opening. */
    BAD(MISSIVE_ERR_NULL_ARGUMENT, engine_out, missive_engine_open(NULL, &config, &engine_out));
    BAD(MISSIVE_ERR_NULL_ARGUMENT, nothing, missive_engine_open(path, &config, NULL));
    BAD(MISSIVE_ERR_INVALID_UTF8, engine_out,
        missive_engine_open("/tmp/missive-\xff\xfe-bad", &config, &engine_out));
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, engine_out, missive_engine_open("", &config, &engine_out));
    char *long_path = malloc(MISSIVE_PATH_BYTES_MAX + 2);
    memset(long_path, 'a', MISSIVE_PATH_BYTES_MAX + 1);
    long_path[MISSIVE_PATH_BYTES_MAX + 1] = 0;
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, engine_out,
        missive_engine_open(long_path, &config, &engine_out));
    free(long_path);
    bad_config.queue_capacity = 0;
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, engine_out,
        missive_engine_open(path, &bad_config, &engine_out));
    CHECK(access(path, F_OK) != 0);

    /* Sending: NULL handles and buffers, zero and huge lengths. */
    BAD(MISSIVE_ERR_NULL_ARGUMENT, sent,
        missive_send_direct(NULL, ALICE, 0, BOB, cid, body, 7, NULL, &sent));
    BAD(MISSIVE_ERR_NULL_ARGUMENT, sent,
        missive_send_direct(E, ALICE, 0, BOB, NULL, body, 7, NULL, &sent));
    BAD(MISSIVE_ERR_NULL_ARGUMENT, sent,
        missive_send_direct(E, ALICE, 0, BOB, cid, NULL, 7, NULL, &sent));
    BAD(MISSIVE_ERR_NULL_ARGUMENT, nothing,
        missive_send_direct(E, ALICE, 0, BOB, cid, body, 7, NULL, NULL));
    BAD(MISSIVE_ERR_PAYLOAD_TOO_LARGE, sent,
        missive_send_direct(E, ALICE, 0, BOB, cid, body, SIZE_MAX, NULL, &sent));
    BAD(MISSIVE_ERR_PAYLOAD_TOO_LARGE, sent,
        missive_send_direct(E, ALICE, 0, BOB, cid, body, config.body_bytes_max + 1, NULL, &sent));
    options.media = NULL;
    options.media_len = 3;
    BAD(MISSIVE_ERR_NULL_ARGUMENT, sent,
        missive_send(E, ALICE, 0, DIRECT, cid, body, 7, &options, &sent));
    options.media = body;
    options.media_len = SIZE_MAX;
    BAD(MISSIVE_ERR_PAYLOAD_TOO_LARGE, sent,
        missive_send(E, ALICE, 0, DIRECT, cid, body, 7, &options, &sent));
    missive_send_options_default(&options);
    options.kind = MISSIVE_CONTENT_SYSTEM;
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, sent,
        missive_send(E, ALICE, 0, DIRECT, cid, body, 7, &options, &sent));
    options.kind = 99;
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, sent,
        missive_send(E, ALICE, 0, DIRECT, cid, body, 7, &options, &sent));
    missive_send_options_default(&options);
    options.reply_to = 50;
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, sent,
        missive_send(E, ALICE, 0, DIRECT, cid, body, 7, &options, &sent));
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, sent,
        missive_send(E, ALICE, UINT32_MAX, DIRECT, cid, body, 7, NULL, &sent));

    /* Wrong users, wrong chats. */
    BAD(MISSIVE_ERR_NOT_A_MEMBER, sent,
        missive_send(E, MALLORY, 0, DIRECT, cid, body, 7, NULL, &sent));
    BAD(MISSIVE_ERR_NO_SUCH_CHAT, sent,
        missive_send(E, ALICE, 0, (missive_chat_id){UINT64_MAX, 4242}, cid, body, 7, NULL,
                     &sent));
    BAD(MISSIVE_ERR_NOT_SENDER, nothing, missive_delete(E, BOB, DIRECT, 1));
    BAD(MISSIVE_ERR_NOT_A_MEMBER, u64_out,
        missive_mark_read(E, MALLORY, 0, DIRECT, 2, &u64_out));
    BAD(MISSIVE_ERR_NOT_A_MEMBER, nothing, missive_typing(E, MALLORY, 0, DIRECT, true));
    BAD(MISSIVE_ERR_NOT_A_MEMBER, nothing, missive_set_chat_ttl(E, MALLORY, DIRECT, 5));
    BAD(MISSIVE_ERR_NOT_A_MEMBER, u64_out, missive_unread(E, MALLORY, DIRECT, &u64_out));
    BAD(MISSIVE_ERR_NOT_SENDER, counts_out,
        missive_message_status(E, BOB, DIRECT, 1, &counts_out, NULL));
    BAD(MISSIVE_ERR_NULL_ARGUMENT, nothing,
        missive_message_status(E, ALICE, DIRECT, 1, NULL, NULL));

    /* Reads. */
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, list_out,
        missive_history(E, BOB, DIRECT, MISSIVE_HISTORY_LATEST, 0, 0, &list_out));
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, list_out,
        missive_history(E, BOB, DIRECT, MISSIVE_HISTORY_LATEST, 0, SIZE_MAX, &list_out));
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, list_out,
        missive_history(E, BOB, DIRECT, 0, 0, 10, &list_out));
    BAD(MISSIVE_ERR_NULL_ARGUMENT, nothing,
        missive_history(E, BOB, DIRECT, MISSIVE_HISTORY_LATEST, 0, 10, NULL));
    BAD(MISSIVE_ERR_NOT_A_MEMBER, list_out,
        missive_history(E, MALLORY, DIRECT, MISSIVE_HISTORY_LATEST, 0, 10, &list_out));
    BAD(MISSIVE_ERR_NO_SUCH_MESSAGE, list_out, missive_message_get(E, BOB, DIRECT, 999, &list_out));

    /* Groups. */
    BAD(MISSIVE_ERR_NOT_ADMIN, nothing, missive_group_add(E, BOB, GROUP, (uint64_t[]){DAVE}, 1));
    BAD(MISSIVE_ERR_GROUP_FULL, nothing,
        missive_group_add(E, ALICE, GROUP, (uint64_t[]){DAVE, ERIN}, 2));
    BAD(MISSIVE_ERR_NULL_ARGUMENT, nothing, missive_group_add(E, ALICE, GROUP, NULL, 2));
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, nothing,
        missive_group_add(E, ALICE, GROUP, (uint64_t[]){DAVE}, SIZE_MAX));
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, chat_out,
        missive_group_create(E, ALICE, (uint64_t[]){DAVE}, MISSIVE_GROUP_MEMBERS_MAX + 1,
                             &chat_out));
    BAD(MISSIVE_ERR_NOT_A_MEMBER, nothing, missive_group_remove(E, ALICE, GROUP, DAVE));
    BAD(MISSIVE_ERR_NOT_ADMIN, nothing, missive_group_remove(E, BOB, GROUP, CAROL));
    BAD(MISSIVE_ERR_NOT_ADMIN, nothing, missive_group_promote(E, CAROL, GROUP, BOB));
    BAD(MISSIVE_ERR_NOT_A_MEMBER, nothing, missive_group_leave(E, MALLORY, GROUP));
    BAD(MISSIVE_ERR_INVALID_ARGUMENT, nothing,
        missive_group_add(E, ALICE, DIRECT, (uint64_t[]){DAVE}, 1));
    BAD(MISSIVE_ERR_NULL_ARGUMENT, nothing, missive_group_members(E, ALICE, GROUP, NULL));
    BAD(MISSIVE_ERR_NOT_A_MEMBER, members_out,
        missive_group_members(E, MALLORY, GROUP, &members_out));

    /* Subscriptions. */
    BAD(MISSIVE_ERR_NULL_ARGUMENT, event_out, missive_subscription_next(NULL, 0, &event_out));
    BAD(MISSIVE_ERR_NULL_ARGUMENT, sub_out,
        missive_subscribe_callback(E, BOB, 0, NULL, NULL, &sub_out));
    BAD(MISSIVE_ERR_NULL_ARGUMENT, nothing, missive_subscribe(E, BOB, 0, NULL));

    /* Handles that are not what they claim: made up, of another type, freed twice, used after
     * free or after close. None of these touches freed memory (valgrind checks). */
    long not_a_handle = 42;
    BAD(MISSIVE_ERR_INVALID_HANDLE, sent,
        missive_send_direct((missive_engine *)&not_a_handle, ALICE, 0, BOB, cid, body, 7, NULL,
                            &sent));
    missive_subscription *sub = NULL;
    OK(missive_subscribe(E, DAVE, 0, &sub));
    BAD(MISSIVE_ERR_INVALID_HANDLE, u64_out, missive_engine_now((missive_engine *)sub, &u64_out));
    BAD(MISSIVE_ERR_INVALID_HANDLE, nothing,
        missive_message_list_free((missive_message_list *)sub));
    OK(missive_subscription_free(sub));
    BAD(MISSIVE_ERR_INVALID_HANDLE, nothing, missive_subscription_free(sub));
    BAD(MISSIVE_ERR_INVALID_HANDLE, event_out, missive_subscription_next(sub, 0, &event_out));
    missive_message_list *list = NULL;
    OK(missive_history(E, BOB, DIRECT, MISSIVE_HISTORY_LATEST, 0, 10, &list));
    OK(missive_message_list_free(list));
    BAD(MISSIVE_ERR_INVALID_HANDLE, nothing, missive_message_list_free(list));
    missive_member_list *members = NULL;
    OK(missive_group_members(E, BOB, GROUP, &members));
    BAD(MISSIVE_ERR_INVALID_HANDLE, nothing, missive_chat_list_free((missive_chat_list *)members));
    OK(missive_member_list_free(members));
    BAD(MISSIVE_ERR_INVALID_HANDLE, nothing, missive_member_list_free(members));
    missive_engine *other = open_engine("matrix-other", &config);
    OK(missive_engine_close(other));
    BAD(MISSIVE_ERR_CLOSED, sent,
        missive_send_direct(other, ALICE, 0, BOB, cid, body, 7, NULL, &sent));
    BAD(MISSIVE_ERR_CLOSED, sub_out, missive_subscribe(other, BOB, 0, &sub_out));
    OK(missive_engine_free(other));
    BAD(MISSIVE_ERR_INVALID_HANDLE, nothing, missive_engine_free(other));
    BAD(MISSIVE_ERR_INVALID_HANDLE, list_out,
        missive_history(other, BOB, DIRECT, MISSIVE_HISTORY_LATEST, 0, 10, &list_out));

    /* Odds and ends. */
    BAD(MISSIVE_ERR_NULL_ARGUMENT, nothing, missive_engine_set_time(NULL, 0));
    BAD(MISSIVE_ERR_NULL_ARGUMENT, nothing, missive_chat_direct(1, 2, NULL));
    BAD(MISSIVE_ERR_BUFFER_TOO_SMALL, u64_out, missive_last_error((char *)&nothing, 0, &u64_out));

    printf("bad-input matrix: %d cases\n", matrix_cases);
    CHECK(matrix_cases >= 30);
    OK(missive_engine_free(E));
}

/* ---- use after close, everywhere -------------------------------------------------------- */

static void test_closed(void) {
    missive_config config = test_config();
    missive_engine *e = open_engine("closed", &config);
    missive_chat_id chat, g;
    missive_chat_direct(ALICE, BOB, &chat);
    send_text(e, ALICE, BOB, 1, "x");
    OK(missive_group_create(e, ALICE, (uint64_t[]){BOB}, 1, &g));
    OK(missive_engine_close(e));
    uint8_t cid[16] = {1};
    missive_sent sent;
    missive_message_list *list;
    missive_chat_list *chats;
    missive_member_list *members;
    missive_subscription *sub;
    missive_receipt_counts counts;
    uint64_t n;
    EXPECT(MISSIVE_ERR_CLOSED, missive_send(e, ALICE, 0, chat, cid, NULL, 0, NULL, &sent));
    EXPECT(MISSIVE_ERR_CLOSED, missive_history(e, BOB, chat, MISSIVE_HISTORY_LATEST, 0, 5, &list));
    EXPECT(MISSIVE_ERR_CLOSED, missive_message_get(e, BOB, chat, 1, &list));
    EXPECT(MISSIVE_ERR_CLOSED, missive_chats(e, BOB, &chats));
    EXPECT(MISSIVE_ERR_CLOSED, missive_unread(e, BOB, chat, &n));
    EXPECT(MISSIVE_ERR_CLOSED, missive_mark_delivered(e, BOB, 0, chat, 1, NULL));
    EXPECT(MISSIVE_ERR_CLOSED, missive_mark_read(e, BOB, 0, chat, 1, NULL));
    EXPECT(MISSIVE_ERR_CLOSED, missive_delivered_up_to(e, BOB, 0, chat, &n));
    EXPECT(MISSIVE_ERR_CLOSED, missive_read_up_to(e, BOB, chat, &n));
    EXPECT(MISSIVE_ERR_CLOSED, missive_message_status(e, ALICE, chat, 1, &counts, NULL));
    EXPECT(MISSIVE_ERR_CLOSED, missive_delete(e, ALICE, chat, 1));
    EXPECT(MISSIVE_ERR_CLOSED, missive_set_chat_ttl(e, ALICE, chat, 1));
    EXPECT(MISSIVE_ERR_CLOSED, missive_typing(e, ALICE, 0, chat, true));
    EXPECT(MISSIVE_ERR_CLOSED, missive_group_create(e, ALICE, NULL, 0, &g));
    EXPECT(MISSIVE_ERR_CLOSED, missive_group_add(e, ALICE, g, (uint64_t[]){CAROL}, 1));
    EXPECT(MISSIVE_ERR_CLOSED, missive_group_remove(e, ALICE, g, BOB));
    EXPECT(MISSIVE_ERR_CLOSED, missive_group_leave(e, BOB, g));
    EXPECT(MISSIVE_ERR_CLOSED, missive_group_promote(e, ALICE, g, BOB));
    EXPECT(MISSIVE_ERR_CLOSED, missive_group_demote(e, ALICE, g, ALICE));
    EXPECT(MISSIVE_ERR_CLOSED, missive_group_members(e, ALICE, g, &members));
    EXPECT(MISSIVE_ERR_CLOSED, missive_subscribe(e, BOB, 0, &sub));
    EXPECT(MISSIVE_ERR_CLOSED, missive_engine_checkpoint(e));
    OK(missive_engine_free(e));
    /* After free, every call is refused by handle. */
    EXPECT(MISSIVE_ERR_INVALID_HANDLE, missive_engine_close(e));
    EXPECT(MISSIVE_ERR_INVALID_HANDLE, missive_engine_checkpoint(e));
    EXPECT(MISSIVE_ERR_INVALID_HANDLE, missive_unread(e, BOB, chat, &n));
    EXPECT(MISSIVE_ERR_INVALID_HANDLE, missive_presence_get(e, BOB, &(missive_presence){0}));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_engine_close(NULL));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_engine_free(NULL));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_subscription_free(NULL));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_message_list_free(NULL));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_chat_list_free(NULL));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_member_list_free(NULL));
    EXPECT(MISSIVE_ERR_NULL_ARGUMENT, missive_recipient_list_free(NULL));

    /* A subscription outlives its engine's handle and then reports the close. */
    e = open_engine("closed2", &config);
    OK(missive_subscribe(e, BOB, 0, &sub));
    OK(missive_engine_free(e));
    missive_event ev;
    EXPECT(MISSIVE_ERR_CLOSED, next(sub, 100, &ev));
    OK(missive_subscription_free(sub));
}

int main(int argc, char **argv) {
    if (argc > 1) {
        snprintf(root, sizeof root, "%s", argv[1]);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(root, sizeof root, "%s/missive-test-ffi-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (mkdtemp(root) == NULL) {
            perror("mkdtemp");
            return 2;
        }
    }
    printf("test_ffi: missive %s in %s\n", missive_version(), root);

    test_misc();
    test_lifecycle();
    missive_config config = test_config();
    missive_engine *e = open_engine("main", &config);
    test_messaging(e);
    missive_chat_id g = test_groups(e);
    test_poll(e, g);
    OK(missive_engine_free(e));
    test_callback();
    test_matrix();
    test_closed();

    if (argc <= 1) remove_tree(root);
    printf("test_ffi: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}

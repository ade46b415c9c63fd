/*
 * chat.c: Missive from C. Alice and Bob chat 1:1, Bob's phone receives by polling and sends
 * receipts, Alice's phone receives them through a callback, then a group with Carol.
 *
 * Build against an installed Missive (ffi/install.sh):
 *   cc chat.c -o chat $(pkg-config --cflags --libs missive)
 *   ./chat [DIR]        DIR: where the engine keeps its files (default: a new temporary folder)
 *
 * Every call returns a missive_result; `must` stops the program with the thread's last error
 * message when one fails.
 */
#define _XOPEN_SOURCE 700

#include <ftw.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "missive.h"

enum { ALICE = 1, BOB = 2, CAROL = 3, PHONE = 0 };

static void must(missive_result result, const char *what) {
    if (result != MISSIVE_OK) {
        fprintf(stderr, "%s failed: %s (%s)\n", what, missive_result_name(result),
                missive_last_error_message());
        exit(1);
    }
}

static const char *name(uint64_t user) {
    switch (user) {
    case ALICE: return "Alice";
    case BOB: return "Bob";
    case CAROL: return "Carol";
    default: return "?";
    }
}

/* A client message id: any 16 bytes unique per message of a sender (a UUID, a counter...). */
static const uint8_t *msg_id(uint64_t sender, unsigned n) {
    static uint8_t id[16];
    memset(id, 0, sizeof id);
    memcpy(id, &sender, sizeof sender);
    memcpy(id + 8, &n, sizeof n);
    return id;
}

static missive_sent send_text(missive_engine *engine, uint64_t from, missive_chat_id chat,
                              unsigned n, const char *text) {
    missive_sent sent;
    must(missive_send(engine, from, PHONE, chat, msg_id(from, n), (const uint8_t *)text,
                      strlen(text), NULL, &sent),
         "missive_send");
    printf("%s sent \"%s\" (seq %llu)\n", name(from), text, (unsigned long long)sent.seq);
    return sent;
}

/* Alice's phone: events arrive on a thread Missive runs for the subscription. */
static atomic_int alice_receipts;

static void alice_phone(void *user_data, const missive_event *event) {
    (void)user_data;
    switch (event->kind) {
    case MISSIVE_EVENT_RECEIPT:
        printf("  [Alice's phone] %s %s up to seq %llu\n", name(event->user),
               event->receipt_kind == MISSIVE_RECEIPT_READ ? "read" : "received",
               (unsigned long long)event->seq);
        atomic_fetch_add(&alice_receipts, 1);
        break;
    case MISSIVE_EVENT_MESSAGE:
        printf("  [Alice's phone] %s: %.*s\n", name(event->message.sender),
               (int)event->message.body_len, (const char *)event->message.body);
        break;
    case MISSIVE_EVENT_CLOSED:
        printf("  [Alice's phone] stream ended: %s\n", missive_result_name(event->code));
        break;
    default:
        break;
    }
}

static void wait_for_receipts(int want) {
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 500 && atomic_load(&alice_receipts) < want; i++) nanosleep(&tick, NULL);
    if (atomic_load(&alice_receipts) < want) {
        fprintf(stderr, "Alice's phone got %d receipts, expected %d\n",
                atomic_load(&alice_receipts), want);
        exit(1);
    }
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int main(int argc, char **argv) {
    char dir[512] = "/tmp/missive-chat-XXXXXX";
    if (argc > 1) {
        snprintf(dir, sizeof dir, "%s", argv[1]);
    } else if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    printf("Missive %s, storage in %s\n", missive_version(), dir);

    /* Open with the defaults, except a small group cap. */
    missive_config config;
    must(missive_config_default(&config), "missive_config_default");
    config.group_members_max = 16;
    missive_engine *engine;
    must(missive_engine_open(dir, &config, &engine), "missive_engine_open");

    /* Phones: Bob polls, Alice gets a callback. */
    missive_subscription *bob_phone, *alice_sub;
    must(missive_subscribe(engine, BOB, PHONE, &bob_phone), "missive_subscribe");
    must(missive_subscribe_callback(engine, ALICE, PHONE, alice_phone, NULL, &alice_sub),
         "missive_subscribe_callback");

    /* 1:1: the chat id comes from the two users; no setup. */
    missive_chat_id direct;
    must(missive_chat_direct(ALICE, BOB, &direct), "missive_chat_direct");
    missive_sent hi = send_text(engine, ALICE, direct, 1, "Hi Bob!");
    missive_sent again;
    must(missive_send(engine, ALICE, PHONE, direct, msg_id(ALICE, 1), (const uint8_t *)"Hi Bob!",
                      7, NULL, &again),
         "retry");
    printf("a retry of the same send stored nothing: duplicate=%d, seq %llu\n", again.duplicate,
           (unsigned long long)again.seq);

    /* Bob's phone polls; the event's bytes are valid until its next poll. */
    missive_event event;
    for (;;) {
        missive_result r = missive_subscription_next(bob_phone, 2000, &event);
        must(r, "missive_subscription_next");
        if (event.kind == MISSIVE_EVENT_MESSAGE) break;
    }
    printf("  [Bob's phone] %s: %.*s\n", name(event.message.sender), (int)event.message.body_len,
           (const char *)event.message.body);
    uint64_t unread;
    must(missive_unread(engine, BOB, direct, &unread), "missive_unread");
    printf("Bob has %llu unread\n", (unsigned long long)unread);

    /* Receipts: delivered, then read. Alice's phone hears both. */
    must(missive_mark_delivered(engine, BOB, PHONE, direct, event.message.seq, NULL),
         "missive_mark_delivered");
    must(missive_mark_read(engine, BOB, PHONE, direct, event.message.seq, NULL),
         "missive_mark_read");
    wait_for_receipts(2);
    missive_receipt_counts counts;
    must(missive_message_status(engine, ALICE, direct, hi.seq, &counts, NULL),
         "missive_message_status");
    printf("\"Hi Bob!\": delivered to %u of %u, read by %u\n", counts.delivered,
           counts.recipients, counts.read);
    send_text(engine, BOB, direct, 1, "Hi Alice :)");

    /* A group: Alice creates it with Bob and Carol. */
    uint64_t members[] = {BOB, CAROL};
    missive_chat_id group;
    must(missive_group_create(engine, ALICE, members, 2, &group), "missive_group_create");
    printf("Alice created a group with Bob and Carol\n");
    missive_sent dinner = send_text(engine, ALICE, group, 2, "Dinner at 8?");
    send_text(engine, CAROL, group, 1, "Yes!");
    must(missive_mark_read(engine, BOB, PHONE, group, dinner.seq + 1, NULL), "missive_mark_read");
    must(missive_message_status(engine, ALICE, group, dinner.seq, &counts, NULL),
         "missive_message_status");
    printf("\"Dinner at 8?\": delivered to %u of %u, read by %u\n", counts.delivered,
           counts.recipients, counts.read);
    must(missive_group_promote(engine, ALICE, group, BOB), "missive_group_promote");
    must(missive_group_leave(engine, CAROL, group), "missive_group_leave");

    missive_member_list *who;
    must(missive_group_members(engine, BOB, group, &who), "missive_group_members");
    printf("members now:");
    for (size_t i = 0; i < who->len; i++)
        printf(" %s%s", name(who->members[i].user),
               who->members[i].role == MISSIVE_ROLE_ADMIN ? " (admin)" : "");
    printf("\n");
    must(missive_member_list_free(who), "missive_member_list_free");

    /* The group's history, as Bob reads it: system notices and messages, oldest first. */
    missive_message_list *history;
    must(missive_history(engine, BOB, group, MISSIVE_HISTORY_LATEST, 0, 50, &history),
         "missive_history");
    printf("group history (%zu):\n", history->len);
    for (size_t i = 0; i < history->len; i++) {
        const missive_message *m = &history->messages[i];
        printf("  %llu %s%s: %.*s\n", (unsigned long long)m->seq,
               m->kind == MISSIVE_CONTENT_SYSTEM ? "[system] " : "", name(m->sender),
               (int)m->body_len, (const char *)m->body);
    }
    must(missive_message_list_free(history), "missive_message_list_free");

    /* Bob's chat list. */
    missive_chat_list *chats;
    must(missive_chats(engine, BOB, &chats), "missive_chats");
    printf("Bob has %zu chats\n", chats->len);
    must(missive_chat_list_free(chats), "missive_chat_list_free");

    /* Retention and counters. */
    uint64_t now;
    must(missive_engine_now(engine, &now), "missive_engine_now");
    missive_expire_report report;
    must(missive_expire(engine, now, &report), "missive_expire");
    missive_stats stats;
    must(missive_engine_stats(engine, &stats), "missive_engine_stats");
    printf("stats: %llu sends (%llu duplicate), %llu receipts, %llu group changes, "
           "%llu events published; expire removed %llu segments\n",
           (unsigned long long)stats.sends, (unsigned long long)stats.duplicate_sends,
           (unsigned long long)stats.receipts, (unsigned long long)stats.group_changes,
           (unsigned long long)stats.events_published,
           (unsigned long long)report.segments_removed);

    /* Close: subscriptions end (Alice's callback gets MISSIVE_EVENT_CLOSED); then free all. */
    must(missive_engine_close(engine), "missive_engine_close");
    must(missive_subscription_free(alice_sub), "missive_subscription_free");
    must(missive_subscription_free(bob_phone), "missive_subscription_free");
    must(missive_engine_free(engine), "missive_engine_free");
    if (argc <= 1) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("done\n");
    return 0;
}

/*
 * What 100 random reads in a file map cost on this machine, without Missive: the floor under
 * an inbox fetch of a device offline a long time (each message in a page of its own).
 *
 *   cc -O2 -o /tmp/random_reads benches/probes/random_reads.c
 *   /tmp/random_reads DIR 4k|2m evict|pread [ROUNDS]
 *
 * Writes a 3 GiB file in DIR (1 MiB writes leave 4 KiB page-cache folios; 2 MiB writes,
 * aligned, leave 2 MiB folios that a read-only map then maps by 2 MiB pages), maps it, touches
 * every page, then times rounds of 100 reads of two cache lines each at random places (all
 * prefetched first, as `Log::prefetch` does). Before each timed round, either a 64 MiB random
 * walk (`evict`: what `index_compare --profile pending-cold` does) or, every 20 rounds, 2,000
 * random 4 KiB preads of a second 4 GiB file (`pread`: roughly what SQLite's 20 queries do
 * between 20 inbox fetches in `index_compare`). Prints p50, p90, p99 and how many rounds took
 * over 120 us. The files stay in DIR for the next run (delete them after).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Creates `path` of `len` bytes written `chunk` bytes at a time, unless it is there already. */
static int fill(const char *path, size_t len, size_t chunk) {
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) return -1;
    if (lseek(fd, 0, SEEK_END) < (off_t)len) {
        char *buf = malloc(chunk);
        memset(buf, 5, chunk);
        for (size_t at = 0; at < len; at += chunk)
            if (pwrite(fd, buf, chunk, (off_t)at) != (ssize_t)chunk) return -1;
        fsync(fd);
        free(buf);
    }
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s DIR 4k|2m evict|pread [ROUNDS]\n", argv[0]);
        return 2;
    }
    const size_t len = 3ull << 30, other_len = 4ull << 30, walk = 64ull << 20;
    int huge = strcmp(argv[2], "2m") == 0, preads = strcmp(argv[3], "pread") == 0;
    int rounds = argc > 4 ? atoi(argv[4]) : 20000;
    char path[4096], other[4096];
    snprintf(path, sizeof path, "%s/random_reads-%s.dat", argv[1], huge ? "2m" : "4k");
    snprintf(other, sizeof other, "%s/random_reads-other.dat", argv[1]);
    int fd = fill(path, len, huge ? 2u << 20 : 1u << 20);
    int other_fd = preads ? fill(other, other_len, 1u << 20) : -1;
    if (fd < 0 || (preads && other_fd < 0)) {
        perror("fill");
        return 1;
    }
    const char *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    volatile char sink = 0;
    for (size_t at = 0; at < len; at += 4096) sink += map[at];
    char *buffer = malloc(walk), page[4096];
    memset(buffer, 1, walk);
    uint64_t *took = malloc(sizeof *took * (size_t)rounds), state = 1, other_state = 7;
    for (int r = 0; r < rounds; r++) {
        if (!preads) {
            for (size_t k = 0; k < walk / 4096; k++) sink += buffer[splitmix(&state) % walk];
        } else if (r % 20 == 0) {
            for (int k = 0; k < 2000; k++) {
                off_t at = (off_t)(splitmix(&other_state) % (other_len / 4096)) * 4096;
                if (pread(other_fd, page, sizeof page, at) > 0) sink += page[7];
            }
        }
        uint64_t start = now_ns(), first = state;
        unsigned sum = 0;
        for (int k = 0; k < 100; k++) {
            size_t at = splitmix(&state) % (len - 128);
            __builtin_prefetch(map + at);
            __builtin_prefetch(map + at + 64);
        }
        state = first;
        for (int k = 0; k < 100; k++) {
            size_t at = splitmix(&state) % (len - 128);
            sum += (unsigned)map[at] + (unsigned)map[at + 100];
        }
        sink += (char)sum;
        took[r] = now_ns() - start;
    }
    int slow = 0;
    for (int r = 0; r < rounds; r++) slow += took[r] > 120000;
    qsort(took, (size_t)rounds, sizeof *took, by_value);
    printf("%s pages, %s: 100 reads p50 %.1f us, p90 %.1f us, p99 %.1f us; over 120 us: %d of %d\n",
           huge ? "2 MiB" : "4 KiB", preads ? "2,000 preads every 20 rounds" : "64 MiB walk before each",
           took[rounds / 2] / 1e3, took[rounds * 9 / 10] / 1e3, took[rounds * 99 / 100] / 1e3, slow,
           rounds);
    return 0;
}

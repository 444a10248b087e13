/* The kernel floor of mapping a file: nothing but FS_IOC_FIEMAP in batches over the whole
 * file, counting the extents (bench/run compiles it with cc into a temp folder).
 *
 *   fiemap_floor FILE [--iterations N] [--batch N] [--nosync]
 *   fiemap_floor FILE --serve [--batch N] [--nosync]
 *
 * Each iteration does what sparsekit's map() must do at the least: open the file, ask FIEMAP
 * for up to BATCH extents (default 2048, the batch of crates/extents) over [0, size) with
 * FIEMAP_FLAG_SYNC on the first call only (as map() does; --nosync: never), again from the
 * end of the last extent until FIEMAP_EXTENT_LAST, and close it. Nothing is stored per
 * extent. Prints one JSON line shaped like bench_map's: the extent count, the process's
 * user/system CPU seconds (getrusage), and the wall and CPU seconds of each iteration.
 * With --serve it maps once per line read from stdin and answers each with one line
 * {"extents":N,"time":S,"cpu":S} (wall and CPU seconds of that map), until end of input
 * (`bench/js.cjs map --floor`, a diagnostic: alternating call by call, each side runs with
 * caches the other just used, which slows this loop by up to 10 ms; bench/run alternates
 * whole series instead).
 *
 * Structures and constants: linux/fiemap.h and linux/fs.h (FS_IOC_FIEMAP).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int usage(void) {
    fprintf(stderr, "usage: fiemap_floor FILE [--iterations N] [--batch N] [--nosync]\n");
    return 2;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* User + system CPU seconds of this process so far (getrusage). */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Map the whole file once; returns the extent count, or -1 with errno set. */
static long map_once(const char *path, struct fiemap *fm, unsigned batch, int sync,
                     unsigned long long *bytes) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    unsigned long long size = (unsigned long long)st.st_size;
    long count = 0;
    unsigned long long pos = 0;
    unsigned flags = sync ? FIEMAP_FLAG_SYNC : 0;
    for (;;) {
        fm->fm_start = pos;
        fm->fm_length = size > pos ? size - pos : 1; /* fm_length 0 is EINVAL */
        fm->fm_flags = flags;
        fm->fm_extent_count = batch;
        fm->fm_mapped_extents = 0;
        if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        flags = 0;
        unsigned n = fm->fm_mapped_extents;
        if (n == 0) break;
        count += n;
        for (unsigned i = 0; i < n; i++) *bytes += fm->fm_extents[i].fe_length;
        const struct fiemap_extent *last = &fm->fm_extents[n - 1];
        unsigned long long next = last->fe_logical + last->fe_length;
        if ((last->fe_flags & FIEMAP_EXTENT_LAST) || next <= pos || next >= size) break;
        pos = next;
    }
    close(fd);
    return count;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    long iterations = 1, batch = 2048;
    int sync = 1, serve = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iterations") && i + 1 < argc) iterations = atol(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atol(argv[++i]);
        else if (!strcmp(argv[i], "--nosync")) sync = 0;
        else if (!strcmp(argv[i], "--serve")) serve = 1;
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else return usage();
    }
    if (!path || iterations < 1 || batch < 1 || batch > 1 << 20) return usage();

    struct fiemap *fm = calloc(1, sizeof *fm + (size_t)batch * sizeof(struct fiemap_extent));
    double *times = calloc((size_t)iterations, sizeof *times);
    double *cpus = calloc((size_t)iterations, sizeof *cpus);
    if (!fm || !times || !cpus) return 1;
    long count = 0;
    unsigned long long bytes = 0;
    if (serve) {
        char line[64];
        setvbuf(stdout, NULL, _IOLBF, 0);
        while (fgets(line, sizeof line, stdin)) {
            double c = cpu_seconds();
            double t = now();
            count = map_once(path, fm, (unsigned)batch, sync, &bytes);
            t = now() - t;
            c = cpu_seconds() - c;
            if (count < 0) {
                fprintf(stderr, "fiemap_floor: %s: %s\n", path, strerror(errno));
                return 1;
            }
            printf("{\"extents\":%ld,\"time\":%.6f,\"cpu\":%.6f}\n", count, t, c);
        }
        return 0;
    }
    for (long it = 0; it < iterations; it++) {
        double c = cpu_seconds();
        double t = now();
        count = map_once(path, fm, (unsigned)batch, sync, &bytes);
        times[it] = now() - t;
        cpus[it] = cpu_seconds() - c;
        if (count < 0) {
            fprintf(stderr, "fiemap_floor: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"extents\":%ld,\"batch\":%ld,\"sync\":%s,\"bytes\":%llu,\"user\":%.6f,\"sys\":%.6f,\"times\":[",
           count, batch, sync ? "true" : "false", bytes / (unsigned long long)iterations,
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    for (long it = 0; it < iterations; it++) printf("%s%.6f", it ? "," : "", times[it]);
    printf("],\"cpu\":[");
    for (long it = 0; it < iterations; it++) printf("%s%.6f", it ? "," : "", cpus[it]);
    printf("]}\n");
    free(cpus);
    free(times);
    free(fm);
    return 0;
}

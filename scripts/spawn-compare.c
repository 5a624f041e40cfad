/* Times whole processes, several variants interleaved: what a program costs to start, run and
 * exit with one environment against another (a preloaded library against none, one build of
 * it against another). See scripts/spawn-compare for the usage. */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define MAX_VARIANTS 16
#define MAX_VARS 32

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 6 || (argc - 4) % 2 != 0) {
        fprintf(stderr, "usage: %s COUNT VARIANTS ENV PROGRAM [ENV PROGRAM]... ARGUMENT\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[1]), k = atoi(argv[2]);
    if (n < 1 || k < 1 || k > MAX_VARIANTS || argc != 4 + 2 * k) {
        fprintf(stderr, "%s: COUNT >= 1, 1 <= VARIANTS <= %d, one ENV and PROGRAM each\n", argv[0], MAX_VARIANTS);
        return 2;
    }
    char **envs[MAX_VARIANTS];
    char *programs[MAX_VARIANTS];
    char *arguments[MAX_VARIANTS];
    double *times[MAX_VARIANTS];
    for (int v = 0; v < k; v++) {
        char *list = strdup(argv[3 + 2 * v]);
        envs[v] = calloc(MAX_VARS + 1, sizeof(char *));
        int c = 0;
        arguments[v] = argv[3 + 2 * k];
        for (char *s = strtok(list, ";"); s && c < MAX_VARS; s = strtok(NULL, ";")) {
            if (strncmp(s, "ARGUMENT=", 9) == 0)
                arguments[v] = s + 9; /* this variant's own argument, not a variable */
            else
                envs[v][c++] = s;
        }
        programs[v] = argv[4 + 2 * v];
        times[v] = malloc(n * sizeof(double));
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) {
            int v = (i + j) % k; /* each variant in every position in turn */
            char *args[] = {programs[v], arguments[v], NULL};
            posix_spawn_file_actions_t actions;
            posix_spawn_file_actions_init(&actions);
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", 1, 0);
            pid_t pid;
            int status = 0;
            double start = now_us();
            if (posix_spawn(&pid, programs[v], &actions, NULL, args, envs[v]) != 0 ||
                waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                failed++;
            times[v][i] = now_us() - start;
            posix_spawn_file_actions_destroy(&actions);
        }
    }
    for (int v = 0; v < k; v++) {
        qsort(times[v], n, sizeof(double), by_value);
        printf("median %8.1f us  p25 %8.1f  p75 %8.1f  %s %s\n", times[v][n / 2], times[v][n / 4],
               times[v][3 * n / 4], argv[3 + 2 * v], programs[v]);
    }
    if (failed) {
        fprintf(stderr, "%d runs failed or exited non-zero\n", failed);
        return 1;
    }
    return 0;
}

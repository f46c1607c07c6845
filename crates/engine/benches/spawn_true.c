/* In-guest baseline for the guest_exec bench: posix_spawn + waitpid of
 * /bin/true, then (runs alternating) sync() or syncfs() of the root file
 * system, each timed with CLOCK_MONOTONIC. Built static on the host
 * (cc -static -O2) and copied into the guest. Prints one line per run:
 * "<spawn ms> <wait ms> <sync ms or -> <syncfs ms or ->".
 * With a second argument "vfork": vfork + execve + waitpid instead of
 * posix_spawn (the least a spawn costs: no signal resets, no file
 * actions), and no sync: "<spawn ms> <wait ms> - -". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    int bare = argc > 2 && strcmp(argv[2], "vfork") == 0;
    char *args[] = {"/bin/true", NULL};
    int root = open("/", O_RDONLY | O_DIRECTORY);
    if (root < 0)
        return 1;
    for (int i = 0; i < n; i++) {
        pid_t pid;
        int status;
        double t0 = now_ms();
        if (bare) {
            pid = vfork();
            if (pid == 0) {
                execve(args[0], args, environ);
                _exit(127);
            }
            if (pid < 0)
                return 1;
        } else if (posix_spawn(&pid, args[0], NULL, NULL, args, environ) != 0)
            return 1;
        double t1 = now_ms();
        if (waitpid(pid, &status, 0) != pid)
            return 1;
        double t2 = now_ms();
        if (bare) {
            printf("%.4f %.4f - -\n", t1 - t0, t2 - t1);
            continue;
        }
        /* Alternate runs: sync() after the spawn, or syncfs() of /. */
        if (i % 2 == 0)
            sync();
        else if (syncfs(root) != 0)
            return 1;
        double t3 = now_ms();
        if (i % 2 == 0)
            printf("%.4f %.4f %.4f -\n", t1 - t0, t2 - t1, t3 - t2);
        else
            printf("%.4f %.4f - %.4f\n", t1 - t0, t2 - t1, t3 - t2);
    }
    return 0;
}

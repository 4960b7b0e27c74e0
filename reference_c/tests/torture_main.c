// qsbr-torture: the torture as a program.  Prints progress and the counters; exit status 0
// when no error was seen and objects were freed, 1 on errors, 2 if nothing was freed.
//   qsbr-torture [-r readers] [-w writers] [-c churners] [-s seconds] [-u max_updates]
//                [-b 0|1 batching] [-S seed] [-t stall_ms] [-x stop at the first error] [-q]
// -t 1 decides a stall by events alone (updates without a free while every thread passed
// quiescent points), not by 2 s of wall time: what a run bounded by -u (not -s) needs.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "qsbr_torture.h"

static void
print_stats(const char *label, const qsbr_torture_stats *s)
{
    printf("%s %.1fs reads=%llu updates=%llu frees=%llu churn=%llu max_pending=%llu "
           "gp_latency_max=%llu gp_latency_mean=%.1f errors=%llu\n", label, s->elapsed,
           (unsigned long long)s->reads, (unsigned long long)s->updates,
           (unsigned long long)s->frees, (unsigned long long)s->churn_cycles,
           (unsigned long long)s->max_pending, (unsigned long long)s->gp_latency_max,
           s->frees ? (double)s->gp_latency_sum / (double)s->frees : 0.0,
           (unsigned long long)qsbr_torture_errors(s));
    fflush(stdout);
}

static void
progress(const qsbr_torture_stats *s, void *arg)
{
    (void)arg;
    print_stats("progress", s);
}

int
main(int argc, char **argv)
{
    qsbr_torture_config c;
    qsbr_torture_default_config(&c);
    c.progress = progress;
    c.progress_ms = 1000;
    int opt;
    while ((opt = getopt(argc, argv, "r:w:c:s:u:b:S:t:xq")) != -1) {
        switch (opt) {
            case 'r': c.readers = atoi(optarg); break;
            case 'w': c.writers = atoi(optarg); break;
            case 'c': c.churners = atoi(optarg); break;
            case 's': c.seconds = atof(optarg); break;
            case 'u': c.max_updates = strtoull(optarg, NULL, 10); break;
            case 'b': c.batching = atoi(optarg); break;
            case 'S': c.seed = (unsigned)strtoul(optarg, NULL, 10); break;
            case 't': c.stall_ms = atoi(optarg); break;
            case 'x': c.stop_on_error = 1; break;
            case 'q': c.progress = NULL; break;
            default:
                fprintf(stderr, "usage: %s [-r R] [-w W] [-c C] [-s SECONDS] [-u UPDATES] "
                        "[-b 0|1] [-S SEED] [-t STALL_MS] [-x] [-q]\n", argv[0]);
                return 64;
        }
    }
    qsbr_torture_stats s;
    int status = qsbr_torture_run(&c, &s);
    if (status < 0) {
        fprintf(stderr, "qsbr-torture: bad configuration\n");
        return 64;
    }
    print_stats("final", &s);
    printf("errors: poisoned=%llu bad_magic=%llu too_old=%llu stall=%llu; array size %lld\n",
           (unsigned long long)s.errors_poisoned, (unsigned long long)s.errors_bad_magic,
           (unsigned long long)s.errors_too_old, (unsigned long long)s.errors_stall,
           (long long)s.array_size);
    printf("%s\n", status == 0 ? "torture: PASS" : status == 1 ? "torture: FAIL (errors)"
                                                               : "torture: FAIL (nothing freed)");
    return status;
}

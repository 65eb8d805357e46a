/* test_pool.c -- unit tests for csrc/runtime/np_pool.{h,c}.
 *
 * Workers are bare pthreads started by a spawn hook (env_spawn) that records
 * every thread so a test can pthread_join them after np_pool_join, and give
 * each worker a record (its worker_arg) that counts its idle hooks.
 *
 * Four tests (spawn failure racing close or a worker's exit, fork
 * orphaning a finished task, fork from the idle hook) reproduce runtime bugs
 * found while writing this file; they stay as regression tests.
 */
#include "test.h"

#include <pthread.h>

#include "np_pool.h"

/* ---- a gate: tasks block on it until the test opens it ------------------- */

typedef struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    int open;
} gate;

#define GATE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0}

static void
gate_wait(gate *g)
{
    pthread_mutex_lock(&g->m);
    while (!g->open) {
        pthread_cond_wait(&g->c, &g->m);
    }
    pthread_mutex_unlock(&g->m);
}

static void
gate_open(gate *g)
{
    pthread_mutex_lock(&g->m);
    g->open = 1;
    pthread_cond_broadcast(&g->c);
    pthread_mutex_unlock(&g->m);
}

/* ---- the test environment: hooks, worker records --------------------------- */

enum { MAX_REC = 64 };

typedef struct pool_env pool_env;

typedef struct worker_rec {
    pool_env *env;
    np_pool *pool;
    int id;
    _Atomic pid_t tid;
    _Atomic long idle_begin, idle_end;
    _Atomic long tasks_run;
    _Atomic int returned;
    _Atomic long begin_at_return, end_at_return;
} worker_rec;

struct pool_env {
    np_pool *pool;
    size_t max_workers;
    pthread_mutex_t lock;              /* guards workers/threads/nworkers */
    worker_rec *workers[MAX_REC];
    pthread_t threads[MAX_REC];
    int joined[MAX_REC];               /* pthread_join done (main only) */
    int nworkers;
    _Atomic int spawn_calls;
    _Atomic int fail_code;             /* < 0: spawn fails with it */
    /* Called at the start of every spawn (call = 0, 1, ...); a negative
     * return makes the spawn fail with that value. */
    int (*before_spawn)(pool_env *e, int call);
    /* Called once the thread is created; a negative return makes the spawn
     * report that failure for a thread that does run (as Python's
     * Thread.start() can, interrupted while waiting for its thread). */
    int (*after_start)(pool_env *e, worker_rec *w);
    gate *entry_gate;                  /* if set: workers wait on it first */
    void (*on_idle_begin)(worker_rec *w);
    int stats_in_hooks;                /* prove hooks run without the lock */
    _Atomic int running, max_running;
    _Atomic long completed, released;
    long *order;                       /* ids in run order, if non-NULL */
    _Atomic long order_len;
    void *user;
};

static np_pool_stats
stats(np_pool *p)
{
    np_pool_stats s;
    np_pool_get_stats(p, &s);
    return s;
}

static void *
worker_main(void *arg)
{
    worker_rec *w = arg;
    atomic_store(&w->tid, test_gettid());
    if (w->env->entry_gate != NULL) {
        gate_wait(w->env->entry_gate);
    }
    np_pool_work(w->pool, w);
    atomic_store(&w->begin_at_return, atomic_load(&w->idle_begin));
    atomic_store(&w->end_at_return, atomic_load(&w->idle_end));
    atomic_store(&w->returned, 1);
    return NULL;
}

static int
env_spawn(np_pool *pool, void *ctx)
{
    pool_env *e = ctx;
    int call = atomic_fetch_add(&e->spawn_calls, 1);
    if (e->before_spawn != NULL) {
        int r = e->before_spawn(e, call);
        if (r < 0) {
            return r;
        }
    }
    int fail = atomic_load(&e->fail_code);
    if (fail < 0) {
        return fail;
    }
    worker_rec *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return -1;
    }
    w->env = e;
    w->pool = pool;
    pthread_mutex_lock(&e->lock);
    if (e->nworkers >= MAX_REC) {
        pthread_mutex_unlock(&e->lock);
        free(w);
        return -1;
    }
    int idx = e->nworkers++;
    w->id = idx;
    e->workers[idx] = w;
    /* Create under the lock so threads[idx] is written before anyone reads
     * it (TSan-clean); the lock is never taken by a worker. */
    int r = pthread_create(&e->threads[idx], NULL, worker_main, w);
    if (r != 0) {
        e->workers[idx] = NULL;
        e->nworkers--;
        pthread_mutex_unlock(&e->lock);
        free(w);
        return -1;
    }
    pthread_mutex_unlock(&e->lock);
    if (e->after_start != NULL) {
        return e->after_start(e, w);
    }
    return 0;
}

static void
env_idle_begin(void *arg)
{
    worker_rec *w = arg;
    pool_env *e = w->env;
    /* not already idle */
    EXPECT_EQ(atomic_load(&w->idle_begin), atomic_load(&w->idle_end));
    atomic_fetch_add(&w->idle_begin, 1);
    if (e->stats_in_hooks) {
        (void)stats(w->pool);   /* deadlocks if the pool lock were held */
    }
    if (e->on_idle_begin != NULL) {
        e->on_idle_begin(w);
    }
}

static void
env_idle_end(void *arg)
{
    worker_rec *w = arg;
    pool_env *e = w->env;
    EXPECT_EQ(atomic_load(&w->idle_begin), atomic_load(&w->idle_end) + 1);
    atomic_fetch_add(&w->idle_end, 1);
    if (e->stats_in_hooks) {
        (void)stats(w->pool);
    }
}

static int
env_init(pool_env *e, size_t max_workers)
{
    memset(e, 0, sizeof *e);
    pthread_mutex_init(&e->lock, NULL);
    e->max_workers = max_workers;
    np_pool_hooks hooks = {
        .spawn = env_spawn,
        .idle_begin = env_idle_begin,
        .idle_end = env_idle_end,
        .ctx = e,
    };
    e->pool = np_pool_new(max_workers, &hooks);
    return e->pool != NULL;
}

static int
env_nworkers(pool_env *e)
{
    pthread_mutex_lock(&e->lock);
    int n = e->nworkers;
    pthread_mutex_unlock(&e->lock);
    return n;
}

/* pthread_join the workers with index >= from and check that each one
 * returned from np_pool_work with balanced idle hooks. */
static void
env_join_threads(pool_env *e, int from)
{
    pthread_mutex_lock(&e->lock);
    int n = e->nworkers;
    pthread_mutex_unlock(&e->lock);
    for (int i = from; i < n; i++) {
        pthread_mutex_lock(&e->lock);
        pthread_t th = e->threads[i];
        worker_rec *w = e->workers[i];
        pthread_mutex_unlock(&e->lock);
        if (e->joined[i]) {
            continue;
        }
        pthread_join(th, NULL);
        e->joined[i] = 1;
        EXPECT_EQ(atomic_load(&w->returned), 1);
        EXPECT_EQ(atomic_load(&w->begin_at_return),
                  atomic_load(&w->end_at_return));
    }
}

/* Close (draining), join, check and free everything. */
static void
env_teardown(pool_env *e)
{
    if (e->pool == NULL) {
        return;
    }
    (void)np_pool_close(e->pool, 0);
    np_pool_join(e->pool);
    np_pool_stats s = stats(e->pool);
    EXPECT_EQ(s.threads, 0);
    EXPECT_EQ(s.idle, 0);
    EXPECT_EQ(s.queued, 0);
    EXPECT_EQ(s.closed, 1);
    env_join_threads(e, 0);
    (void)np_pool_take_orphans(e->pool);
    np_pool_free(e->pool);
    e->pool = NULL;
    for (int i = 0; i < e->nworkers; i++) {
        free(e->workers[i]);
    }
    free(e->order);
    pthread_mutex_destroy(&e->lock);
}

/* ---- tasks ---------------------------------------------------------------- */

typedef struct ttask {
    np_task base;
    int id;
    pool_env *env;
    gate *gate;                     /* run blocks on it if set */
    void (*body)(struct ttask *t, worker_rec *w);
    _Atomic int runs, releases, done;
    _Atomic(worker_rec *) ran_on;
    _Atomic int release_bad;
    void *user;
} ttask;

static void
ttask_run(np_task *task, void *warg)
{
    ttask *t = (ttask *)task;
    worker_rec *w = warg;
    pool_env *e = t->env;
    /* a worker never runs a task between idle_begin and idle_end */
    EXPECT_EQ(atomic_load(&w->idle_begin), atomic_load(&w->idle_end));
    atomic_fetch_add(&t->runs, 1);
    atomic_store(&t->ran_on, w);
    atomic_fetch_add(&w->tasks_run, 1);
    int now = atomic_fetch_add(&e->running, 1) + 1;
    int m = atomic_load(&e->max_running);
    while (now > m && !atomic_compare_exchange_weak(&e->max_running, &m, now)) {
    }
    if (e->order != NULL) {
        e->order[atomic_fetch_add(&e->order_len, 1)] = t->id;
    }
    if (t->gate != NULL) {
        gate_wait(t->gate);
    }
    if (t->body != NULL) {
        t->body(t, w);
    }
    atomic_fetch_sub(&e->running, 1);
    atomic_store(&t->done, 1);
    atomic_fetch_add(&e->completed, 1);
}

static void
ttask_release(np_task *task, void *warg)
{
    ttask *t = (ttask *)task;
    worker_rec *w = warg;
    pool_env *e = t->env;
    /* after run, once, on the worker that ran it, without the pool lock */
    if (atomic_load(&t->done) != 1 || atomic_load(&t->runs) != 1 ||
        atomic_load(&t->releases) != 0 || atomic_load(&t->ran_on) != w) {
        atomic_fetch_add(&t->release_bad, 1);
    }
    EXPECT_EQ(atomic_load(&t->done), 1);
    EXPECT_EQ(atomic_load(&t->runs), 1);
    EXPECT_EQ(atomic_load(&t->releases), 0);
    EXPECT_TRUE(atomic_load(&t->ran_on) == w);
    if (e->stats_in_hooks) {
        (void)stats(w->pool);
    }
    atomic_fetch_add(&t->releases, 1);
    atomic_fetch_add(&e->released, 1);
}

static void
ttask_init(ttask *t, pool_env *e, int id)
{
    memset(t, 0, sizeof *t);
    t->base.run = ttask_run;
    t->base.release = ttask_release;
    t->env = e;
    t->id = id;
}

static ttask *
ttasks_new(pool_env *e, int n)
{
    ttask *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        ttask_init(&t[i], e, i);
    }
    return t;
}

/* Collect a list linked by ->next into ids[]; returns its length. */
static int
list_ids(np_task *head, int *ids, int cap)
{
    int n = 0;
    for (np_task *t = head; t != NULL; t = t->next) {
        if (n < cap) {
            ids[n] = ((ttask *)t)->id;
        }
        n++;
        if (n > 100000) {
            break;   /* a cycle */
        }
    }
    return n;
}

static int
list_contains(np_task *head, np_task *x)
{
    int n = 0;
    for (np_task *t = head; t != NULL && n < 100000; t = t->next, n++) {
        if (t == x) {
            return 1;
        }
    }
    return 0;
}

/* In a forked child: report and leave without running atexit handlers. */
static void
child_exit(void)
{
    fflush(stdout);
    fflush(stderr);
    _exit(TEST_FAILED() ? 1 : 0);
}

#define check_child_status(status, what) \
    check_child_status_at(__FILE__, __LINE__, (status), (what))

static void
check_child_status_at(const char *file, int line, int status, const char *what)
{
    if (status == -1) {
        test_fail_msg(file, line, "%s: waitpid failed", what);
    }
    else if (WIFSIGNALED(status)) {
        test_fail_msg(file, line, "%s: child killed by signal %d (%s)", what,
                      WTERMSIG(status), strsignal(WTERMSIG(status)));
    }
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        test_fail_msg(file, line, "%s: child exited with status %d", what,
                      WEXITSTATUS(status));
    }
}

/* ---- basics ----------------------------------------------------------------- */

static int
spawn_never_called(np_pool *p, void *ctx)
{
    (void)p;
    (void)ctx;
    abort();
}

TEST(pool_new_rejects_bad_arguments)
{
    np_pool_hooks h = {.spawn = spawn_never_called};
    ASSERT_PTR_EQ(np_pool_new(0, &h), NULL);
    ASSERT_PTR_EQ(np_pool_new(4, NULL), NULL);
    np_pool_hooks nospawn = {0};
    ASSERT_PTR_EQ(np_pool_new(4, &nospawn), NULL);

    /* A fresh pool: nothing started, hooks copied (h may go away). */
    np_pool *p = np_pool_new(3, &h);
    ASSERT_PTR_NE(p, NULL);
    memset(&h, 0, sizeof h);
    np_pool_stats s = stats(p);
    ASSERT_EQ(s.threads, 0);
    ASSERT_EQ(s.idle, 0);
    ASSERT_EQ(s.queued, 0);
    ASSERT_UEQ(s.submitted, 0);
    ASSERT_UEQ(s.started, 0);
    ASSERT_EQ(s.closed, 0);
    ASSERT_PTR_EQ(np_pool_take_orphans(p), NULL);
    ASSERT_PTR_EQ(np_pool_close(p, 1), NULL);
    ASSERT_PTR_EQ(np_pool_close(p, 0), NULL);   /* more than once */
    ASSERT_EQ(stats(p).closed, 1);
    np_pool_join(p);                            /* no threads: returns */
    np_pool_free(p);
    np_pool_free(NULL);
}

TEST(pool_submit_runs_task)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 4));
    ttask t;
    ttask_init(&t, &e, 0);
    ASSERT_EQ(np_pool_submit(e.pool, &t.base), NP_OK);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&t.releases) == 1, 10));
    ASSERT_EQ(atomic_load(&t.runs), 1);
    ASSERT_EQ(atomic_load(&t.release_bad), 0);
    np_pool_stats s = stats(e.pool);
    ASSERT_EQ(s.threads, 1);
    ASSERT_UEQ(s.submitted, 1);
    ASSERT_UEQ(s.started, 1);
    ASSERT_EQ(s.queued, 0);
    ASSERT_EQ(atomic_load(&e.spawn_calls), 1);
    env_teardown(&e);
    ASSERT_EQ(atomic_load(&t.runs), 1);
    ASSERT_EQ(atomic_load(&t.releases), 1);
}

TEST(pool_task_without_release_hook)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    ttask t[50];
    for (int i = 0; i < 50; i++) {
        ttask_init(&t[i], &e, i);
        t[i].base.release = NULL;
        ASSERT_EQ(np_pool_submit(e.pool, &t[i].base), NP_OK);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.completed) == 50, 10));
    env_teardown(&e);
    for (int i = 0; i < 50; i++) {
        ASSERT_EQ(atomic_load(&t[i].runs), 1);
    }
}

TEST(pool_fifo_order_single_worker)
{
    enum { N = 1000 };
    pool_env e;
    ASSERT_TRUE(env_init(&e, 1));
    e.order = calloc(N, sizeof *e.order);
    ttask *t = ttasks_new(&e, N);
    gate g = GATE_INIT;
    t[0].gate = &g;   /* hold the worker until everything is queued */
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(np_pool_submit(e.pool, &t[i].base), NP_OK);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.running) == 1, 10));
    np_pool_stats s = stats(e.pool);
    ASSERT_EQ(s.queued, N - 1);
    ASSERT_EQ(s.threads, 1);
    gate_open(&g);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.released) == N, 20));
    ASSERT_EQ(atomic_load(&e.order_len), N);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(e.order[i], i);
    }
    ASSERT_EQ(atomic_load(&e.spawn_calls), 1);
    ASSERT_EQ(atomic_load(&e.max_running), 1);
    env_teardown(&e);
    free(t);
}

TEST(pool_every_task_runs_exactly_once)
{
    int n = (int)test_scaled(50000, 5000);
    pool_env e;
    ASSERT_TRUE(env_init(&e, 4));
    e.stats_in_hooks = 1;
    ttask *t = ttasks_new(&e, n);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(np_pool_submit(e.pool, &t[i].base), NP_OK);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.released) == n, 60));
    np_pool_stats s = stats(e.pool);
    ASSERT_UEQ(s.submitted, (uint64_t)n);
    ASSERT_UEQ(s.started, (uint64_t)n);
    ASSERT_EQ(s.queued, 0);
    ASSERT_LE(s.threads, 4);
    ASSERT_LE(atomic_load(&e.max_running), 4);
    ASSERT_LE(atomic_load(&e.spawn_calls), 4);
    env_teardown(&e);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(atomic_load(&t[i].runs), 1);
        ASSERT_EQ(atomic_load(&t[i].releases), 1);
        ASSERT_EQ(atomic_load(&t[i].release_bad), 0);
    }
    free(t);
}

/* ---- idle workers ----------------------------------------------------------- */

/* Both tasks must be running at the same time to finish: forces 2 workers. */
static _Atomic int rendezvous_count;

static void
rendezvous_body(ttask *t, worker_rec *w)
{
    (void)t;
    (void)w;
    atomic_fetch_add(&rendezvous_count, 1);
    EXPECT_TRUE(WAIT_FOR(atomic_load(&rendezvous_count) >= 2, 10));
}

static double
process_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

TEST(pool_idle_workers_park_without_spinning)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    atomic_store(&rendezvous_count, 0);
    ttask t[2];
    for (int i = 0; i < 2; i++) {
        ttask_init(&t[i], &e, i);
        t[i].body = rendezvous_body;
        ASSERT_EQ(np_pool_submit(e.pool, &t[i].base), NP_OK);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.released) == 2, 10));
    ASSERT_TRUE(WAIT_FOR(stats(e.pool).idle == 2, 10));
    np_pool_stats s = stats(e.pool);
    ASSERT_EQ(s.threads, 2);
    ASSERT_EQ(s.idle, s.threads);
    ASSERT_EQ(env_nworkers(&e), 2);
    for (int i = 0; i < 2; i++) {
        worker_rec *w = e.workers[i];
        /* parked exactly once, not woken since */
        ASSERT_TRUE(WAIT_FOR(atomic_load(&w->idle_begin) == 1, 5));
        ASSERT_EQ(atomic_load(&w->idle_end), 0);
        ASSERT_EQ(atomic_load(&w->tasks_run), 1);
        /* and asleep in the kernel */
        int r = test_thread_in_futex(atomic_load(&w->tid));
        if (r >= 0) {
            ASSERT_TRUE(test_wait_in_futex(atomic_load(&w->tid), 5));
        }
    }
    /* No CPU burnt while idle: < 20 ms over 200 ms (the measuring thread
     * sleeps too). */
    double c0 = process_cpu_ms();
    test_sleep_ms(200);
    double used = process_cpu_ms() - c0;
    TEST_LOG("process CPU while idle: %.2f ms over 200 ms", used);
    ASSERT_LT(used, 20.0);
    ASSERT_EQ(stats(e.pool).idle, 2);
    env_teardown(&e);
}

TEST(pool_submit_wakes_idle_worker_instead_of_spawning)
{
    enum { ROUNDS = 50 };
    pool_env e;
    ASSERT_TRUE(env_init(&e, 4));
    ttask t[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        ttask_init(&t[i], &e, i);
        ASSERT_EQ(np_pool_submit(e.pool, &t[i].base), NP_OK);
        ASSERT_TRUE(WAIT_FOR(atomic_load(&t[i].releases) == 1, 10));
        ASSERT_TRUE(WAIT_FOR(stats(e.pool).idle == 1, 10));
        np_pool_stats s = stats(e.pool);
        ASSERT_EQ(s.threads, 1);
        ASSERT_EQ(s.idle, 1);
        ASSERT_EQ(atomic_load(&e.spawn_calls), 1);
    }
    worker_rec *w = e.workers[0];
    for (int i = 0; i < ROUNDS; i++) {
        ASSERT_TRUE(atomic_load(&t[i].ran_on) == w);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&w->idle_begin) == ROUNDS, 5));
    ASSERT_EQ(atomic_load(&w->idle_end), ROUNDS - 1);
    ASSERT_EQ(atomic_load(&w->tasks_run), ROUNDS);
    np_pool_close(e.pool, 0);
    np_pool_join(e.pool);
    env_join_threads(&e, 0);
    ASSERT_EQ(atomic_load(&w->end_at_return), ROUNDS);   /* at return */
    ASSERT_EQ(env_nworkers(&e), 1);
    env_teardown(&e);
}

TEST(pool_max_workers_cap_respected)
{
    enum { N = 20, MAXW = 3 };
    pool_env e;
    ASSERT_TRUE(env_init(&e, MAXW));
    gate g = GATE_INIT;
    ttask t[N];
    for (int i = 0; i < N; i++) {
        ttask_init(&t[i], &e, i);
        t[i].gate = &g;
        ASSERT_EQ(np_pool_submit(e.pool, &t[i].base), NP_OK);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.running) == MAXW, 10));
    test_sleep_ms(50);
    np_pool_stats s = stats(e.pool);
    ASSERT_EQ(s.threads, MAXW);
    ASSERT_EQ(s.queued, N - MAXW);
    ASSERT_EQ(s.idle, 0);
    ASSERT_EQ(atomic_load(&e.running), MAXW);
    ASSERT_EQ(atomic_load(&e.spawn_calls), MAXW);
    ASSERT_EQ(env_nworkers(&e), MAXW);
    gate_open(&g);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.released) == N, 10));
    ASSERT_EQ(atomic_load(&e.max_running), MAXW);
    ASSERT_EQ(atomic_load(&e.spawn_calls), MAXW);
    env_teardown(&e);
}

/* Bursts separated by pauses, so workers park, are woken, and sometimes are
 * woken for a task another worker already took. */
TEST(pool_idle_hooks_balanced_per_worker)
{
    int rounds = (int)test_scaled(200, 40);
    enum { BURST = 64 };
    pool_env e;
    ASSERT_TRUE(env_init(&e, 4));
    e.stats_in_hooks = 1;
    ttask *t = ttasks_new(&e, rounds * BURST);
    unsigned seed = 12345;
    for (int r = 0; r < rounds; r++) {
        int n = 1 + (int)(rand_r(&seed) % BURST);
        for (int i = 0; i < n; i++) {
            ASSERT_EQ(np_pool_submit(e.pool, &t[r * BURST + i].base), NP_OK);
        }
        if (r % 3 == 0) {
            ASSERT_TRUE(WAIT_FOR(atomic_load(&e.released) ==
                                     atomic_load(&e.completed), 10));
        }
        test_sleep_ms((double)(rand_r(&seed) % 3000) / 1000.0);
    }
    np_pool_close(e.pool, 0);
    np_pool_join(e.pool);
    env_join_threads(&e, 0);
    long begins = 0;
    for (int i = 0; i < env_nworkers(&e); i++) {
        worker_rec *w = e.workers[i];
        ASSERT_EQ(atomic_load(&w->returned), 1);
        ASSERT_EQ(atomic_load(&w->begin_at_return),
                  atomic_load(&w->end_at_return));
        begins += atomic_load(&w->begin_at_return);
    }
    ASSERT_GT(begins, 0);
    np_pool_stats s = stats(e.pool);
    ASSERT_UEQ(s.started, s.submitted);
    ASSERT_EQ(atomic_load(&e.released), (long)s.submitted);
    env_teardown(&e);
    free(t);
}

/* ---- close ------------------------------------------------------------------ */

TEST(pool_close_take_queued_returns_fifo_and_workers_exit)
{
    enum { N = 11 };
    pool_env e;
    ASSERT_TRUE(env_init(&e, 1));
    gate g = GATE_INIT;
    ttask t[N];
    for (int i = 0; i < N; i++) {
        ttask_init(&t[i], &e, i);
    }
    t[0].gate = &g;
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(np_pool_submit(e.pool, &t[i].base), NP_OK);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&t[0].runs) == 1, 10));

    np_task *taken = np_pool_close(e.pool, 1);
    int ids[N];
    ASSERT_EQ(list_ids(taken, ids, N), N - 1);
    for (int i = 0; i < N - 1; i++) {
        ASSERT_EQ(ids[i], i + 1);   /* FIFO */
    }
    np_pool_stats s = stats(e.pool);
    ASSERT_EQ(s.closed, 1);
    ASSERT_EQ(s.queued, 0);
    ASSERT_EQ(s.threads, 1);        /* still running t[0] */

    ttask late;
    ttask_init(&late, &e, 99);
    ASSERT_EQ(np_pool_submit(e.pool, &late.base), NP_ECLOSED);
    ASSERT_PTR_EQ(np_pool_close(e.pool, 1), NULL);   /* again: nothing */

    gate_open(&g);
    np_pool_join(e.pool);
    s = stats(e.pool);
    ASSERT_EQ(s.threads, 0);
    ASSERT_UEQ(s.started, 1);
    ASSERT_EQ(atomic_load(&t[0].runs), 1);
    ASSERT_EQ(atomic_load(&t[0].releases), 1);   /* released before return */
    for (int i = 1; i < N; i++) {
        ASSERT_EQ(atomic_load(&t[i].runs), 0);
        ASSERT_EQ(atomic_load(&t[i].releases), 0);
    }
    ASSERT_EQ(atomic_load(&late.runs), 0);
    env_teardown(&e);
}

TEST(pool_close_drain_runs_all_queued_then_workers_exit)
{
    enum { N = 202 };
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    gate g = GATE_INIT;
    ttask t[N];
    for (int i = 0; i < N; i++) {
        ttask_init(&t[i], &e, i);
        if (i < 2) {
            t[i].gate = &g;
        }
        ASSERT_EQ(np_pool_submit(e.pool, &t[i].base), NP_OK);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.running) == 2, 10));
    ASSERT_PTR_EQ(np_pool_close(e.pool, 0), NULL);
    ASSERT_EQ(stats(e.pool).queued, N - 2);   /* nothing removed */
    ttask late;
    ttask_init(&late, &e, 999);
    ASSERT_EQ(np_pool_submit(e.pool, &late.base), NP_ECLOSED);
    ASSERT_EQ(stats(e.pool).submitted, N);
    gate_open(&g);
    np_pool_join(e.pool);
    /* join returned: every queued task ran and was released */
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(atomic_load(&t[i].runs), 1);
        ASSERT_EQ(atomic_load(&t[i].releases), 1);
    }
    np_pool_stats s = stats(e.pool);
    ASSERT_EQ(s.threads, 0);
    ASSERT_UEQ(s.started, N);
    ASSERT_UEQ(s.submitted, N);
    ASSERT_EQ(atomic_load(&late.runs), 0);
    env_teardown(&e);
}

TEST(pool_close_wakes_idle_workers_which_exit)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 3));
    atomic_store(&rendezvous_count, 0);
    ttask t[3];
    gate g = GATE_INIT;
    for (int i = 0; i < 3; i++) {
        ttask_init(&t[i], &e, i);
        t[i].gate = &g;
        ASSERT_EQ(np_pool_submit(e.pool, &t[i].base), NP_OK);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.running) == 3, 10));
    gate_open(&g);
    ASSERT_TRUE(WAIT_FOR(stats(e.pool).idle == 3, 10));
    int64_t t0 = test_now_ns();
    np_pool_close(e.pool, 0);
    ASSERT_EQ(stats(e.pool).idle, 0);
    np_pool_join(e.pool);
    ASSERT_LT(test_now_ns() - t0, 5000000000LL);
    env_join_threads(&e, 0);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(atomic_load(&e.workers[i]->begin_at_return), 1);
        ASSERT_EQ(atomic_load(&e.workers[i]->end_at_return), 1);
    }
    env_teardown(&e);
}

TEST(pool_submit_after_close_returns_eclosed)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    np_pool_close(e.pool, 0);
    ttask t;
    ttask_init(&t, &e, 0);
    ASSERT_EQ(np_pool_submit(e.pool, &t.base), NP_ECLOSED);
    ASSERT_EQ(np_pool_submit(e.pool, &t.base), NP_ECLOSED);
    np_pool_stats s = stats(e.pool);
    ASSERT_UEQ(s.submitted, 0);
    ASSERT_EQ(s.queued, 0);
    ASSERT_EQ(s.threads, 0);
    ASSERT_EQ(atomic_load(&e.spawn_calls), 0);
    np_pool_join(e.pool);
    ASSERT_EQ(atomic_load(&t.runs), 0);
    env_teardown(&e);
}

/* ---- spawn failures ------------------------------------------------------------ */

TEST(pool_spawn_failure_without_threads_returns_error)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    atomic_store(&e.fail_code, -7);
    ttask a, b, c;
    ttask_init(&a, &e, 0);
    ttask_init(&b, &e, 1);
    ttask_init(&c, &e, 2);
    ASSERT_EQ(np_pool_submit(e.pool, &a.base), -7);
    atomic_store(&e.fail_code, NP_ENOMEM);
    ASSERT_EQ(np_pool_submit(e.pool, &b.base), NP_ENOMEM);
    np_pool_stats s = stats(e.pool);
    ASSERT_EQ(s.queued, 0);
    ASSERT_UEQ(s.submitted, 0);
    ASSERT_EQ(s.threads, 0);
    ASSERT_PTR_EQ(np_pool_take_orphans(e.pool), NULL);
    ASSERT_EQ(atomic_load(&e.spawn_calls), 2);

    /* The pool is still usable once threads can be started. */
    atomic_store(&e.fail_code, 0);
    ASSERT_EQ(np_pool_submit(e.pool, &c.base), NP_OK);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&c.releases) == 1, 10));
    s = stats(e.pool);
    ASSERT_UEQ(s.submitted, 1);
    ASSERT_UEQ(s.started, 1);
    env_teardown(&e);
    ASSERT_EQ(atomic_load(&a.runs), 0);   /* handed back, never run */
    ASSERT_EQ(atomic_load(&b.runs), 0);
    ASSERT_EQ(atomic_load(&c.runs), 1);
}

TEST(pool_spawn_failure_with_existing_worker_is_not_an_error)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    gate g = GATE_INIT;
    ttask a, b;
    ttask_init(&a, &e, 0);
    ttask_init(&b, &e, 1);
    a.gate = &g;
    ASSERT_EQ(np_pool_submit(e.pool, &a.base), NP_OK);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&a.runs) == 1, 10));   /* busy */
    atomic_store(&e.fail_code, -1);
    ASSERT_EQ(np_pool_submit(e.pool, &b.base), NP_OK);
    ASSERT_EQ(atomic_load(&e.spawn_calls), 2);   /* it did try */
    np_pool_stats s = stats(e.pool);
    ASSERT_EQ(s.threads, 1);
    ASSERT_EQ(s.queued, 1);
    ASSERT_UEQ(s.submitted, 2);
    gate_open(&g);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&b.releases) == 1, 10));
    ASSERT_TRUE(atomic_load(&b.ran_on) == atomic_load(&a.ran_on));
    ASSERT_PTR_EQ(np_pool_take_orphans(e.pool), NULL);
    env_teardown(&e);
    ASSERT_EQ(atomic_load(&b.runs), 1);
}

/* A helper thread that submits one task and records the result. */
typedef struct {
    np_pool *pool;
    np_task *task;
    _Atomic int result;
    _Atomic int returned;
} submitter;

static void *
submitter_main(void *arg)
{
    submitter *s = arg;
    atomic_store(&s->result, np_pool_submit(s->pool, s->task));
    atomic_store(&s->returned, 1);
    return NULL;
}

/* before_spawn that parks the first spawn until the test opens the gate,
 * then fails it with user-chosen code (e->user points at spawn_ctl). */
typedef struct {
    gate g;
    _Atomic int in_spawn;
    int fail_code;      /* returned by the blocked spawn (0: go on) */
} spawn_ctl;

static int
blocking_first_spawn(pool_env *e, int call)
{
    spawn_ctl *c = e->user;
    if (call != 0) {
        return 0;
    }
    atomic_store(&c->in_spawn, 1);
    gate_wait(&c->g);
    return c->fail_code;
}

/* Submitter A's spawn is in progress (it reserved the only slot) when B
 * submits: B is queued and told NP_OK.  Then A's spawn fails.  B must not be
 * lost: the runtime hands it back through np_pool_take_orphans (the header
 * documents orphans only for fork -- see the report), or leaves it queued
 * for the next worker. */
TEST(pool_spawn_failure_does_not_lose_concurrent_submit)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 1));
    spawn_ctl ctl = {.g = GATE_INIT, .fail_code = -3};
    e.user = &ctl;
    e.before_spawn = blocking_first_spawn;
    ttask a, b, c;
    ttask_init(&a, &e, 0);
    ttask_init(&b, &e, 1);
    ttask_init(&c, &e, 2);
    submitter sa = {.pool = e.pool, .task = &a.base};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, submitter_main, &sa), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&ctl.in_spawn), 10));
    ASSERT_EQ(np_pool_submit(e.pool, &b.base), NP_OK);
    gate_open(&ctl.g);
    pthread_join(th, NULL);
    ASSERT_EQ(atomic_load(&sa.result), -3);

    np_task *orphans = np_pool_take_orphans(e.pool);
    ASSERT_FALSE(list_contains(orphans, &a.base));
    if (list_contains(orphans, &b.base)) {
        ASSERT_EQ(list_ids(orphans, (int[4]){0}, 4), 1);
        ASSERT_EQ(stats(e.pool).queued, 0);
    }
    else {
        /* still queued: the next successful submit must run it */
        ASSERT_EQ(np_pool_submit(e.pool, &c.base), NP_OK);
        ASSERT_TRUE(WAIT_FOR(atomic_load(&b.releases) == 1, 10));
        ASSERT_TRUE(WAIT_FOR(atomic_load(&c.releases) == 1, 10));
    }
    ASSERT_EQ(atomic_load(&a.runs), 0);
    env_teardown(&e);
}

/* Submit is in its spawn hook when the pool is closed and its queued tasks
 * returned, and then spawn succeeds.  The task belongs to the closer; the
 * new worker finds a closed, empty pool and exits. */
TEST(pool_close_take_queued_while_spawning)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    spawn_ctl ctl = {.g = GATE_INIT, .fail_code = 0};
    e.user = &ctl;
    e.before_spawn = blocking_first_spawn;
    ttask a;
    ttask_init(&a, &e, 0);
    submitter sa = {.pool = e.pool, .task = &a.base};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, submitter_main, &sa), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&ctl.in_spawn), 10));
    np_task *taken = np_pool_close(e.pool, 1);
    ASSERT_PTR_EQ(taken, &a.base);
    ASSERT_PTR_EQ(taken->next, NULL);
    gate_open(&ctl.g);
    pthread_join(th, NULL);
    ASSERT_EQ(atomic_load(&sa.result), NP_OK);
    np_pool_join(e.pool);
    ASSERT_EQ(atomic_load(&a.runs), 0);
    ASSERT_EQ(env_nworkers(&e), 1);
    env_teardown(&e);
}

/* The spawn hook starts its thread and then reports a failure anyway (a
 * Python hook whose Thread.start() is interrupted while it waits for the
 * new thread).  That thread is a worker all the same: it must be counted,
 * or the count underflows when it returns and np_pool_join never returns.
 * First the thread comes in (and runs the task) before the hook returns. */
static int
fail_after_task_ran(pool_env *e, worker_rec *unused_w)
{
    ttask *t = e->user;
    (void)unused_w;
    if (!WAIT_FOR(atomic_load(&t->runs) == 1, 10)) {
        return -1;
    }
    return -5;
}

TEST(pool_spawn_failure_after_thread_came_in)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    ttask a, b;
    ttask_init(&a, &e, 0);
    ttask_init(&b, &e, 1);
    e.user = &a;
    e.after_start = fail_after_task_ran;
    /* Its thread runs it: not an error, nothing to hand back. */
    ASSERT_EQ(np_pool_submit(e.pool, &a.base), NP_OK);
    ASSERT_PTR_EQ(np_pool_take_orphans(e.pool), NULL);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&a.releases) == 1, 10));
    ASSERT_TRUE(WAIT_FOR(stats(e.pool).idle == 1, 10));
    ASSERT_EQ(stats(e.pool).threads, 1);
    e.after_start = NULL;
    ASSERT_EQ(np_pool_submit(e.pool, &b.base), NP_OK);   /* wakes it */
    ASSERT_TRUE(WAIT_FOR(atomic_load(&b.releases) == 1, 10));
    ASSERT_EQ(atomic_load(&e.spawn_calls), 1);
    env_teardown(&e);   /* join returns: the count is back to 0 */
    ASSERT_EQ(atomic_load(&a.runs), 1);
    ASSERT_EQ(atomic_load(&b.runs), 1);
}

/* Then the thread comes in only after the hook has reported the failure: the
 * submit fails (its task handed back, as no thread is counted), and the
 * thread, when it comes in, counts itself. */
static int
fail_at_once(pool_env *unused_e, worker_rec *unused_w)
{
    (void)unused_e;
    (void)unused_w;
    return -5;
}

TEST(pool_spawn_failure_before_thread_came_in)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    gate entry = GATE_INIT;
    e.entry_gate = &entry;
    e.after_start = fail_at_once;
    ttask a, b;
    ttask_init(&a, &e, 0);
    ttask_init(&b, &e, 1);
    ASSERT_EQ(np_pool_submit(e.pool, &a.base), -5);
    ASSERT_PTR_EQ(np_pool_take_orphans(e.pool), NULL);
    np_pool_stats s = stats(e.pool);
    ASSERT_EQ(s.threads, 0);
    ASSERT_EQ(s.queued, 0);
    e.after_start = NULL;
    gate_open(&entry);
    ASSERT_TRUE(WAIT_FOR(stats(e.pool).idle == 1, 10));
    ASSERT_EQ(stats(e.pool).threads, 1);
    ASSERT_EQ(np_pool_submit(e.pool, &b.base), NP_OK);   /* wakes it */
    ASSERT_TRUE(WAIT_FOR(atomic_load(&b.releases) == 1, 10));
    ASSERT_EQ(atomic_load(&e.spawn_calls), 1);
    env_teardown(&e);
    ASSERT_EQ(atomic_load(&a.runs), 0);
    ASSERT_EQ(atomic_load(&b.runs), 1);
}

/* A thread reserved by a submit whose spawn hook is still running counts
 * as a thread: np_pool_join on the closed pool must wait for it.  If the
 * spawn then succeeds, the new worker drains the queue (close without
 * take_queued); if it fails, the task is handed back to the submitter and
 * join returns. */
typedef struct {
    np_pool *pool;
    _Atomic int returned;
} joiner;

static void *
joiner_main(void *arg)
{
    joiner *j = arg;
    np_pool_join(j->pool);
    atomic_store(&j->returned, 1);
    return NULL;
}

static void
join_waits_for_pending_spawn(int fail_code)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    spawn_ctl ctl = {.g = GATE_INIT, .fail_code = fail_code};
    e.user = &ctl;
    e.before_spawn = blocking_first_spawn;
    ttask a;
    ttask_init(&a, &e, 0);
    submitter sa = {.pool = e.pool, .task = &a.base};
    pthread_t ts, tj;
    ASSERT_EQ(pthread_create(&ts, NULL, submitter_main, &sa), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&ctl.in_spawn), 10));
    ASSERT_PTR_EQ(np_pool_close(e.pool, 0), NULL);
    np_pool_stats s = stats(e.pool);
    ASSERT_EQ(s.threads, 1);     /* the reservation */
    ASSERT_EQ(s.queued, 1);
    joiner j = {.pool = e.pool};
    ASSERT_EQ(pthread_create(&tj, NULL, joiner_main, &j), 0);
    test_sleep_ms(50);
    EXPECT_EQ(atomic_load(&j.returned), 0);
    gate_open(&ctl.g);
    pthread_join(ts, NULL);
    EXPECT_TRUE(WAIT_FOR(atomic_load(&j.returned), 10));
    if (!atomic_load(&j.returned)) {
        /* cannot end the test cleanly: the joiner waits forever */
        FAIL("np_pool_join did not return after the pending spawn ended");
    }
    pthread_join(tj, NULL);
    if (fail_code < 0) {
        ASSERT_EQ(atomic_load(&sa.result), fail_code);
        ASSERT_EQ(atomic_load(&a.runs), 0);
        ASSERT_PTR_EQ(np_pool_take_orphans(e.pool), NULL);
        ASSERT_UEQ(stats(e.pool).submitted, 0);
    }
    else {
        ASSERT_EQ(atomic_load(&sa.result), NP_OK);
        ASSERT_EQ(atomic_load(&a.runs), 1);       /* drained by the new worker */
        ASSERT_EQ(atomic_load(&a.releases), 1);
    }
    env_teardown(&e);
}

TEST(pool_join_waits_for_pending_spawn_that_succeeds)
{
    join_waits_for_pending_spawn(0);
}

TEST(pool_join_waits_for_pending_spawn_that_fails)
{
    join_waits_for_pending_spawn(-2);
}

/* Regression (a fixed bug): the spawn-failure path assumes that, with no
 * thread left, its task must still be queued, and abort()s otherwise.  But
 * np_pool_close(take_queued=1) may have taken the task out of the queue
 * while the spawn hook ran (unlocked).  Here the close happens in the main
 * thread while the submitter is inside the spawn hook; the spawn then
 * fails.  Expected: no crash, and the task has exactly one owner: either
 * submit fails (< 0) and the task is not in close's list, or submit returns
 * NP_OK and the task is in close's list.  Actual: SIGABRT. */
TEST(pool_spawn_failure_racing_close_take_queued)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    spawn_ctl ctl = {.g = GATE_INIT, .fail_code = -5};
    e.user = &ctl;
    e.before_spawn = blocking_first_spawn;
    ttask a;
    ttask_init(&a, &e, 0);
    submitter sa = {.pool = e.pool, .task = &a.base};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, submitter_main, &sa), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&ctl.in_spawn), 10));
    np_task *taken = np_pool_close(e.pool, 1);
    int in_list = list_contains(taken, &a.base);
    gate_open(&ctl.g);
    pthread_join(th, NULL);   /* the process aborts here today */
    int r = atomic_load(&sa.result);
    if (r < 0) {
        ASSERT_FALSE(in_list);
    }
    else {
        ASSERT_EQ(r, NP_OK);
        ASSERT_TRUE(in_list);
    }
    np_pool_join(e.pool);
    ASSERT_EQ(atomic_load(&a.runs), 0);
    env_teardown(&e);
}

/* Regression (same place, second way in): the worker that existed when the
 * submitter reserved a thread takes the task, runs it, and -- the pool
 * having been closed meanwhile -- exits, all while the spawn hook runs.
 * Then the spawn fails: threads drops to 0, the task is no longer queued,
 * abort().  Expected: submit returns NP_OK (the task ran, exactly once),
 * and a thread blocked in np_pool_join is woken (threads reached 0). */
TEST(pool_spawn_failure_after_worker_ran_task_and_exited)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    spawn_ctl ctl = {.g = GATE_INIT, .fail_code = -1};
    e.user = &ctl;
    gate g1 = GATE_INIT;
    ttask a, b;
    ttask_init(&a, &e, 0);
    ttask_init(&b, &e, 1);
    a.gate = &g1;
    ASSERT_EQ(np_pool_submit(e.pool, &a.base), NP_OK);      /* worker W */
    ASSERT_TRUE(WAIT_FOR(atomic_load(&a.runs) == 1, 10));
    /* From now on the (next) spawn blocks, then fails. */
    atomic_store(&e.spawn_calls, 0);
    e.before_spawn = blocking_first_spawn;
    submitter sb = {.pool = e.pool, .task = &b.base};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, submitter_main, &sb), 0);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&ctl.in_spawn), 10));
    gate_open(&g1);                                           /* W runs b */
    ASSERT_TRUE(WAIT_FOR(atomic_load(&b.releases) == 1, 10));
    np_pool_close(e.pool, 0);                                 /* W exits */
    ASSERT_TRUE(WAIT_FOR(stats(e.pool).threads == 1, 10));   /* our slot */
    /* A joiner already waiting must be woken when that slot goes away. */
    joiner j = {.pool = e.pool};
    pthread_t tj;
    ASSERT_EQ(pthread_create(&tj, NULL, joiner_main, &j), 0);
    gate_open(&ctl.g);                                        /* spawn fails */
    pthread_join(th, NULL);   /* the process aborts here today */
    ASSERT_EQ(atomic_load(&sb.result), NP_OK);
    ASSERT_EQ(atomic_load(&b.runs), 1);
    if (!WAIT_FOR(atomic_load(&j.returned), 10)) {
        FAIL("np_pool_join did not return after the failed spawn");
    }
    pthread_join(tj, NULL);
    ASSERT_PTR_EQ(np_pool_take_orphans(e.pool), NULL);
    env_teardown(&e);
}

/* ---- release hook ------------------------------------------------------------ */

static _Atomic long heap_released;
static _Atomic long heap_ran;

typedef struct {
    np_task base;
    _Atomic int ran;
    np_pool *pool;
    unsigned char payload[40];
} heap_task;

static void
heap_run(np_task *task, void *warg)
{
    (void)warg;
    heap_task *t = (heap_task *)task;
    atomic_store(&t->ran, 1);
    memset(t->payload, 0xab, sizeof t->payload);
    atomic_fetch_add(&heap_ran, 1);
}

static void
heap_release(np_task *task, void *warg)
{
    (void)warg;
    heap_task *t = (heap_task *)task;
    EXPECT_EQ(atomic_load(&t->ran), 1);
    (void)stats(t->pool);   /* no pool lock held */
    memset(t, 0xdd, sizeof *t);
    free(t);                /* ASan catches any later use by the pool */
    atomic_fetch_add(&heap_released, 1);
}

TEST(pool_release_called_once_after_run_and_may_free)
{
    int n = (int)test_scaled(20000, 2000);
    pool_env e;
    ASSERT_TRUE(env_init(&e, 3));
    atomic_store(&heap_released, 0);
    atomic_store(&heap_ran, 0);
    for (int i = 0; i < n; i++) {
        heap_task *t = calloc(1, sizeof *t);
        ASSERT_PTR_NE(t, NULL);
        t->base.run = heap_run;
        t->base.release = heap_release;
        t->pool = e.pool;
        ASSERT_EQ(np_pool_submit(e.pool, &t->base), NP_OK);
        if (i % 1000 == 999) {
            test_sleep_ms(1);   /* let workers park now and then */
        }
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&heap_released) == n, 30));
    env_teardown(&e);
    ASSERT_EQ(atomic_load(&heap_ran), n);
    ASSERT_EQ(atomic_load(&heap_released), n);
}

/* run and release may submit more work (no pool lock held around them). */
enum { CHAIN = 300 };
static ttask chain_tasks[CHAIN];

static void
chain_body(ttask *t, worker_rec *w)
{
    (void)w;
    if (t->id % 2 == 0 && t->id + 1 < CHAIN) {
        EXPECT_EQ(np_pool_submit(t->env->pool, &chain_tasks[t->id + 1].base),
                  NP_OK);
    }
}

static void
chain_release(np_task *task, void *warg)
{
    ttask *t = (ttask *)task;
    ttask_release(task, warg);
    if (t->id % 2 == 1 && t->id + 1 < CHAIN) {
        EXPECT_EQ(np_pool_submit(t->env->pool, &chain_tasks[t->id + 1].base),
                  NP_OK);
    }
}

TEST(pool_submit_from_run_and_release)
{
    for (int maxw = 1; maxw <= 2; maxw++) {
        pool_env e;
        ASSERT_TRUE(env_init(&e, (size_t)maxw));
        for (int i = 0; i < CHAIN; i++) {
            ttask_init(&chain_tasks[i], &e, i);
            chain_tasks[i].body = chain_body;
            chain_tasks[i].base.release = chain_release;
        }
        ASSERT_EQ(np_pool_submit(e.pool, &chain_tasks[0].base), NP_OK);
        ASSERT_TRUE(WAIT_FOR(atomic_load(&e.released) == CHAIN, 20));
        env_teardown(&e);
        for (int i = 0; i < CHAIN; i++) {
            ASSERT_EQ(atomic_load(&chain_tasks[i].runs), 1);
            ASSERT_EQ(atomic_load(&chain_tasks[i].releases), 1);
        }
    }
}

/* ---- fork ------------------------------------------------------------------- */

/* TSan cannot follow a fork of a multi-threaded process whose child then
 * starts threads: by default (die_after_fork=1) it kills such a child, and
 * with die_after_fork=0 it mixes up the child's new threads with the
 * parent's ("dup thread with used id").  So in the TSan build the fork tests
 * still run -- TSan checks the parent side, including the atfork handlers --
 * but each child stops before it would start a thread. */
#define CHILD_MAY_START_THREADS (!NP_TEST_TSAN)

TEST(pool_fork_child_gets_orphans_and_stays_usable)
{
    enum { N = 10 };
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    gate g = GATE_INIT;
    ttask t[N];
    for (int i = 0; i < N; i++) {
        ttask_init(&t[i], &e, i);
        t[i].gate = &g;
        ASSERT_EQ(np_pool_submit(e.pool, &t[i].base), NP_OK);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.running) == 2, 10));
    ASSERT_EQ(stats(e.pool).queued, N - 2);
    int workers_before = env_nworkers(&e);
    int spawns_before = atomic_load(&e.spawn_calls);

    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        /* child: only this thread exists */
        np_pool_stats s = stats(e.pool);
        EXPECT_EQ(s.threads, 0);
        EXPECT_EQ(s.idle, 0);
        EXPECT_EQ(s.queued, 0);
        EXPECT_EQ(s.closed, 0);
        np_task *o = np_pool_take_orphans(e.pool);
        int ids[N + 4];
        int n = list_ids(o, ids, N + 4);
        EXPECT_EQ(n, N);
        if (n == N) {
            /* the two running tasks (in some order), then the queue FIFO */
            EXPECT_TRUE((ids[0] == 0 && ids[1] == 1) ||
                        (ids[0] == 1 && ids[1] == 0));
            for (int i = 2; i < N; i++) {
                EXPECT_EQ(ids[i], i);
            }
        }
        for (int i = 0; i < N; i++) {
            EXPECT_EQ(atomic_load(&t[i].done), 0);
            EXPECT_EQ(atomic_load(&t[i].runs), i < 2 ? 1 : 0);
        }
        EXPECT_PTR_EQ(np_pool_take_orphans(e.pool), NULL);
        if (!CHILD_MAY_START_THREADS) {
            child_exit();
        }

        /* a new submit spawns a worker in the child and runs */
        ttask c;
        ttask_init(&c, &e, 100);
        EXPECT_EQ(np_pool_submit(e.pool, &c.base), NP_OK);
        EXPECT_TRUE(WAIT_FOR(atomic_load(&c.releases) == 1, 10));
        EXPECT_EQ(atomic_load(&e.spawn_calls), spawns_before + 1);
        s = stats(e.pool);
        EXPECT_EQ(s.threads, 1);
        EXPECT_UEQ(s.submitted, N + 1);
        EXPECT_UEQ(s.started, 2 + 1);
        np_pool_close(e.pool, 0);
        np_pool_join(e.pool);
        env_join_threads(&e, workers_before);
        EXPECT_EQ(stats(e.pool).threads, 0);
        child_exit();
    }
    int status = test_reap(pid, 30);
    check_child_status(status, "fork child");

    /* parent unaffected */
    np_pool_stats s = stats(e.pool);
    ASSERT_EQ(s.threads, 2);
    ASSERT_EQ(s.queued, N - 2);
    ASSERT_EQ(atomic_load(&e.running), 2);
    ASSERT_PTR_EQ(np_pool_take_orphans(e.pool), NULL);
    gate_open(&g);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.released) == N, 10));
    ttask d;
    ttask_init(&d, &e, 200);
    ASSERT_EQ(np_pool_submit(e.pool, &d.base), NP_OK);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&d.releases) == 1, 10));
    env_teardown(&e);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(atomic_load(&t[i].runs), 1);
    }
}

TEST(pool_fork_idle_pool)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    ttask t;
    ttask_init(&t, &e, 0);
    ASSERT_EQ(np_pool_submit(e.pool, &t.base), NP_OK);
    ASSERT_TRUE(WAIT_FOR(stats(e.pool).idle == 1, 10));
    int workers_before = env_nworkers(&e);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        np_pool_stats s = stats(e.pool);
        EXPECT_EQ(s.threads, 0);
        EXPECT_EQ(s.idle, 0);
        EXPECT_PTR_EQ(np_pool_take_orphans(e.pool), NULL);
        if (!CHILD_MAY_START_THREADS) {
            child_exit();
        }
        ttask c;
        ttask_init(&c, &e, 1);
        EXPECT_EQ(np_pool_submit(e.pool, &c.base), NP_OK);
        EXPECT_TRUE(WAIT_FOR(atomic_load(&c.releases) == 1, 10));
        EXPECT_EQ(env_nworkers(&e), workers_before + 1);
        np_pool_close(e.pool, 0);
        np_pool_join(e.pool);
        env_join_threads(&e, workers_before);
        child_exit();
    }
    check_child_status(test_reap(pid, 30), "fork child");
    ASSERT_EQ(stats(e.pool).idle, 1);
    env_teardown(&e);
}

/* A task calls fork(): in the child its worker stays a worker (the forking
 * thread is still inside np_pool_work), keeps its own task, and the other
 * worker's running task and the queued tasks become orphans. */
static _Atomic pid_t forking_task_child;
static gate fork_task_gate = GATE_INIT;
static ttask fork_tasks[5];

static void
forking_body(ttask *self, worker_rec *w)
{
    (void)w;
    gate_wait(&fork_task_gate);
    pid_t pid = fork();
    if (pid != 0) {
        atomic_store(&forking_task_child, pid);
        return;
    }
    /* child, on the worker thread, inside run */
    np_pool *p = self->env->pool;
    np_pool_stats s = stats(p);
    EXPECT_EQ(s.threads, 1);
    EXPECT_EQ(s.idle, 0);
    EXPECT_EQ(s.queued, 0);
    np_task *o = np_pool_take_orphans(p);
    int ids[8];
    int n = list_ids(o, ids, 8);
    EXPECT_EQ(n, 3);
    if (n == 3) {
        EXPECT_EQ(ids[0], 0);   /* the other running task */
        EXPECT_EQ(ids[1], 2);   /* queued, FIFO */
        EXPECT_EQ(ids[2], 3);
    }
    EXPECT_FALSE(list_contains(o, &self->base));
    if (!CHILD_MAY_START_THREADS) {
        child_exit();
    }
    /* The pool grows again in the child. */
    ttask *c = &fork_tasks[4];
    ttask_init(c, self->env, 4);
    EXPECT_EQ(np_pool_submit(p, &c->base), NP_OK);
    EXPECT_TRUE(WAIT_FOR(atomic_load(&c->releases) == 1, 10));
    EXPECT_EQ(stats(p).threads, 2);
    child_exit();
}

TEST(pool_fork_from_task_keeps_forking_worker)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 2));
    gate g = GATE_INIT;
    for (int i = 0; i < 4; i++) {
        ttask_init(&fork_tasks[i], &e, i);
    }
    fork_tasks[0].gate = &g;
    fork_tasks[1].body = forking_body;
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(np_pool_submit(e.pool, &fork_tasks[i].base), NP_OK);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.running) == 2, 10));
    ASSERT_EQ(stats(e.pool).queued, 2);
    gate_open(&fork_task_gate);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&forking_task_child) != 0, 10));
    check_child_status(test_reap(atomic_load(&forking_task_child), 30),
                       "child forked by a task");
    gate_open(&g);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&e.released) == 4, 10));
    env_teardown(&e);
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(atomic_load(&fork_tasks[i].runs), 1);
    }
}

/* Regression: a task whose run function has
 * returned stays in w.current until its worker re-takes the pool lock.  If
 * fork() happens in that window -- and atfork_prepare holding the pool lock
 * makes the worker wait exactly there -- the child gets the finished task
 * as an orphan, although np_pool.h promises orphans "never had their run
 * function finish in this process".  The owner would then fail a task whose
 * effects already happened (e.g. a future that already has its result).
 *
 * Made deterministic with our own pthread_atfork prepare handler: it is
 * registered before the runtime's (the runtime registers on the first
 * np_pool_new in this process), so it runs after the runtime's prepare,
 * i.e. with the pool locked; it lets the running task finish and waits until
 * its run has returned, then fork proceeds. */
static _Atomic int probe_armed;
static ttask *_Atomic probe_task;
static gate probe_gate = GATE_INIT;

static void
probe_prepare(void)
{
    if (!atomic_load(&probe_armed)) {
        return;
    }
    ttask *t = atomic_load(&probe_task);
    gate_open(&probe_gate);
    int64_t deadline = test_now_ns() + 5000000000LL;
    while (!atomic_load(&t->done) && test_now_ns() < deadline) {
        test_sleep_ms(1);
    }
    test_sleep_ms(30);   /* run has returned; worker blocks on the pool lock */
}

TEST(pool_fork_orphans_exclude_finished_tasks)
{
    /* Must come before the first np_pool_new in this process (each test is
     * its own process, see test.h; with NP_TEST_NOFORK the order may differ
     * and the test passes vacuously). */
    pthread_atfork(probe_prepare, NULL, NULL);
    pool_env e;
    ASSERT_TRUE(env_init(&e, 1));
    static ttask t;
    ttask_init(&t, &e, 0);
    t.gate = &probe_gate;
    atomic_store(&probe_task, &t);
    ASSERT_EQ(np_pool_submit(e.pool, &t.base), NP_OK);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&t.runs) == 1, 10));
    atomic_store(&probe_armed, 1);
    pid_t pid = fork();
    atomic_store(&probe_armed, 0);
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        EXPECT_EQ(atomic_load(&t.done), 1);   /* run finished before fork */
        np_task *o = np_pool_take_orphans(e.pool);
        for (np_task *x = o; x != NULL; x = x->next) {
            ttask *tt = (ttask *)x;
            if (atomic_load(&tt->done)) {
                test_fail_msg(__FILE__, __LINE__,
                              "orphan task %d had already finished run() "
                              "before fork", tt->id);
            }
        }
        child_exit();
    }
    check_child_status(test_reap(pid, 30), "fork child");
    ASSERT_TRUE(WAIT_FOR(atomic_load(&t.releases) == 1, 10));
    env_teardown(&e);
}

/* Regression: a worker that forks from its idle_begin hook is
 * already on the idle stack (np_pool.c:405-408) with woken == 0.  In the
 * child atfork_child keeps it as a worker (threads = 1) but empties the idle
 * stack, so nothing can ever wake it: with max_workers = 1 a task submitted
 * in the child is never run (with more workers, close + join in the child
 * would hang on it instead).  Nothing in np_pool.h forbids fork in a hook;
 * the fix is to leave a kept worker that is on the idle stack on it.
 *
 * The child submits, from the hook, a task that exits the child when it
 * runs; returning from the hook the worker parks.  With the bug nothing
 * wakes it and the child hangs until wait_child kills it. */
static _Atomic int idle_fork_armed;
static _Atomic pid_t idle_fork_child;
static ttask idle_fork_task;

static void
exit_child_body(ttask *t, worker_rec *w)
{
    (void)t;
    (void)w;
    child_exit();   /* success: the task submitted in the child ran */
}

static void
fork_in_idle_begin(worker_rec *w)
{
    if (!atomic_exchange(&idle_fork_armed, 0)) {
        return;
    }
    pid_t pid = fork();
    if (pid != 0) {
        atomic_store(&idle_fork_child, pid);
        return;
    }
    /* child: this worker thread is the only thread */
    np_pool_stats s = stats(w->pool);
    EXPECT_EQ(s.threads, 1);
    EXPECT_EQ(s.queued, 0);
    ttask_init(&idle_fork_task, w->env, 1);
    idle_fork_task.body = exit_child_body;
    EXPECT_EQ(np_pool_submit(w->pool, &idle_fork_task.base), NP_OK);
    if (TEST_FAILED()) {
        child_exit();
    }
    /* return from the hook: the worker parks, must be woken for the task */
}

TEST(pool_fork_from_idle_begin_hook)
{
    pool_env e;
    ASSERT_TRUE(env_init(&e, 1));
    e.on_idle_begin = fork_in_idle_begin;
    ttask t;
    ttask_init(&t, &e, 0);
    atomic_store(&idle_fork_armed, 1);
    ASSERT_EQ(np_pool_submit(e.pool, &t.base), NP_OK);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&idle_fork_child) != 0, 10));
    int status = test_reap(atomic_load(&idle_fork_child), 2);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
        test_fail_msg(__FILE__, __LINE__,
                      "the task submitted in the child never ran: the worker "
                      "that forked in idle_begin can never be woken");
    }
    else {
        check_child_status(status, "child forked in idle_begin");
    }
    ASSERT_TRUE(WAIT_FOR(stats(e.pool).idle == 1, 10));
    env_teardown(&e);
}

/* Several live pools: np_pool_free unlinks from the fork registry correctly
 * (ASan would flag the atfork handlers walking a freed pool). */
TEST(pool_registry_many_pools_and_fork)
{
    enum { P = 5 };
    pool_env e[P];
    for (int i = 0; i < P; i++) {
        ASSERT_TRUE(env_init(&e[i], 1));
    }
    /* free the middle, the newest and the oldest */
    env_teardown(&e[2]);
    env_teardown(&e[4]);
    env_teardown(&e[0]);
    ttask t1, t3;
    ttask_init(&t1, &e[1], 1);
    ttask_init(&t3, &e[3], 3);
    ASSERT_EQ(np_pool_submit(e[1].pool, &t1.base), NP_OK);
    ASSERT_EQ(np_pool_submit(e[3].pool, &t3.base), NP_OK);
    ASSERT_TRUE(WAIT_FOR(atomic_load(&t1.releases) == 1, 10));
    ASSERT_TRUE(WAIT_FOR(atomic_load(&t3.releases) == 1, 10));
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        EXPECT_EQ(stats(e[1].pool).threads, 0);
        EXPECT_EQ(stats(e[3].pool).threads, 0);
        child_exit();
    }
    check_child_status(test_reap(pid, 30), "fork child");
    env_teardown(&e[1]);
    env_teardown(&e[3]);
    /* and a fork with no pool at all */
    pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        child_exit();
    }
    check_child_status(test_reap(pid, 30), "fork child (no pools)");
}

/* ---- stress ------------------------------------------------------------------- */

typedef struct {
    np_task base;
    uint32_t idx;
} stress_task;

static _Atomic uint32_t *stress_runs;
static _Atomic uint32_t *stress_releases;
static _Atomic long stress_done;

static void
stress_run(np_task *task, void *warg)
{
    (void)warg;
    stress_task *t = (stress_task *)task;
    atomic_fetch_add_explicit(&stress_runs[t->idx], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&stress_done, 1, memory_order_release);
}

static void
stress_release(np_task *task, void *warg)
{
    (void)warg;
    stress_task *t = (stress_task *)task;
    atomic_fetch_add_explicit(&stress_releases[t->idx], 1,
                              memory_order_relaxed);
}

typedef struct {
    np_pool *pool;
    stress_task *tasks;
    long begin, end;
    _Atomic long errors;
} producer;

static void *
producer_main(void *arg)
{
    producer *pr = arg;
    for (long i = pr->begin; i < pr->end; i++) {
        if (np_pool_submit(pr->pool, &pr->tasks[i].base) != NP_OK) {
            atomic_fetch_add(&pr->errors, 1);
        }
    }
    return NULL;
}

TEST(pool_stress_4_producers_4_workers)
{
    enum { PRODUCERS = 4, WORKERS = 4 };
    long total = test_scaled(2000000, 20000);
    pool_env e;
    ASSERT_TRUE(env_init(&e, WORKERS));
    stress_task *tasks = calloc((size_t)total, sizeof *tasks);
    stress_runs = calloc((size_t)total, sizeof *stress_runs);
    stress_releases = calloc((size_t)total, sizeof *stress_releases);
    ASSERT_TRUE(tasks && stress_runs && stress_releases);
    atomic_store(&stress_done, 0);
    for (long i = 0; i < total; i++) {
        tasks[i].base.run = stress_run;
        /* half the tasks have a release hook */
        tasks[i].base.release = (i & 1) ? stress_release : NULL;
        tasks[i].idx = (uint32_t)i;
    }
    producer pr[PRODUCERS];
    pthread_t th[PRODUCERS];
    int64_t t0 = test_now_ns();
    for (int i = 0; i < PRODUCERS; i++) {
        pr[i].pool = e.pool;
        pr[i].tasks = tasks;
        pr[i].begin = total * i / PRODUCERS;
        pr[i].end = total * (i + 1) / PRODUCERS;
        atomic_store(&pr[i].errors, 0);
        ASSERT_EQ(pthread_create(&th[i], NULL, producer_main, &pr[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(atomic_load(&pr[i].errors), 0);
    }
    int64_t t_sub = test_now_ns();
    ASSERT_TRUE(WAIT_FOR(atomic_load(&stress_done) == total, 120));
    np_pool_stats s = stats(e.pool);
    ASSERT_UEQ(s.submitted, (uint64_t)total);
    ASSERT_UEQ(s.started, (uint64_t)total);
    ASSERT_EQ(s.queued, 0);
    ASSERT_LE(s.threads, WORKERS);
    ASSERT_LE(atomic_load(&e.spawn_calls), WORKERS);
    env_teardown(&e);   /* join: every release has happened */
    int64_t t1 = test_now_ns();
    long bad_runs = 0, bad_rel = 0, first_bad = -1;
    for (long i = 0; i < total; i++) {
        uint32_t want_rel = (i & 1) ? 1 : 0;
        if (atomic_load_explicit(&stress_runs[i], memory_order_relaxed) != 1) {
            bad_runs++;
            if (first_bad < 0) {
                first_bad = i;
            }
        }
        if (atomic_load_explicit(&stress_releases[i], memory_order_relaxed) !=
            want_rel) {
            bad_rel++;
        }
    }
    printf("    %ld tasks: submitted in %.2f s, all done in %.2f s "
           "(%.2f M tasks/s)\n", total, (double)(t_sub - t0) / 1e9,
           (double)(t1 - t0) / 1e9, (double)total / ((double)(t1 - t0) / 1e3));
    ASSERT_EQ(bad_runs, 0);
    ASSERT_EQ(first_bad, -1);
    ASSERT_EQ(bad_rel, 0);
    free(tasks);
    free((void *)stress_runs);
    free((void *)stress_releases);
}

/* Producers that pause all the time, so workers keep parking and being
 * woken: a lost wakeup shows up as tasks that never run (WAIT_FOR times
 * out) rather than as a wrong count. */
static void *
bursty_producer_main(void *arg)
{
    producer *pr = arg;
    unsigned seed = (unsigned)pr->begin;
    for (long i = pr->begin; i < pr->end; i++) {
        if (np_pool_submit(pr->pool, &pr->tasks[i].base) != NP_OK) {
            atomic_fetch_add(&pr->errors, 1);
        }
        unsigned r = rand_r(&seed) % 64;
        if (r == 0) {
            test_sleep_ms(0.05);
        }
        else if (r < 8) {
            sched_yield();
        }
    }
    return NULL;
}

TEST(pool_stress_park_and_wake)
{
    enum { PRODUCERS = 3, WORKERS = 3 };
    long total = test_scaled(200000, 20000);
    pool_env e;
    ASSERT_TRUE(env_init(&e, WORKERS));
    stress_task *tasks = calloc((size_t)total, sizeof *tasks);
    stress_runs = calloc((size_t)total, sizeof *stress_runs);
    stress_releases = calloc((size_t)total, sizeof *stress_releases);
    ASSERT_TRUE(tasks && stress_runs && stress_releases);
    atomic_store(&stress_done, 0);
    for (long i = 0; i < total; i++) {
        tasks[i].base.run = stress_run;
        tasks[i].base.release = stress_release;
        tasks[i].idx = (uint32_t)i;
    }
    producer pr[PRODUCERS];
    pthread_t th[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        pr[i].pool = e.pool;
        pr[i].tasks = tasks;
        pr[i].begin = total * i / PRODUCERS;
        pr[i].end = total * (i + 1) / PRODUCERS;
        atomic_store(&pr[i].errors, 0);
        ASSERT_EQ(pthread_create(&th[i], NULL, bursty_producer_main, &pr[i]),
                  0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(atomic_load(&pr[i].errors), 0);
    }
    ASSERT_TRUE(WAIT_FOR(atomic_load(&stress_done) == total, 60));
    long begins = 0;
    for (int i = 0; i < env_nworkers(&e); i++) {
        begins += atomic_load(&e.workers[i]->idle_begin);
    }
    TEST_LOG("idle_begin calls: %ld", begins);
    ASSERT_GT(begins, 0);
    np_pool_stats s = stats(e.pool);
    ASSERT_UEQ(s.submitted, (uint64_t)total);
    ASSERT_UEQ(s.started, (uint64_t)total);
    env_teardown(&e);
    for (long i = 0; i < total; i++) {
        ASSERT_EQ(atomic_load(&stress_runs[i]), 1);
        ASSERT_EQ(atomic_load(&stress_releases[i]), 1);
    }
    free(tasks);
    free((void *)stress_runs);
    free((void *)stress_releases);
}

static const test_case TESTS[] = {
    TEST_ENTRY(pool_new_rejects_bad_arguments),
    TEST_ENTRY(pool_submit_runs_task),
    TEST_ENTRY(pool_task_without_release_hook),
    TEST_ENTRY(pool_fifo_order_single_worker),
    TEST_ENTRY(pool_every_task_runs_exactly_once),
    TEST_ENTRY(pool_idle_workers_park_without_spinning),
    TEST_ENTRY(pool_submit_wakes_idle_worker_instead_of_spawning),
    TEST_ENTRY(pool_max_workers_cap_respected),
    TEST_ENTRY(pool_idle_hooks_balanced_per_worker),
    TEST_ENTRY(pool_close_take_queued_returns_fifo_and_workers_exit),
    TEST_ENTRY(pool_close_drain_runs_all_queued_then_workers_exit),
    TEST_ENTRY(pool_close_wakes_idle_workers_which_exit),
    TEST_ENTRY(pool_submit_after_close_returns_eclosed),
    TEST_ENTRY(pool_spawn_failure_without_threads_returns_error),
    TEST_ENTRY(pool_spawn_failure_with_existing_worker_is_not_an_error),
    TEST_ENTRY(pool_spawn_failure_does_not_lose_concurrent_submit),
    TEST_ENTRY(pool_spawn_failure_after_thread_came_in),
    TEST_ENTRY(pool_spawn_failure_before_thread_came_in),
    TEST_ENTRY(pool_close_take_queued_while_spawning),
    TEST_ENTRY(pool_join_waits_for_pending_spawn_that_succeeds),
    TEST_ENTRY(pool_join_waits_for_pending_spawn_that_fails),
    TEST_ENTRY(pool_spawn_failure_racing_close_take_queued),
    TEST_ENTRY(pool_spawn_failure_after_worker_ran_task_and_exited),
    TEST_ENTRY(pool_release_called_once_after_run_and_may_free),
    TEST_ENTRY(pool_submit_from_run_and_release),
    TEST_ENTRY(pool_fork_child_gets_orphans_and_stays_usable),
    TEST_ENTRY(pool_fork_idle_pool),
    TEST_ENTRY(pool_fork_from_task_keeps_forking_worker),
    TEST_ENTRY(pool_fork_orphans_exclude_finished_tasks),
    TEST_ENTRY(pool_fork_from_idle_begin_hook),
    TEST_ENTRY(pool_registry_many_pools_and_fork),
    TEST_ENTRY(pool_stress_4_producers_4_workers),
    TEST_ENTRY(pool_stress_park_and_wake),
};

int
main(int argc, char **argv)
{
    return TEST_MAIN(argc, argv, TESTS);
}

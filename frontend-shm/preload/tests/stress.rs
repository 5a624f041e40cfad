//! Threads doing file I/O on btfuse while another thread forks over and over, each child
//! doing I/O of its own: no deadlock (the run is bounded, and killed by its pid when late)
//! and every byte read back is the byte written.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, artifact, compile_c};

const STRESS_PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#define THREADS 8
#define ROUNDS 2000
#define FORKS 100
static const char *dir;
static int failures;
static int working = THREADS;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void failed(const char *what) {
    pthread_mutex_lock(&lock);
    failures++;
    fprintf(stderr, "%s\n", what);
    pthread_mutex_unlock(&lock);
}
/* Writes a pattern unique to (who, round), reads it back through a second descriptor. */
static int round_trip(const char *who, int round) {
    char path[512], data[256], back[256];
    snprintf(path, sizeof path, "%s/%s", dir, who);
    int len = snprintf(data, sizeof data, "%s round %d %0*d", who, round, round % 97 + 1, round);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0) return 0;
    int ok = write(fd, data, len) == len;
    int reader = open(path, O_RDONLY);
    memset(back, 0, sizeof back);
    ok = ok && reader >= 0 && read(reader, back, sizeof back) == len && !memcmp(back, data, len);
    ok = ok && lseek(fd, 0, SEEK_SET) == 0 && pread(fd, back, len, 0) == len;
    close(reader);
    close(fd);
    return ok;
}
static void *worker(void *arg) {
    char who[32];
    snprintf(who, sizeof who, "thread%ld", (long)arg);
    for (int i = 0; i < ROUNDS; i++)
        if (!round_trip(who, i)) { failed(who); break; }
    __atomic_sub_fetch(&working, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static void *forker(void *arg) {
    (void)arg;
    /* Forks for as long as the workers run, and at least FORKS times. */
    for (int i = 0; i < FORKS || __atomic_load_n(&working, __ATOMIC_SEQ_CST) > 0; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            char who[32];
            snprintf(who, sizeof who, "child%d", i % 50);
            int ok = 1;
            for (int j = 0; j < 5; j++) ok = ok && round_trip(who, j);
            _exit(ok ? 0 : 1);
        }
        int status = -1;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
            failed("child");
    }
    return NULL;
}
int main(void) {
    dir = getenv("D");
    pthread_t threads[THREADS + 1];
    for (long i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, worker, (void *)i);
    pthread_create(&threads[THREADS], NULL, forker, NULL);
    for (int i = 0; i <= THREADS; i++) pthread_join(threads[i], NULL);
    printf("failures %d\n", failures);
    return failures != 0;
}
"#;

#[test]
fn threads_doing_io_while_another_forks() {
    let (_build, binary) = compile_c(STRESS_PROGRAM, &["-O1", "-pthread"]);
    let server = Server::start();
    btfuse_ring_client::Client::connect(&server.socket)
        .unwrap()
        .create_dir_mode("/stress", 0o755)
        .unwrap();
    let mut child = Command::new(&binary)
        .env("D", "/btfuse/stress")
        .env("LD_PRELOAD", artifact("libbtfuse_preload.so"))
        .env(btfuse_preload::SOCKET_VAR, &server.socket)
        .env(btfuse_preload::PREFIX_VAR, "/btfuse")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // Kills the program by its pid (its forked children exit with it or are
            // orphaned idle on a dead parent's waitpid).
            let _ = child.kill();
            let _ = child.wait();
            panic!("the program deadlocked: threads doing I/O while another forks");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, "failures 0\n", "{stderr}");
    // The server holds what the threads wrote last.
    let client = btfuse_ring_client::Client::connect(&server.socket).unwrap();
    let last = client.read("/stress/thread3").unwrap();
    assert!(last.starts_with(b"thread3 round 1999 "), "{last:?}");
}

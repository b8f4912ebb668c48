//! The origin binary as an operator starts it: flags that shape the process itself.

mod support;

use support::process::OriginProcess;

/// The runtime's worker threads, by the name tokio gives them (`/proc/PID/task/*/comm`).
fn runtime_workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
}

#[test]
fn workers_sets_the_runtimes_worker_threads() {
    for n in [1, 3] {
        let origin = OriginProcess::start(&["--workers", &n.to_string()]);
        let pid = origin.pid().expect("running");
        assert_eq!(runtime_workers(pid), n, "--workers {n}");
    }
}

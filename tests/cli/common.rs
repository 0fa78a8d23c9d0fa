//! Running the `adag` binary from the integration tests as a user would: from the repository
//! root (so committed fixture paths resolve), with no SLURM variables leaking in from the
//! environment that runs the tests (they would shard `adag trace`).
#![allow(dead_code)] // not every helper serves every module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `adag ARGS` with extra environment variables.
pub fn adag_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adag"));
    c.args(args).current_dir(root());
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
    ] {
        c.env_remove(k);
    }
    c.envs(env.iter().copied());
    c.output().expect("run adag")
}

/// `adag ARGS`.
pub fn adag(args: &[&str]) -> Output {
    adag_env(args, &[])
}

/// Runs adag with extra environment variables, asserts success, returns stdout.
pub fn ok_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = adag_env(args, env);
    assert!(
        out.status.success(),
        "adag {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs adag, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    ok_env(args, &[])
}

/// Runs a command that must fail cleanly: exit status 2, no panic; returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = adag(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(2),
        "adag {args:?}: expected a clean error, got:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A child process (a server) killed when the test ends, pass or fail.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `adag serve-llm ARGS` (pass `--port 0` for a free port) and returns the server,
/// killed when dropped, with the base URL its first stderr line announces.
pub fn serve_llm(args: &[&str]) -> (KillOnDrop, String) {
    let mut server = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_adag"))
            .arg("serve-llm")
            .args(args)
            .current_dir(root())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start adag serve-llm"),
    );
    let stderr = server.0.stderr.take().expect("piped stderr");
    let banner = BufReader::new(stderr)
        .lines()
        .next()
        .expect("a banner line")
        .expect("readable stderr");
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {banner:?}"))
        .trim_end_matches([',', ';'])
        .to_string();
    (server, base)
}

//! Running the two sides: a child process measured for wall time and peak resident memory,
//! churn's `--json` output read back into its own types, and whether a Python has the other
//! tool.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::de::DeserializeOwned;

use crate::{BenchError, Result};

/// One finished child process.
pub(crate) struct Run {
    pub wall_seconds: f64,
    pub peak_rss_mib: f64,
    pub stdout: String,
}

impl Run {
    /// The child's standard output as the JSON of `T`.
    pub fn json<T: DeserializeOwned>(&self, what: &'static str) -> Result<T> {
        serde_json::from_str(&self.stdout).map_err(|source| BenchError::Output { what, source })
    }
}

/// Reads every file at or below `path` once and drops the bytes, so that the side timed next
/// finds its input in the page cache whichever side ran first. Without it the first reader of
/// the store's CSV paid for the disk: `churn ingest` of the 1M store's CSV took 11.2 / 12.2 s
/// from a cold cache against 10.7 / 10.8 s warm, DuckDB's COPY 11.3 s against 8.8 s, and
/// `churn bench all` timed churn first.
pub(crate) fn read_through(path: &std::path::Path) -> Result<()> {
    let io = |e| BenchError::io(path, e);
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io)? {
            read_through(&entry.map_err(io)?.path())?;
        }
        return Ok(());
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut buffer = vec![0u8; 1 << 20];
    while file.read(&mut buffer).map_err(io)? > 0 {}
    Ok(())
}

/// Runs a command to completion (stderr passed through) and measures its wall time and peak
/// resident memory; fails unless it exits with 0.
pub(crate) fn measure(cmd: &mut Command) -> Result<Run> {
    let command = format!("{cmd:?}");
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| BenchError::Start {
            command: command.clone(),
            source,
        })?;
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)
            .map_err(|source| BenchError::Wait {
                command: command.clone(),
                source,
            })?;
    }
    let pid = child.id() as libc::pid_t;
    let (status, peak_rss_mib) = wait_measured(pid, &command)?;
    let wall_seconds = started.elapsed().as_secs_f64();
    if status != 0 {
        return Err(BenchError::Failed {
            command,
            status,
            stdout,
        });
    }
    Ok(Run {
        wall_seconds,
        peak_rss_mib,
        stdout,
    })
}

/// Reaps child `pid`: 0 when it exited with 0 (otherwise its raw wait status), and its peak
/// resident memory in MiB.
pub(crate) fn wait_measured(pid: libc::pid_t, command: &str) -> Result<(i32, f64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child we spawned and reaps it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc < 0 {
        return Err(BenchError::Wait {
            command: command.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    let succeeded = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    // ru_maxrss is in KiB on Linux.
    let peak_rss_mib = usage.ru_maxrss as f64 / 1024.0;
    Ok((if succeeded { 0 } else { status.max(1) }, peak_rss_mib))
}

/// Whether `python` starts and imports every one of `modules`.
pub fn python_has(python: &str, modules: &[&str]) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_lacking_one_module_does_not_have_them_all() {
        // `sys` and `json` ship with every Python; the third name does not exist.
        let python = "python3";
        if !python_has(python, &["sys"]) {
            return; // no Python on this machine: nothing to tell apart
        }
        assert!(python_has(python, &["sys", "json"]));
        assert!(!python_has(python, &["sys", "no_such_module_churn_bench"]));
        assert!(!python_has("no-such-python-churn-bench", &["sys"]));
    }

    #[test]
    fn measure_reports_the_output_and_refuses_a_failing_child() {
        let run = measure(Command::new("sh").args(["-c", "echo 42"])).unwrap();
        assert_eq!(run.stdout, "42\n");
        assert!(run.wall_seconds > 0.0 && run.peak_rss_mib > 0.0);
        let err = measure(Command::new("sh").args(["-c", "echo half; exit 3"]))
            .err()
            .unwrap();
        assert!(
            matches!(&err, BenchError::Failed { stdout, .. } if stdout == "half\n"),
            "{err}"
        );
    }

    #[test]
    fn reading_through_a_folder_reads_its_nested_files_and_names_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/rows.csv"), vec![b'x'; 3 << 20]).unwrap();
        std::fs::write(dir.path().join("top.txt"), "hi").unwrap();
        read_through(dir.path()).unwrap();
        let missing = dir.path().join("gone");
        let err = read_through(&missing).unwrap_err().to_string();
        assert!(err.contains("gone"), "{err}");
    }
}

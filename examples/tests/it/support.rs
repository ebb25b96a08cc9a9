//! Finding the example binaries and running them with a deadline.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Generous: the machine may be busy, and an example that hangs must still fail the test.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The example binary `name`, as `cargo test` built it next to this test binary.
///
/// This test runs in `target/<profile>/deps/`; cargo puts examples in
/// `target/<profile>/examples/`. Panics with what to do if it is missing or older than its
/// source (cargo builds examples for a plain `cargo test`, not when targets are filtered).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary runs in target/<profile>/deps");
    let bin = profile_dir
        .join("examples")
        .join(name)
        .with_extension(std::env::consts::EXE_EXTENSION);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("{name}.rs"));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified());
    let written = std::fs::metadata(&source)
        .and_then(|m| m.modified())
        .expect("the example's source");
    match built {
        Ok(built) if built >= written => bin,
        _ => panic!(
            "{} is missing or older than {}: run `cargo test` without target filters, or \
             `cargo build -p visit-journal-examples --examples` first",
            bin.display(),
            source.display()
        ),
    }
}

/// What a finished example did.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The exit code; panics (with the output) if the example was killed by a signal.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:#?}"))
    }

    /// Asserts that the example exited 0, showing its output if not.
    pub fn assert_success(&self) -> &Output {
        assert_eq!(self.code(), 0, "{self:#?}");
        self
    }

    /// Asserts that stdout contains every one of `parts`.
    pub fn assert_stdout_has(&self, parts: &[&str]) -> &Output {
        for part in parts {
            assert!(
                self.stdout.contains(part),
                "stdout lacks {part:?}:\n{}\nstderr:\n{}",
                self.stdout,
                self.stderr
            );
        }
        self
    }
}

/// Runs example `name` with `args` and waits for it, for at most [`DEADLINE`].
pub fn run(name: &str, args: &[&str]) -> Output {
    let child = Command::new(example(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
    finish(child)
}

/// A path as an argument for [`run`]; temporary paths are UTF-8.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Collects a started child's output and exit status, killing it after [`DEADLINE`].
pub fn finish(mut child: Child) -> Output {
    // Read both pipes on threads, so that a chatty child never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait(&mut child);
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Waits for a child to exit; kills it and panics after [`DEADLINE`].
pub fn wait(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the example") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the example ran longer than {DEADLINE:?} and was killed");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            pipe.read_to_string(&mut text)
                .expect("the example prints UTF-8");
        }
        text
    })
}

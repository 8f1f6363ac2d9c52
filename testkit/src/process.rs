//! One node process: spawned, signalled, reaped. Every live child's pid is also in a
//! process-wide registry, so a signal handler can kill every node this process started
//! (`kill_all_started`) without taking any `Cluster`'s lock.

use std::collections::BTreeSet;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often a stopping process is checked for having exited.
const EXIT_POLL: Duration = Duration::from_millis(20);

static LIVE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn live<T>(f: impl FnOnce(&mut BTreeSet<u32>) -> T) -> T {
    let mut g = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut g)
}

/// SIGKILLs every node process started through this crate that has not been reaped yet.
/// Safe to call from a signal handler task or twice.
pub fn kill_all_started() {
    for pid in live(std::mem::take) {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// A running (or stopped with SIGSTOP) child.
pub(crate) struct Proc {
    child: Child,
    pub(crate) paused: bool,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command) -> anyhow::Result<Proc> {
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
        live(|l| l.insert(child.id()));
        Ok(Proc {
            child,
            paused: false,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn signal(&self, sig: Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid()).context("pid out of range")?;
        kill(Pid::from_raw(pid), sig).with_context(|| format!("{sig} to {pid}"))?;
        Ok(())
    }

    /// SIGKILL (works on a paused process too) and reap.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        live(|l| l.remove(&self.child.id()));
    }

    /// The exit status if the process has exited (then it is reaped).
    pub(crate) fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        if status.is_some() {
            live(|l| l.remove(&self.child.id()));
        }
        Ok(status)
    }

    /// SIGTERM (and SIGCONT, so a paused process can act on it), then waits up to
    /// `timeout` for the exit. A process still alive then is killed and an error returned.
    pub(crate) async fn stop(mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        if self.paused {
            self.signal(Signal::SIGCONT)?;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                let pid = self.pid();
                self.kill();
                bail!("process {pid} did not exit within {timeout:?} of SIGTERM; killed");
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }
}

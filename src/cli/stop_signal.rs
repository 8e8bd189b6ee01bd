//! Ctrl-C and SIGTERM during training: the first asks for a clean stop, and says so at once; a
//! second ends the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use glowflow::GlowError;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// What the first signal prints, as soon as it arrives.
const STOP_NOTICE: &str = "stopping at the end of this step, after a checkpoint; \
     Ctrl-C again stops at once (the run then resumes from its last checkpoint)";

/// A flag set by Ctrl-C or SIGTERM, so training can checkpoint and stop cleanly at the end of the
/// step. The first signal also prints [`STOP_NOTICE`] at once, from a thread of its own (a step on
/// a slow device can take minutes to end). A second Ctrl-C or SIGTERM ends the process at once, as
/// the signal's default action does; the run then resumes from its last checkpoint, as after any
/// kill. Dropping it removes the notice's thread; the flag's handlers stay for the process.
pub(crate) struct StopOnSignal {
    flag: Arc<AtomicBool>,
    signals: Handle,
    notice: Option<JoinHandle<()>>,
}

impl StopOnSignal {
    /// Installs the handlers; `say` prints the notice (through a progress bar, or to stderr).
    pub(crate) fn install(say: impl Fn(&str) + Send + 'static) -> Result<Self, GlowError> {
        let cannot = |e: std::io::Error| {
            GlowError::Config(format!("cannot install the signal handler: {e}"))
        };
        let flag = Arc::new(AtomicBool::new(false));
        // The handlers of a signal run in the order they were installed. The notice's comes first,
        // so that a set flag always means the notice's thread saw the signal; then the one that
        // ends the process where an earlier signal had set the flag; then the flag's.
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(cannot)?;
        let handle = signals.handle();
        for signal in [SIGINT, SIGTERM] {
            signal_hook::flag::register_conditional_default(signal, flag.clone())
                .map_err(cannot)?;
            signal_hook::flag::register(signal, flag.clone()).map_err(cannot)?;
        }
        let notice = std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                say(STOP_NOTICE);
            }
        });
        Ok(StopOnSignal {
            flag,
            signals: handle,
            notice: Some(notice),
        })
    }

    /// The flag training checks at the end of every step.
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.flag
    }
}

impl Drop for StopOnSignal {
    /// Waits for the notice where a signal came (so it is printed before the run's last lines),
    /// else ends its thread.
    fn drop(&mut self) {
        if !self.flag.load(Ordering::SeqCst) {
            self.signals.close();
        }
        if let Some(notice) = self.notice.take() {
            // The thread only prints; a panic there has been reported already.
            let _ = notice.join();
        }
    }
}

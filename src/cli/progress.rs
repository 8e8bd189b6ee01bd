//! Training progress on the terminal: a bar with ETA and images/s, or plain lines when stderr is
//! not a terminal.

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};

use glowflow::train::eval::TestFigures;
use glowflow::train::trainer::TrainEvent;
use indicatif::ProgressBar;

/// Training progress: a bar with ETA and images/s on a terminal, plain lines otherwise.
pub(crate) struct Progress {
    /// The bar, once training has started on a terminal; shared with [`Progress::printer`].
    bar: Arc<OnceLock<ProgressBar>>,
}

/// Prints a line above the bar where there is one, else to stderr.
fn say(bar: Option<&ProgressBar>, line: &str) {
    match bar {
        Some(bar) => bar.println(line),
        None => eprintln!("{line}"),
    }
}

/// What a class-conditional model's test bits/dim is followed by: that it was given each image's
/// label, the marginal figure, Bayes' error and the classifier head's figures (empty for an
/// unconditional model).
pub(crate) fn class_note(figures: &TestFigures) -> String {
    let Some(classes) = figures.classes else {
        return String::new();
    };
    let head = figures
        .head
        .map(|head| {
            format!(
                ", classifier head {:.3} bits, {:.1}% error",
                head.bits,
                100.0 * head.error
            )
        })
        .unwrap_or_default();
    format!(
        " (given the label; marginal {:.4} bits/dim, Bayes error {:.1}%{head})",
        classes.marginal_bpd,
        100.0 * classes.error
    )
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            bar: Arc::new(OnceLock::new()),
        }
    }

    /// Prints a line from another thread, as [`TrainEvent::Note`] does.
    pub(crate) fn printer(&self) -> impl Fn(&str) + Send + 'static {
        let bar = self.bar.clone();
        move |line| say(bar.get(), line)
    }

    pub(crate) fn show(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::Started { step, total } => {
                if std::io::stderr().is_terminal() {
                    let bar = ProgressBar::new(total).with_position(step);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {pos}/{len} steps  ETA {eta}  {msg}",
                        )
                        .expect("a valid template"),
                    );
                    // Started comes once per run.
                    let _ = self.bar.set(bar);
                } else {
                    eprintln!("training from step {step} to {total}");
                }
            }
            TrainEvent::Metrics(row) => {
                let cell = |v: Option<f64>, digits: usize| {
                    v.map(|x| format!("{x:.digits$}"))
                        .unwrap_or_else(|| "-".into())
                };
                let head = match (row.train_class_bits, row.train_class_error) {
                    (Some(bits), Some(error)) => format!(
                        ", classifier head {bits:.3} bits, {:.1}% error",
                        100.0 * error
                    ),
                    _ => String::new(),
                };
                let test = row.test().map(|t| class_note(&t)).unwrap_or_default();
                let line = format!(
                    "step {}: train {} bits/dim{head}, test {}{test}, lr {}, grad norm {}, {} \
                     images/s",
                    row.step,
                    cell(row.train_bpd, 4),
                    cell(row.test_bpd, 4),
                    row.lr
                        .map(|x| format!("{x:.2e}"))
                        .unwrap_or_else(|| "-".into()),
                    cell(row.grad_norm, 2),
                    cell(row.images_per_s, 1)
                );
                match self.bar.get() {
                    Some(bar) => {
                        bar.set_position(row.step);
                        bar.set_message(format!(
                            "{} bits/dim  {} img/s",
                            cell(row.train_bpd, 3),
                            cell(row.images_per_s, 1)
                        ));
                        if row.test_bpd.is_some() {
                            bar.println(line);
                        }
                    }
                    None => eprintln!("{line}"),
                }
            }
            TrainEvent::Note(note) => say(self.bar.get(), &note),
        }
    }

    pub(crate) fn finish(self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

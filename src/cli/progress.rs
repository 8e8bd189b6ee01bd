//! Training progress on the terminal: a bar with ETA and images/s, or plain lines when stderr is
//! not a terminal.

use std::io::IsTerminal;

use glowflow::train::trainer::TrainEvent;

/// Training progress: a bar with ETA and images/s on a terminal, plain lines otherwise.
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress { bar: None }
    }

    pub(crate) fn show(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::Started { step, total } => {
                if std::io::stderr().is_terminal() {
                    let bar = indicatif::ProgressBar::new(total).with_position(step);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {pos}/{len} steps  ETA {eta}  {msg}",
                        )
                        .expect("a valid template"),
                    );
                    self.bar = Some(bar);
                } else {
                    eprintln!("training from step {step} to {total}");
                }
            }
            TrainEvent::Metrics(row) => {
                let cell = |v: Option<f64>, digits: usize| {
                    v.map(|x| format!("{x:.digits$}"))
                        .unwrap_or_else(|| "-".into())
                };
                let line = format!(
                    "step {}: train {} bits/dim, test {}, lr {}, grad norm {}, {} images/s",
                    row.step,
                    cell(row.train_bpd, 4),
                    cell(row.test_bpd, 4),
                    row.lr
                        .map(|x| format!("{x:.2e}"))
                        .unwrap_or_else(|| "-".into()),
                    cell(row.grad_norm, 2),
                    cell(row.images_per_s, 1)
                );
                match &self.bar {
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
            TrainEvent::Note(note) => match &self.bar {
                Some(bar) => bar.println(note),
                None => eprintln!("{note}"),
            },
        }
    }

    pub(crate) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

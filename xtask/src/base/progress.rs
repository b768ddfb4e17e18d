//! Progress on stderr: a spinner on a terminal, plain lines in logs.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new() -> Progress {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}").expect("valid template"));
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress { bar }
    }

    /// What is happening now (shown on a terminal only).
    pub fn working(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    /// A finished step, kept on screen and in logs.
    pub fn done(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line.as_ref());
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The bar on screen now, if any: lines printed meanwhile go above it instead of through it.
static ACTIVE: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

/// One line on stderr, kept above a progress bar that is on screen.
pub fn say(line: impl AsRef<str>) {
    let active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    match active.as_ref() {
        Some(bar) if !bar.is_hidden() => bar.println(line.as_ref()),
        _ => eprintln!("{}", line.as_ref()),
    }
}

/// Done of total over a whole run, and per target when there are several, drawn on a terminal
/// only: in logs (stderr not a terminal) and for JSON output there are just the lines.
pub struct Tally {
    bar: ProgressBar,
    /// Per target: its label, done, and total.
    targets: std::sync::Mutex<Vec<(String, u64, u64)>>,
}

impl Tally {
    pub fn new(verb: &str, targets: Vec<(String, u64)>, draw: bool) -> Tally {
        let total = targets.iter().map(|(_, n)| n).sum();
        let bar = if draw { ProgressBar::new(total) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template(&format!("{verb} [{{bar:30}}] {{pos}}/{{len}} {{msg}} {{elapsed:.dim}}"))
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        let tally = Tally {
            bar,
            targets: std::sync::Mutex::new(targets.into_iter().map(|(label, n)| (label, 0, n)).collect()),
        };
        tally.show_targets();
        tally
    }

    /// One more done, in target `target`.
    pub fn tick(&self, target: usize) {
        if let Some(entry) = self.targets.lock().unwrap_or_else(|e| e.into_inner()).get_mut(target) {
            entry.1 += 1;
        }
        self.bar.inc(1);
        self.show_targets();
    }

    fn show_targets(&self) {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if targets.len() > 1 {
            let each: Vec<String> =
                targets.iter().map(|(label, done, total)| format!("{label} {done}/{total}")).collect();
            self.bar.set_message(format!("({})", each.join(", ")));
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

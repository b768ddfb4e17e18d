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

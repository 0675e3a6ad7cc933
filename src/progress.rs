//! Progress of the commands that walk the whole store: a bar on a terminal, nothing when
//! standard error is piped or redirected (so scripts and logs stay clean).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress(ProgressBar);

const TEMPLATE: &str = "{spinner} {human_pos} {msg} ({elapsed})";

impl Progress {
    /// A counter of `what` (e.g. "members exported"), drawn on standard error if it is a
    /// terminal.
    pub fn new(what: &str) -> Progress {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(TEMPLATE).expect("a valid progress template"),
            );
            bar.set_message(what.to_owned());
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress(bar)
    }

    pub fn set(&self, done: u64) {
        self.0.set_position(done);
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_valid() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }
}

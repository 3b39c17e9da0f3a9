//! What a waiting user sees: a spinner on a terminal, a line whenever the position
//! changes otherwise, and a line for each outage of the store and its end.

use std::io::IsTerminal;
use std::time::Duration;

/// How waiting is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Display {
    /// A line whenever the position changes: for pipes, logs and terminals that cannot
    /// move the cursor.
    Lines,
    /// A spinner redrawn in place; ASCII where the locale is not UTF-8.
    Spinner { ascii: bool },
}

/// The display for stderr: a spinner needs a terminal that can redraw a line (not
/// `TERM=dumb`, which indicatif leaves blank) and, for its braille, a UTF-8 locale.
/// `locale` is the first of LC_ALL, LC_CTYPE and LANG that is set.
fn display_for(terminal: bool, term: Option<&str>, locale: Option<&str>) -> Display {
    let can_redraw = terminal && !matches!(term, None | Some("" | "dumb"));
    if !can_redraw {
        return Display::Lines;
    }
    let utf8 = locale.is_some_and(|locale| {
        let locale = locale.to_ascii_lowercase();
        locale.contains("utf-8") || locale.contains("utf8")
    });
    Display::Spinner { ascii: !utf8 }
}

fn stderr_display() -> Display {
    let term = std::env::var("TERM").ok();
    let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()));
    display_for(
        std::io::stderr().is_terminal(),
        term.as_deref(),
        locale.as_deref(),
    )
}

pub struct Progress {
    what: String,
    spinner: Option<indicatif::ProgressBar>,
    last_line: Option<(usize, usize)>,
    /// What went wrong at the last look, while the store does not answer.
    outage: Option<String>,
}

impl Progress {
    /// `what` names the request, e.g. "2 GPU(s)".
    pub fn new(what: String) -> Progress {
        let spinner = match stderr_display() {
            Display::Lines => None,
            Display::Spinner { ascii } => {
                let spinner = indicatif::ProgressBar::new_spinner();
                if ascii {
                    let style = indicatif::ProgressStyle::default_spinner().tick_chars("|/-\\ ");
                    spinner.set_style(style);
                }
                spinner.enable_steady_tick(Duration::from_millis(120));
                Some(spinner)
            }
        };
        Progress {
            what,
            spinner,
            last_line: None,
            outage: None,
        }
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn show(&mut self, position: usize, queued: usize, free: usize, total: usize) {
        if self.outage.take().is_some() {
            self.line("the store answers again; still waiting in line");
            self.last_line = None;
        }
        let message = format!(
            "waiting for {}: position {} of {queued} in the queue, {free} of {total} GPUs free \
             (Ctrl-C to give up)",
            self.what,
            position + 1
        );
        match &self.spinner {
            Some(spinner) => spinner.set_message(message),
            None if self.last_line != Some((position, queued)) => {
                say!("canhazgpu: {message}");
                self.last_line = Some((position, queued));
            }
            None => {}
        }
    }

    /// The store could not be asked; says so once per cause, not at every retry.
    pub fn outage(&mut self, why: &str, until: &str) {
        if self.outage.as_deref() != Some(why) {
            self.line(&format!("{why}; still waiting, and trying again {until}"));
            self.outage = Some(why.to_string());
        }
    }

    /// Why the last look failed, if the store is still not answering.
    pub fn current_outage(&self) -> Option<&str> {
        self.outage.as_deref()
    }

    fn line(&self, text: &str) {
        match &self.spinner {
            Some(spinner) => spinner.println(format!("canhazgpu: {text}")),
            None => say!("canhazgpu: {text}"),
        }
    }

    pub fn finish(&self) {
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinners_only_where_the_terminal_can_draw_them() {
        let utf8 = Some("en_US.UTF-8");
        assert_eq!(display_for(false, Some("xterm"), utf8), Display::Lines);
        assert_eq!(display_for(true, Some("dumb"), utf8), Display::Lines);
        assert_eq!(display_for(true, None, utf8), Display::Lines);
        assert_eq!(display_for(true, Some(""), utf8), Display::Lines);
        let fancy = Display::Spinner { ascii: false };
        assert_eq!(display_for(true, Some("xterm-256color"), utf8), fancy);
        assert_eq!(display_for(true, Some("screen"), Some("C.utf8")), fancy);
        let ascii = Display::Spinner { ascii: true };
        assert_eq!(display_for(true, Some("xterm"), Some("C")), ascii);
        assert_eq!(display_for(true, Some("xterm"), Some("POSIX")), ascii);
        assert_eq!(display_for(true, Some("xterm"), None), ascii);
    }
}

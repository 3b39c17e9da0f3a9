//! What a waiting user sees: a spinner on a terminal, a line whenever the position
//! changes otherwise, and a line for each outage of the store and its end.

use std::io::IsTerminal;
use std::time::Duration;

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
        let spinner = std::io::stderr().is_terminal().then(|| {
            let spinner = indicatif::ProgressBar::new_spinner();
            spinner.enable_steady_tick(Duration::from_millis(120));
            spinner
        });
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
                eprintln!("canhazgpu: {message}");
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
            None => eprintln!("canhazgpu: {text}"),
        }
    }

    pub fn finish(&self) {
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        }
    }
}

//! Command output on stdout, through one function that returns an error instead of
//! panicking as `println!` does: a reader that has gone (`canhazgpu status | head -1`)
//! is a quiet exit, decided in `main`, and a command whose output is a promise (the
//! export line of `reserve`) can undo what it did.

use std::io::{ErrorKind, Write};

use serde::Serialize;

use crate::error::{Error, Result};

/// Writes one line to stderr; see `say!`, which is how it is called.
pub fn say(message: std::fmt::Arguments) {
    let mut stderr = std::io::stderr().lock();
    // Nothing to tell about a stderr that cannot be written, and nowhere to tell it.
    let _ = writeln!(stderr, "{message}");
}

/// Writes `text` to stdout and flushes it.
pub fn print(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| stdout_error(&e))
}

/// [`print`] with a newline after `line`.
pub fn println(line: &str) -> Result<()> {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    print(&text)
}

/// `value` as JSON on one line, or indented with `pretty`, then a newline. `what` names
/// it for the message should it not encode ("the status").
pub fn print_json(value: &impl Serialize, what: &str, pretty: bool) -> Result<()> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .map_err(|e| Error::failure(format!("cannot encode {what} as JSON: {e}")))?;
    println(&text)
}

fn stdout_error(e: &std::io::Error) -> Error {
    if e.kind() == ErrorKind::BrokenPipe {
        Error::closed_stdout()
    } else {
        Error::failure(format!(
            "cannot write to standard output: {e}; check where it goes (a full disk?)"
        ))
    }
}

//! The one error type: a message for the user and the exit status it maps to.

use std::fmt;

/// Exit status for bad command-line usage, as clap uses.
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_FAILURE: i32 = 1;

#[derive(Debug)]
pub struct Error {
    pub message: String,
    pub exit_code: i32,
    /// The store holds something it cannot read; only a reinitialization gets past it.
    pub corrupt_store: bool,
    /// Stdout's reader has gone (a closed pipe); nobody is left to tell, so the command
    /// ends quietly.
    pub closed_stdout: bool,
    /// The store could not be reached or asked to wait (a timeout, a dropped connection,
    /// a server loading its data): trying again later may well succeed, so callers that
    /// have time left (a `--wait` waiter, a heartbeat) retry rather than give up.
    pub transient: bool,
    /// The store answered, but holds no pool.
    pub no_pool: bool,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn failure(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            exit_code: EXIT_FAILURE,
            corrupt_store: false,
            closed_stdout: false,
            transient: false,
            no_pool: false,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error {
            exit_code: EXIT_USAGE,
            ..Error::failure(message)
        }
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        Error {
            corrupt_store: true,
            ..Error::failure(message)
        }
    }

    /// Like ripgrep, a reader that stopped reading (`| head -1`) is not a failure of
    /// the command: exit 0, as if it had read everything.
    pub fn closed_stdout() -> Self {
        Error {
            exit_code: 0,
            closed_stdout: true,
            ..Error::failure("standard output was closed by its reader")
        }
    }

    /// A failure that may pass by itself; see [`Error::transient`](field@Error::transient).
    pub fn transient(message: impl Into<String>) -> Self {
        Error {
            transient: true,
            ..Error::failure(message)
        }
    }

    /// `store` says where we looked, so that a wrong --store or config is obvious.
    pub fn not_initialized(store: &str) -> Self {
        Error::no_pool(format!(
            "the GPU pool in the {store} is not initialized; an administrator must run \
             `canhazgpu admin --gpus N` first (or point --store / CANHAZGPU_STORE at the \
             right store)"
        ))
    }

    /// The store holds no pool; `message` says why that may be.
    pub fn no_pool(message: impl Into<String>) -> Self {
        Error {
            no_pool: true,
            ..Error::failure(message)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

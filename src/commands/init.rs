//! `canhazgpu init <shell>`: print the shell integration for `eval` or `source`.
//!
//! Runs at every shell start, so it reads no configuration and opens no store: the
//! script is the same on every host.

use std::io::Write;

use crate::cli::InitArgs;
use crate::error::{Error, Result};

pub fn init(args: &InitArgs) -> Result<i32> {
    let script = args.shell.init_script();
    std::io::stdout()
        .write_all(script.as_bytes())
        .map_err(|e| Error::failure(format!("cannot write the init script to stdout: {e}")))?;
    Ok(0)
}

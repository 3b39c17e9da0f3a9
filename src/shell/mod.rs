//! Shell integration: reservations that live in an interactive shell.
//!
//! `canhazgpu init <shell>` prints a script (kept in `shell/init.*`) that defines a shell
//! function `canhazgpu`. For `reserve` and `release` that function runs the binary with
//! the shell's PID and evaluates the shell code the binary prints; this module is what
//! the binary needs for that: which shells exist ([`Shell`]), how values are quoted and
//! variables set ([`emit`]), what the shell says about its own variables ([`attrs`]),
//! which variables describe a shell's reservation and how they are put back ([`vars`];
//! the GPU variables themselves are decided in [`crate::gpu_env`]), the process tree
//! ([`procs`]), the marker files that let a prompt notice a release without running
//! anything ([`lease`]), the prompt segment ([`prompt`]) and the bookkeeping that ties
//! them to the store ([`session`]).

pub mod attrs;
pub mod emit;
pub mod lease;
pub mod procs;
pub mod prompt;
pub mod session;
pub mod vars;

/// The shells `init` supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    /// The script `init` prints; the files are real shell scripts so that shellcheck and
    /// editors can read them.
    pub fn init_script(self) -> &'static str {
        match self {
            Shell::Bash => include_str!("../../shell/init.bash"),
            Shell::Zsh => include_str!("../../shell/init.zsh"),
            Shell::Fish => include_str!("../../shell/init.fish"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each script describes every managed variable to the binary (see `attrs`), so
    /// each carries the list; this keeps it the one `vars::managed` gives.
    #[test]
    fn the_scripts_know_every_managed_variable() {
        let managed: Vec<&str> = vars::managed().collect();
        for (shell, start, end) in [
            (Shell::Bash, "\n_canhazgpu_vars=(", ")"),
            (Shell::Zsh, "\ntypeset -ga _canhazgpu_vars=(", ")"),
            (Shell::Fish, "\nset -g _canhazgpu_vars ", "\n\n"),
        ] {
            let script = shell.init_script();
            assert_eq!(script.matches(start).count(), 1, "{shell:?}");
            let list = &script[script.find(start).unwrap() + start.len()..];
            let list = &list[..list.find(end).unwrap()];
            let words: Vec<&str> = list.split_whitespace().filter(|w| *w != "\\").collect();
            assert_eq!(words, managed, "{shell:?}");
        }
    }
}

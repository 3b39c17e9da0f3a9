//! Shell code: the one quoter per shell, and every statement that sets or unsets a
//! variable, for the function from `init` to evaluate and for the export line plain
//! `reserve` prints.
//!
//! Whatever reaches `eval` goes through here. Names are checked against the identifier
//! syntax every shell accepts, and every value is quoted, so no value (a restored
//! `CUDA_VISIBLE_DEVICES` may hold anything) can turn into code.

use super::Shell;

/// Shell code being assembled, one statement per line.
pub struct Script {
    shell: Shell,
    text: String,
}

impl Script {
    pub fn new(shell: Shell) -> Self {
        Script {
            shell,
            text: String::new(),
        }
    }

    fn push(&mut self, name: &str, line: impl FnOnce(String) -> String) {
        if valid_name(name) {
            self.text.push_str(&line(name.to_string()));
            self.text.push('\n');
        }
    }

    /// Sets and exports a global variable.
    pub fn export(&mut self, name: &str, value: &str) {
        let value = quote(self.shell, value);
        let shell = self.shell;
        self.push(name, |name| match shell {
            Shell::Bash | Shell::Zsh => format!("export {name}={value}"),
            Shell::Fish => format!("set -gx {name} {value}"),
        });
    }

    /// Sets a global shell variable that is not exported: a user's own variable as it
    /// was before a reservation.
    pub fn set_unexported(&mut self, name: &str, value: &str) {
        let value = quote(self.shell, value);
        let shell = self.shell;
        self.push(name, |name| match shell {
            // `-g`: the statements run inside a function, where a plain `declare` or
            // `typeset` would make a local.
            Shell::Bash => format!("declare -g +x {name}={value}"),
            Shell::Zsh => format!("typeset -g +x {name}={value}"),
            Shell::Fish => format!("set -gu {name} {value}"),
        });
    }

    /// Removes a global variable from the shell and its environment. In fish a
    /// universal variable of that name shows through again.
    pub fn unset(&mut self, name: &str) {
        let shell = self.shell;
        self.push(name, |name| match shell {
            Shell::Bash | Shell::Zsh => format!("unset {name}"),
            // `set -e` fails on a missing variable, which would become the status of
            // `source`; asking first keeps the evaluation quiet and successful.
            Shell::Fish => format!("set -q -g {name}; and set -e -g {name}"),
        });
    }

    /// A global of the integration itself, not exported (the hook's clocks).
    pub fn internal(&mut self, name: &str, value: Option<i64>) {
        let Some(value) = value else {
            return self.unset(name);
        };
        let shell = self.shell;
        self.push(name, |name| match shell {
            Shell::Bash => format!("{name}={value}"),
            Shell::Zsh => format!("typeset -g {name}={value}"),
            Shell::Fish => format!("set -g {name} {value}"),
        });
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// `export A=x B=y`, for POSIX shells (and fish's `export`) to eval: plain `reserve`.
pub fn posix_export_line<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let assignments: Vec<String> = pairs
        .into_iter()
        .filter(|(name, _)| valid_name(name))
        .map(|(name, value)| format!("{name}={}", quote(Shell::Bash, value)))
        .collect();
    format!("export {}", assignments.join(" "))
}

/// A shell identifier: what `export` and `set` accept in every supported shell.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One shell word that stands for exactly `value`.
pub fn quote(shell: Shell, value: &str) -> String {
    match shell {
        Shell::Bash | Shell::Zsh => {
            // Device lists and numbers stay readable. Nothing in this set is special
            // in an assignment (no `~`, `=`, glob or quote characters).
            let plain = |c: char| c.is_ascii_alphanumeric() || ",._-:/+@%".contains(c);
            if !value.is_empty() && value.chars().all(plain) {
                return value.to_string();
            }
            // Inside POSIX single quotes nothing is special; a quote ends the string,
            // so it is written as quote, escaped quote, quote.
            format!("'{}'", value.replace('\'', r"'\''"))
        }
        Shell::Fish => {
            let mut out = String::from("'");
            for c in value.chars() {
                match c {
                    '\\' => out.push_str(r"\\"),
                    '\'' => out.push_str(r"\'"),
                    // fish's `(...)` splits output at newlines; keeping every statement on
                    // one line lets the function rejoin it without guessing.
                    '\n' => out.push_str(r"'\n'"),
                    c => out.push(c),
                }
            }
            out.push('\'');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("CUDA_VISIBLE_DEVICES"));
        assert!(valid_name("_x1"));
        assert!(!valid_name("1X"));
        assert!(!valid_name(""));
        assert!(!valid_name("A-B"));
        assert!(!valid_name("A;rm"));
        let mut script = Script::new(Shell::Bash);
        script.export("A B", "x");
        script.unset("$(x)");
        script.set_unexported("a=b", "x");
        script.internal("x;y", Some(1));
        assert!(script.finish().is_empty());
    }

    #[test]
    fn posix_quoting() {
        assert_eq!(quote(Shell::Bash, "1,5"), "1,5");
        assert_eq!(quote(Shell::Bash, "GPU-ab12-cd"), "GPU-ab12-cd");
        assert_eq!(quote(Shell::Zsh, "it's"), r"'it'\''s'");
        assert_eq!(quote(Shell::Bash, "$(rm -rf /)`x`\\"), r"'$(rm -rf /)`x`\'");
        assert_eq!(quote(Shell::Bash, ""), "''");
        assert_eq!(quote(Shell::Bash, "a b"), "'a b'");
        assert_eq!(quote(Shell::Bash, "~/x"), "'~/x'");
        assert_eq!(quote(Shell::Zsh, "=ls"), "'=ls'");
        assert_eq!(quote(Shell::Bash, "*"), "'*'");
    }

    #[test]
    fn fish_quoting() {
        assert_eq!(quote(Shell::Fish, "1,5"), "'1,5'");
        assert_eq!(quote(Shell::Fish, r"a'b\c"), r"'a\'b\\c'");
        assert_eq!(quote(Shell::Fish, "a\nb"), r"'a'\n'b'");
        assert_eq!(quote(Shell::Fish, "$x (y)"), "'$x (y)'");
    }

    #[test]
    fn statements() {
        let mut script = Script::new(Shell::Bash);
        script.export("A", "x y");
        script.set_unexported("U", "3");
        script.unset("B");
        script.internal("C", Some(1));
        script.internal("C", None);
        assert_eq!(
            script.finish(),
            "export A='x y'\ndeclare -g +x U=3\nunset B\nC=1\nunset C\n"
        );
        let mut script = Script::new(Shell::Zsh);
        script.set_unexported("U", "3");
        script.internal("C", Some(1));
        assert_eq!(script.finish(), "typeset -g +x U=3\ntypeset -g C=1\n");
        let mut script = Script::new(Shell::Fish);
        script.export("A", "x");
        script.set_unexported("U", "3");
        script.unset("B");
        script.internal("C", Some(5));
        assert_eq!(
            script.finish(),
            "set -gx A 'x'\nset -gu U '3'\nset -q -g B; and set -e -g B\nset -g C 5\n"
        );
    }

    #[test]
    fn the_plain_export_line() {
        assert_eq!(
            posix_export_line([("A", "0,1"), ("B", "x'$(y)"), ("C", "")]),
            r"export A=0,1 B='x'\''$(y)' C=''"
        );
    }
}

//! Shell code the function from `init` evaluates: quoting and variable assignments.
//!
//! Whatever reaches `eval` goes through here. Names are checked against the identifier
//! syntax every shell accepts, and every value is single-quoted, so no value (a restored
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

    /// Sets and exports an environment variable.
    pub fn export(&mut self, name: &str, value: &str) {
        if !valid_name(name) {
            return;
        }
        let value = quote(self.shell, value);
        let line = match self.shell {
            Shell::Bash | Shell::Zsh => format!("export {name}={value}\n"),
            Shell::Fish => format!("set -gx {name} {value}\n"),
        };
        self.text.push_str(&line);
    }

    /// Removes a variable from the shell and its environment.
    pub fn unset(&mut self, name: &str) {
        if !valid_name(name) {
            return;
        }
        let line = match self.shell {
            Shell::Bash | Shell::Zsh => format!("unset {name}\n"),
            // `set -e` fails on a missing variable, which would become the status of
            // `source`; asking first keeps the evaluation quiet and successful.
            Shell::Fish => format!("set -q -g {name}; and set -e -g {name}\n"),
        };
        self.text.push_str(&line);
    }

    /// A fish global that is not exported (bash and zsh need none): see `init.fish`.
    pub fn fish_global(&mut self, name: &str, value: Option<i64>) {
        if self.shell != Shell::Fish || !valid_name(name) {
            return;
        }
        match value {
            Some(value) => self.text.push_str(&format!("set -g {name} {value}\n")),
            None => self
                .text
                .push_str(&format!("set -q -g {name}; and set -e -g {name}\n")),
        }
    }

    pub fn finish(self) -> String {
        self.text
    }
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
        // Inside POSIX single quotes nothing is special; a quote ends the string, so it is
        // written as quote, escaped quote, quote.
        Shell::Bash | Shell::Zsh => format!("'{}'", value.replace('\'', r"'\''")),
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
        assert!(script.finish().is_empty());
    }

    #[test]
    fn posix_quoting() {
        assert_eq!(quote(Shell::Bash, "1,5"), "'1,5'");
        assert_eq!(quote(Shell::Zsh, "it's"), r"'it'\''s'");
        assert_eq!(quote(Shell::Bash, "$(rm -rf /)`x`\\"), r"'$(rm -rf /)`x`\'");
        assert_eq!(quote(Shell::Bash, ""), "''");
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
        script.unset("B");
        script.fish_global("C", Some(1));
        assert_eq!(script.finish(), "export A='x y'\nunset B\n");
        let mut script = Script::new(Shell::Fish);
        script.export("A", "x");
        script.unset("B");
        script.fish_global("C", Some(5));
        script.fish_global("C", None);
        assert_eq!(
            script.finish(),
            "set -gx A 'x'\nset -q -g B; and set -e -g B\nset -g C 5\nset -q -g C; and set -e -g C\n"
        );
    }
}
